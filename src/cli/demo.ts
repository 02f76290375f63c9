/**
 * `channel-state demo` (`npm start`): for each of the six caches, do what a plugin does,
 * restart, and replay what a user does next — once with `experimentalPersistentState` off
 * and once on — and print what the user gets. Exits non-zero if any outcome is wrong, so it
 * doubles as a smoke test.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type { ChannelName, StoreLocation } from "../PluginRuntime.js"
import { createPluginState, type PluginState } from "../PluginState.js"
import { type Command, storeOptions } from "./command.js"
import { isoTime, print, table } from "./output.js"

interface DemoCase {
  readonly channel: ChannelName
  readonly cache: string
  readonly userAction: string
  /** What the plugin does before the restart. */
  readonly before: (state: PluginState, id: string) => Promise<void>
  /** What the user does after it; the outcome they see. */
  readonly after: (state: PluginState, id: string) => Promise<string>
  readonly expected: { readonly off: string; readonly on: string }
}

const cases: ReadonlyArray<DemoCase> = [
  {
    channel: "slack",
    cache: "Slack thread participation",
    userAction: "untagged reply in a thread the bot answered",
    before: async (s, id) => s.slack.record("T01", "C01", `1732530000.${id}`, { agentId: "main" }),
    after: async (s, id) => ((await s.slack.check("T01", "C01", `1732530000.${id}`)) ? "answered" : "dropped (no mention)"),
    expected: { off: "dropped (no mention)", on: "answered" }
  },
  {
    channel: "discord",
    cache: "Discord components + modals",
    userAction: "clicks a button, then opens a modal",
    before: async (s, id) =>
      s.discord.register({
        entries: [{ id: `approve-${id}`, kind: "button", label: "Approve", callbackData: "approve" }],
        modals: [{ id: `reason-${id}`, title: "Why?", fields: [{ id: "reason", label: "Reason" }] }],
        messageId: `msg-${id}`
      }),
    after: async (s, id) => {
      const button = await s.discord.resolveComponent({ id: `approve-${id}` })
      const modal = await s.discord.resolveModal({ id: `reason-${id}` })
      return button && modal ? "handled" : "This component has expired."
    },
    expected: { off: "This component has expired.", on: "handled" }
  },
  {
    channel: "msteams",
    cache: "MS Teams sent messages",
    userAction: "replies to an earlier bot message",
    before: async (s, id) => s.msteams.record("19:conv@thread", `bot-msg-${id}`),
    after: async (s, id) => ((await s.msteams.check("19:conv@thread", `bot-msg-${id}`)) ? "answered (implicit mention)" : "dropped (no mention)"),
    expected: { off: "dropped (no mention)", on: "answered (implicit mention)" }
  },
  {
    channel: "matrix",
    cache: "Matrix approval reactions",
    userAction: "reacts ✅ on the approval prompt",
    before: async (s, id) =>
      s.matrix.register({ roomId: "!ops:example.org", eventId: `$prompt-${id}`, approvalId: `approval-${id}`, allowedDecisions: ["allow-once", "allow-always", "deny"] }),
    after: async (s, id) => {
      const resolved = await s.matrix.resolve({ roomId: "!ops:example.org", eventId: `$prompt-${id}`, reactionKey: "✅" })
      return resolved ? `approved (${resolved.decision})` : "ignored (approval hangs)"
    },
    expected: { off: "ignored (approval hangs)", on: "approved (allow-once)" }
  },
  {
    channel: "bluebubbles",
    cache: "BlueBubbles inbound dedupe",
    userAction: "the same message is replayed",
    before: async (s, id) => {
      const claim = await s.bluebubbles.claim({ accountId: "imessage", guid: `guid-${id}` })
      if (claim.status === "claimed") await claim.finalize()
    },
    after: async (s, id) => ((await s.bluebubbles.claim({ accountId: "imessage", guid: `guid-${id}` })).status === "duplicate" ? "deduped" : "answered twice"),
    expected: { off: "answered twice", on: "deduped" }
  },
  {
    channel: "feishu",
    cache: "Feishu message dedupe",
    userAction: "the event is redelivered",
    before: async (s, id) => {
      const claim = await s.feishu.beginProcessing({ namespace: "cli_app", messageId: `om_${id}` })
      if (claim.status === "claimed") await claim.finalize()
    },
    after: async (s, id) => ((await s.feishu.beginProcessing({ namespace: "cli_app", messageId: `om_${id}` })).status === "duplicate" ? "deduped" : "answered twice"),
    expected: { off: "answered twice", on: "deduped" }
  }
]

