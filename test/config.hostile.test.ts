/**
 * Attack 2 (config errors): every wrong setting is ONE PluginStateConfigError, one line naming
 * the option's full path and the value, and nothing is opened.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import { createPluginState } from "../src/PluginState.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { PluginStateConfigError } from "../src/PluginStateConfigError.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { StateStoreError } from "../src/StateStoreError.js"
import { tempDir } from "./support/backends.js"

const on = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

type Options = Parameters<typeof createPluginState>[0]

/** What createPluginState did: rejected with a PluginStateConfigError (its message), something else, or started. */
const outcomeOf = async (options: Options, file: string) => {
  let outcome: string
  try {
    const state = await createPluginState(options)
    await state.dispose()
    outcome = "started"
  } catch (error) {
    outcome = error instanceof PluginStateConfigError ? `PluginStateConfigError: ${error.message}` : `not a PluginStateConfigError: ${String(error)}`
  }
  return { outcome, created: fs.existsSync(file) || fs.existsSync(path.dirname(file)) }
}

const expectConfigError = (result: { outcome: string; created: boolean }, pathPrefix: string) => {
  expect(result.outcome.startsWith(`PluginStateConfigError: ${pathPrefix}`), result.outcome).toBe(true)
  expect(result.outcome, "one line").not.toContain("\n")
  expect(result.created, "nothing created").toBe(false)
}

const cases: ReadonlyArray<{ readonly name: string; readonly options: (file: string) => Options; readonly path: string }> = [
  {
    name: "a config whose plugins getter throws",
    options: (file) => ({
      pluginId: "slack",
      config: {
        get plugins(): unknown {
          throw new Error("getter boom")
        }
      },
      store: { sqlitePath: file }
    }),
    path: "plugins"
  },
  {
    name: "a revoked Proxy as config",
    options: (file) => {
      const { proxy, revoke } = Proxy.revocable({}, {})
      revoke()
      return { pluginId: "slack", config: proxy, store: { sqlitePath: file } }
    },
    path: "config"
  },
  {
    name: "a store whose sweepInterval getter throws",
    options: (file) => ({
      pluginId: "slack",
      config: on("slack"),
      store: {
        sqlitePath: file,
        get sweepInterval(): never {
          throw new Error("store getter boom")
        }
      }
    }),
    path: "store.sweepInterval"
  },
  {
    name: "a plugin id the store cannot use as an owner (uppercase, space), flag on",
    options: (file) => ({ pluginId: "My Plugin", config: on("My Plugin"), store: { sqlitePath: file } }),
    path: "pluginId"
  },
  {
    name: "disposeOnSignals with a signal that cannot be caught (SIGKILL)",
    options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file }, disposeOnSignals: ["SIGKILL"] }),
    path: "disposeOnSignals"
  },
  {
    name: "disposeOnSignals with a signal that does not exist (SIGTERMINATE)",
    options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file }, disposeOnSignals: ["SIGTERMINATE" as never] }),
    path: "disposeOnSignals"
  },
  {
    name: "a negative sweep interval written as a string",
    options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, sweepInterval: "-5 seconds" as never } }),
    path: "store.sweepInterval"
  },
  {
    name: "an infinite lock wait as a [seconds, nanos] tuple",
    options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, lockWait: [Number.POSITIVE_INFINITY, 0] as never } }),
    path: "store.lockWait"
  },
  {
    name: "a plugin id with a newline, with a bad flag: the error is still one line",
    options: (file) => ({
      pluginId: "a\nb",
      config: { plugins: { entries: { "a\nb": { config: { experimentalPersistentState: "yes" } } } } },
      store: { sqlitePath: file }
    }),
    path: "plugins.entries"
  },
  {
    name: "the plugin's entry ({ config: { experimentalPersistentState: true } }) instead of the gateway config",
    options: (file) => ({ pluginId: "slack", config: { config: { experimentalPersistentState: true } }, store: { sqlitePath: file } }),
    path: "config"
  },
  {
    name: "a misspelled store option (sweepIntervall)",
    options: (file) => ({ pluginId: "slack", config: on("slack"), store: { sqlitePath: file, sweepIntervall: "soon" } as never }),
    path: "store.sweepIntervall"
  }
]

