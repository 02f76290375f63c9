/**
 * Attacks on "every config error names the option's full path and the value, in one line,
 * and nothing is opened": the flag, the config object's shape, and every store, mirror and
 * runtime option as a host passes it from JSON or the environment. Also "a truthful facade":
 * with the flag on, every cache handed out is persistent, and `health()` says whether the
 * store answers now.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { createPluginState } from "../src/PluginState.js"
import { PersistentState } from "../src/PersistentState.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { PluginStateConfigError } from "../src/PluginStateConfigError.js"
import { tempDir } from "./support/backends.js"

const on = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

/** The one line `createPluginState` rejects with, and whether the state file appeared. */
const rejection = async (options: Parameters<typeof createPluginState>[0], file: string) => {
  const outcome = await createPluginState(options).then(
    async (state) => {
      await state.dispose()
      return "started"
    },
    (error: unknown) => (error instanceof PluginStateConfigError ? error.message : `not a PluginStateConfigError: ${String(error)}`)
  )
  return { outcome, created: fs.existsSync(file) }
}

const cases: ReadonlyArray<{ readonly name: string; readonly options: (file: string) => Parameters<typeof createPluginState>[0]; readonly line: string }> = [
  { name: "the flag as a string", options: (file) => ({ pluginId: "slack", config: { plugins: { entries: { slack: { config: { experimentalPersistentState: "yes" } } } } }, store: { sqlitePath: file } }), line: 'plugins.entries.slack.config.experimentalPersistentState is "yes": expected true or false' },
  { name: "a config that is a number", options: (file) => ({ pluginId: "slack", config: 42, store: { sqlitePath: file } }), line: 'config is 42: expected the whole gateway config ({ plugins: { entries: { "slack": { config: { experimentalPersistentState: true } } } } })' },
  { name: "a config that is an array", options: (file) => ({ pluginId: "slack", config: [], store: { sqlitePath: file } }), line: 'config is []: expected the whole gateway config ({ plugins: { entries: { "slack": { config: { experimentalPersistentState: true } } } } })' },
  { name: "the plugin's own section instead of the gateway config", options: (file) => ({ pluginId: "slack", config: { experimentalPersistentState: true }, store: { sqlitePath: file } }), line: `config is {"experimentalPersistentState":true}: that is the plugin's own config section; pass the whole gateway config ({ plugins: { entries: { "slack": { config: { experimentalPersistentState: true } } } } })` },
  { name: "entries that is not an object", options: (file) => ({ pluginId: "slack", config: { plugins: { entries: "slack" } }, store: { sqlitePath: file } }), line: 'plugins.entries is "slack": expected an object' },
  { name: "a pgUrl from an unset variable", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, pgUrl: undefined } }), line: "store.pgUrl is undefined: expected a PostgreSQL URL (postgres://user@host:5432/db); leave pgUrl out to use the SQLite file" },
  { name: "an empty pgUrl", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, pgUrl: "" } }), line: 'store.pgUrl is "": expected a PostgreSQL URL (postgres://user@host:5432/db); leave pgUrl out to use the SQLite file' },
  { name: "a sweep interval that is no duration", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, sweepInterval: "soon" as never } }), line: 'store.sweepInterval is "soon": expected a duration such as "30 seconds" or a number of milliseconds (at most 24 days)' },
  { name: "a negative owner cap", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, ownerMaxEntries: -1 } }), line: "store.ownerMaxEntries is -1: expected a whole number of at least 1" },
  { name: "a fractional sweep batch", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, sweepBatchSize: 2.5 } }), line: "store.sweepBatchSize is 2.5: expected a whole number of at least 1" },
  { name: "an unknown clock", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, clock: "host" as never } }), line: 'store.clock is "host": expected one of "database", "application"' },
  { name: "a mirror batch of 0", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file }, mirror: { maxBatch: 0 } }), line: "mirror.maxBatch is 0: expected a whole number of at least 1" },
  { name: "a flush interval that is NaN", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file }, mirror: { flushInterval: Number.NaN } }), line: 'mirror.flushInterval is null: expected a duration such as "30 seconds" or a number of milliseconds (at most 24 days)' },
  { name: "an unknown undecided policy", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file }, whenUnreachable: "local" as never }), line: 'whenUnreachable is "local": expected one of "claim-locally", "in-flight"' },
  { name: "an unknown channel", options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file }, channels: ["telegram" as never] }), line: 'channels is ["telegram"]: expected a list of channel names (slack, discord, msteams, matrix, bluebubbles, feishu)' }
]