const configFor = (pluginId: string, enabled: boolean) => ({
  plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: enabled } } } }
})

/** One plugin lifetime: build its state, run `body`, dispose (which flushes queued writes). */
const lifetime = async <A>(pluginId: string, enabled: boolean, store: StoreLocation, body: (state: PluginState) => Promise<A>): Promise<A> => {
  const state = await createPluginState({ pluginId, config: configFor(pluginId, enabled), store })
  try {
    return await body(state)
  } finally {
    await state.dispose()
  }
}

/** Counters of every cache the demo used, from the metrics registry. */
const statsTable = (): string => {
  const rows = new Map<string, Record<string, number>>()
  for (const pair of Effect.runSync(Metric.snapshot)) {
    const name = pair.metricKey.name
    if (!name.startsWith("channel_state_") || name.startsWith("channel_state_flush_")) continue
    const tags = Object.fromEntries(pair.metricKey.tags.map((t) => [t.key, t.value]))
    const id = `${tags.plugin}\u0000${tags.namespace}`
    const row = rows.get(id) ?? {}
    row[name.slice("channel_state_".length)] = (row[name.slice("channel_state_".length)] ?? 0) + Number((pair.metricState as { count?: number }).count ?? 0)
    rows.set(id, row)
  }
  const columns = ["memory_hits", "store_hits", "misses", "backfills", "queued_writes", "flushed_writes", "dropped_writes", "failures"]
  return table(
    ["plugin", "namespace", ...columns],
    [...rows.entries()].sort().map(([id, row]) => [...id.split("\u0000"), ...columns.map((c) => String(row[c] ?? 0))])
  )
}

/** Where the demo keeps its state, and whether it prints the counters. */
export interface DemoOptions {
  readonly db?: string | undefined
  readonly pg?: string | undefined
  readonly stats?: boolean | undefined
}

/** Runs the demo; resolves to the exit code (0 when every outcome is what it should be). */
export const runDemo = async (options: DemoOptions): Promise<number> => {
  const tempDir = options.db || options.pg ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-demo-"))
  const store: StoreLocation = options.pg ? { pgUrl: options.pg } : { sqlitePath: options.db ?? path.join(tempDir as string, "state.sqlite") }
  const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
  print(`channel-state demo — state in ${options.pg ? "PostgreSQL" : store.sqlitePath} (run ${runId})`)
  print("Each cache: the plugin does its work, the gateway restarts, then the user acts.\n")
  const began = Date.now()
  try {
    const rows: Array<Array<string>> = []
    let wrong = 0
    for (const c of cases) {
      const outcome = { off: "", on: "" }
      for (const mode of ["off", "on"] as const) {
        const id = `${runId}-${mode}`
        const enabled = mode === "on"
        await lifetime(c.channel, enabled, store, (state) => c.before(state, id))
        outcome[mode] = await lifetime(c.channel, enabled, store, (state) => c.after(state, id))
      }
      const ok = outcome.off === c.expected.off && outcome.on === c.expected.on
      if (!ok) wrong++
      rows.push([c.cache, c.userAction, outcome.off, outcome.on, ok ? "ok" : `WRONG (expected ${c.expected.off} / ${c.expected.on})`])
    }
    print(table(["cache", "after restart, the user…", "persistence off", "persistence on", "check"], rows))
    print(`\n${wrong === 0 ? "All six caches behave as they should" : `${wrong} cache(s) did not behave as they should`} (${Date.now() - began} ms, finished ${isoTime(Date.now())}).`)
    if (options.stats) print(`\nCounters (channel_state_* metrics):\n${statsTable()}`)
    return wrong === 0 ? 0 : 1
  } finally {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true })
  }
}

/** The `demo` subcommand. */
export const demoCommand: Command = {
  help: `Usage: channel-state demo [--db PATH | --pg URL] [--stats]

For each cache, performs what a plugin does, restarts, and replays what the user does next —
with experimentalPersistentState off and on — and prints what the user gets.
Runs on a SQLite file in a fresh temporary directory (removed afterwards) unless given:
  --db PATH    use (and keep) this SQLite file
  --pg URL     use this PostgreSQL database (postgres://user@host:5432/db)
  --stats      print the cache counters (metrics) at the end
Exit code 0 when every outcome is as it should be, 1 otherwise.`,
  options: { ...storeOptions, stats: { type: "boolean" } },
  run: (values) => runDemo({ db: values.db as string | undefined, pg: values.pg as string | undefined, stats: values.stats === true })
}