describe("config errors", () => {
  for (const c of cases) {
    it.scopedLive(c.name, () =>
      Effect.gen(function* () {
        const file = path.join(yield* tempDir, "state", "state.sqlite")
        const result = yield* Effect.promise(() => outcomeOf(c.options(file), file))
        expectConfigError(result, c.path)
      })
    )
  }

  it.scopedLive("PluginRuntime.layer with a throwing getter fails with a PluginStateConfigError, never a defect", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const exit = yield* Effect.exit(
        Layer.build(
          PluginRuntime.layer({
            pluginId: "slack",
            config: {
              get plugins(): unknown {
                throw new Error("getter boom")
              }
            },
            store: { sqlitePath: file }
          })
        )
      )
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
      expect(failure?._tag === "Some" && failure.value instanceof PluginStateConfigError, Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "built").toBe(true)
    })
  )

  it.scopedLive("a plugin id `toString` with no entry for it is persistence off, not a config error", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const result = yield* Effect.promise(() => outcomeOf({ pluginId: "tostring-not", config: { plugins: { entries: {} } }, store: { sqlitePath: file } }, file))
      expect(result.outcome).toBe("started")
      const weird = yield* Effect.promise(() => outcomeOf({ pluginId: "toString", config: { plugins: { entries: {} } }, store: { sqlitePath: file } }, file))
      expect(weird.outcome).toBe("started")
    })
  )
})

describe("direct Effect users get a typed InvalidInput, never a defect", () => {
  const typedInvalid = (exit: Exit.Exit<unknown, unknown>) => {
    if (Exit.isSuccess(exit)) return "built"
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "None") return `defect: ${Cause.pretty(exit.cause).split("\n")[0]}`
    const error = failure.value
    return error instanceof StateStoreError ? `${error.reason}: ${error.detail}` : `other: ${String(error)}`
  }

  for (const [option, value] of [
    ["sweepInterval", "soon"],
    ["lockWait", "soon"],
    ["busyTimeout", "soon"],
    ["ownerMaxEntries", -1]
  ] as const) {
    it.scopedLive(`SqliteStore.layer({ ${option}: ${JSON.stringify(value)} })`, () =>
      Effect.gen(function* () {
        const file = path.join(yield* tempDir, "state.sqlite")
        const exit = yield* Effect.exit(Layer.build(SqliteStore.layer({ filename: file, [option]: value } as never)))
        const outcome = typedInvalid(exit)
        expect(outcome.startsWith("InvalidInput: "), outcome).toBe(true)
        expect(outcome).toContain(option)
      })
    )
  }

  it.scopedLive("SqliteStore.layer({ filename: 42 }) fails typed (not a synchronous throw or a defect)", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Effect.suspend(() => Layer.build(SqliteStore.layer({ filename: 42 as never }))))
      const outcome = typedInvalid(exit)
      expect(outcome.startsWith("InvalidInput: ") || outcome.startsWith("OpenFailed: "), outcome).toBe(true)
    })
  )

  it.scopedLive("MemoryStore.layer({ ownerMaxEntries: -1 }) is refused", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Layer.build(MemoryStore.layer({ ownerMaxEntries: -1 })))
      expect(typedInvalid(exit).startsWith("InvalidInput: ")).toBe(true)
    })
  )

  for (const mirror of [{ maxBatch: 0 }, { flushInterval: "soon" }, { backoffMax: -1 }] as const) {
    it.scopedLive(`layerPersistent({ mirror: ${JSON.stringify(mirror)} })`, () =>
      Effect.gen(function* () {
        const exit = yield* Effect.exit(
          Layer.build(Slack.layerPersistent({ pluginId: "slack", mirror: mirror as never }).pipe(Layer.provide(MemoryStore.layer())))
        )
        const outcome = typedInvalid(exit)
        expect(outcome.startsWith("InvalidInput: mirror."), outcome).toBe(true)
      })
    )
  }
})
