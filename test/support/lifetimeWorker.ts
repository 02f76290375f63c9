/**
 * A plugin host for test/mirror.lifetime.test.ts: opens the Promise facade with persistence on
 * (write-behind interval 1 minute, so nothing is written by a timer while the test runs),
 * records Slack threads, Matrix prompts and Discord components, prints one `recorded` line,
 * and then, by mode:
 *
 * - `no-dispose`: does nothing more — never calls `dispose()`, sets no timer. The process
 *   must end by itself, having written what it queued.
 * - `sigterm`: was opened with `disposeOnSignals: true` and keeps running like a server (an
 *   interval timer) until a signal ends it.
 *
 * `shutdownFlushTimeout` (optional, a duration such as `60 seconds`; default the mirror's own)
 * bounds how long the process stays alive to write what is queued while the store is contended.
 *
 *   node --import tsx test/support/lifetimeWorker.ts <sqlite|pg> <file or url> <no-dispose|sigterm> <count> [shutdownFlushTimeout]
 */
import type { Duration } from "effect"
import { createPluginState } from "../../src/PluginState.js"

export const LIFETIME_OWNER = "lifetime-gateway"

export type LifetimeLine = { readonly type: "recorded"; readonly count: number }

/** What `count` records wrote, per namespace, as stored keys. */
export const lifetimeKeys = (count: number) => ({
  "slack.thread-participation": Array.from({ length: count }, (_, i) => `T1:C1:17000.${i}`),
  "matrix.approval-reactions": Array.from({ length: count }, (_, i) => `!room:hs:$ev${i}`),
  "discord.components": Array.from({ length: Math.min(count, 400) }, (_, i) => `btn-${i}`)
})

const main = async () => {
  const [backend = "", location = "", mode = "", countText = "100", shutdownFlushTimeout] = process.argv.slice(2)
  const count = Number(countText)
  const state = await createPluginState({
    pluginId: LIFETIME_OWNER,
    config: { plugins: { entries: { [LIFETIME_OWNER]: { config: { experimentalPersistentState: true } } } } },
    store: backend === "pg" ? { pgUrl: location } : { sqlitePath: location },
    channels: ["slack", "matrix", "discord"],
    mirror: { flushInterval: "1 minute", ...(shutdownFlushTimeout === undefined ? {} : { shutdownFlushTimeout: shutdownFlushTimeout as Duration.DurationInput }) },
    disposeOnSignals: mode === "sigterm"
  })
  for (let i = 0; i < count; i++) {
    state.slack.record("T1", "C1", `17000.${i}`)
    state.matrix.register({ roomId: "!room:hs", eventId: `$ev${i}`, approvalId: `ap-${i}`, allowedDecisions: ["allow-once", "deny"] })
  }
  state.discord.register({ entries: lifetimeKeys(count)["discord.components"].map((id) => ({ id, kind: "button" as const, label: "Approve" })) })
  const line: LifetimeLine = { type: "recorded", count }
  console.log(JSON.stringify(line))
  if (mode === "sigterm") setInterval(() => {}, 1000)
}

if (process.argv[1]?.endsWith("lifetimeWorker.ts")) void main()