describe("config errors: one line naming the option and the value, nothing opened", () => {
  for (const c of cases) {
    it.scopedLive(c.name, () =>
      Effect.gen(function* () {
        const file = path.join(yield* tempDir, "state.sqlite")
        const result = yield* Effect.promise(() => rejection(c.options(file), file))
        expect(result).toEqual({ outcome: c.line, created: false })
        expect(c.line).not.toContain("\n")
        // The Effect API fails with the same error, the same line.
        const built = yield* Effect.either(Layer.build(PluginRuntime.layer(c.options(file))))
        expect(Either.isLeft(built) && built.left instanceof PluginStateConfigError ? built.left.message : built).toBe(c.line)
      })
    )
  }

  it.scopedLive("store and mirror settings are not checked with persistence off: an unset pgUrl does not stop a plugin that does not persist", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const state = yield* Effect.promise(() => createPluginState({ pluginId: "slack", config: {}, store: { sqlitePath: file, pgUrl: undefined }, mirror: { maxBatch: 0 } }))
      expect(state.persistent).toBe(false)
      expect(yield* Effect.promise(() => state.health())).toEqual({ status: "memory-only" })
      yield* Effect.promise(() => state.dispose())
      expect(fs.existsSync(file)).toBe(false)
    })
  )
})

describe("a truthful facade", () => {
  it.scopedLive("with the flag on, every cache the facade hands out survives a restart — not only the one the plugin id names", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const open = () => createPluginState({ pluginId: "discord", config: on("discord"), store: { sqlitePath: file } })
      const first = yield* Effect.promise(open)
      expect(first.persistentChannels).toEqual(PluginRuntime.channelNames)
      const claim = yield* Effect.promise(() => first.bluebubbles.claim({ accountId: "acc", guid: "g-1" }))
      expect(claim.status).toBe("claimed")
      if (claim.status === "claimed") expect(yield* Effect.promise(() => claim.finalize())).toBe("done")
      first.slack.record("T", "C", "1.0")
      yield* Effect.promise(() => first.dispose())

      const second = yield* Effect.promise(open)
      expect((yield* Effect.promise(() => second.bluebubbles.claim({ accountId: "acc", guid: "g-1" }))).status).toBe("duplicate")
      expect(yield* Effect.promise(() => second.slack.check("T", "C", "1.0"))).toBe(true)
      yield* Effect.promise(() => second.dispose())
    })
  )

  it.scopedLive("health() says ok while the store answers, and unreachable (with the reason) once its directory is replaced by a file", () =>
    Effect.gen(function* () {
      const dir = path.join(yield* tempDir, "state")
      const file = path.join(dir, "state.sqlite")
      const state = yield* Effect.promise(() => createPluginState({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file } }))
      expect(yield* Effect.promise(() => state.health())).toEqual({ status: "ok", backend: "sqlite" })
      fs.rmSync(dir, { recursive: true, force: true })
      fs.writeFileSync(dir, "not a directory")
      const health = yield* Effect.promise(() => state.health())
      expect(health.status).toBe("unreachable")
      yield* Effect.promise(() => state.dispose())
      fs.rmSync(dir)
    })
  )

  it.scopedLive("channels narrows what is persistent, and PersistentState says which", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const context = yield* Layer.build(PluginRuntime.layer({ pluginId: "gateway", config: on("gateway"), store: { sqlitePath: file }, channels: ["slack", "feishu"] }))
      const persistence = yield* Effect.provide(PersistentState, context)
      expect(persistence.channels).toEqual(["slack", "feishu"])
    })
  )
})
