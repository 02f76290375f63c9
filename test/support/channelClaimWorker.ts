/**
 * A child process for the cross-process claim test (test/channels.claims.test.ts): builds
 * the BlueBubbles plugin runtime with persistence on, over a shared SQLite file or
 * PostgreSQL database, says it is ready, waits for the start signal (a file appearing),
 * claims every guid, and prints the guids it won as one JSON line.
 *
 *   node --import tsx test/support/channelClaimWorker.ts <sqlite|pg> <file or url> <go file> <worker id> <guids> [ascending|descending]
 *
 * Two workers claiming in opposite orders meet in the middle, so they contend on real keys.
 */
import * as fs from "node:fs"
import { Effect, HashMap, Layer, Logger } from "effect"
import { BlueBubblesInboundDedupe } from "../../src/channels/BlueBubblesInboundDedupe.js"
import * as PluginRuntime from "../../src/PluginRuntime.js"

/** The plugin id (and channel) the workers run as. */
export const WORKER_PLUGIN = "bluebubbles"
export const workerGuid = (i: number): string => `guid-${i}`

/** The lines a worker prints, one JSON object each. */
export type ChannelWorkerLine =
  | { readonly type: "ready"; readonly worker: string }
  | {
      readonly type: "result"
      readonly worker: string
      /** `Date.now()` when the start signal was seen and when the last claim answered. */
      readonly startedAt: number
      readonly finishedAt: number
      /** The guids this worker got `Claimed` for. */
      readonly won: ReadonlyArray<string>
      /** How many claims answered each outcome. */
      readonly outcomes: Readonly<Record<string, number>>
      /** Warning and error log lines of the runtime (store failures, fallbacks to memory). */
      readonly problems: ReadonlyArray<string>
    }
  | { readonly type: "fatal"; readonly worker: string; readonly message: string }

const main = () => {
  const [backend, location, goFile, worker = "?", count = "1000", order = "ascending"] = process.argv.slice(2)
  const say = (line: ChannelWorkerLine) => process.stdout.write(`${JSON.stringify(line)}\n`)

  const problems: Array<string> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    if (logLevel.label !== "WARN" && logLevel.label !== "ERROR" && logLevel.label !== "FATAL") return
    const parts = Array.isArray(message) ? message : [message]
    const notes = JSON.stringify(Object.fromEntries(HashMap.toEntries(annotations)))
    problems.push(`${logLevel.label} ${parts.map(String).join(" ")} ${notes}`.slice(0, 500))
  })

  const store: PluginRuntime.StoreLocation =
    backend === "pg" ? { pgUrl: location } : backend === "sqlite" ? { sqlitePath: location } : { sqlitePath: "/dev/null/unknown-backend" }
  const runtime = PluginRuntime.layer({
    pluginId: WORKER_PLUGIN,
    config: { plugins: { entries: { [WORKER_PLUGIN]: { config: { experimentalPersistentState: true } } } } },
    store
  })

  /** Polls for the start file, so both workers begin within a millisecond or two of each other. */
  const waitForGo = Effect.gen(function* () {
    const deadline = Date.now() + 30_000
    while (!fs.existsSync(goFile!)) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`no start signal (${goFile}) within 30 s`))
      yield* Effect.sleep("1 millis")
    }
  })

  const program = Effect.gen(function* () {
    if (backend !== "pg" && backend !== "sqlite") return yield* Effect.fail(new Error(`unknown backend ${String(backend)}`))
    const dedupe = yield* BlueBubblesInboundDedupe
    say({ type: "ready", worker })
    yield* waitForGo
    const startedAt = Date.now()
    const won: Array<string> = []
    const outcomes: Record<string, number> = {}
    yield* Effect.forEach(
      Array.from({ length: Number(count) }, (_, i) => workerGuid(order === "descending" ? Number(count) - 1 - i : i)),
      (guid) =>
        Effect.map(dedupe.claim({ accountId: "acc", guid }), (outcome) => {
          outcomes[outcome._tag] = (outcomes[outcome._tag] ?? 0) + 1
          if (outcome._tag === "Claimed") won.push(guid)
        }),
      { concurrency: "unbounded", discard: true }
    )
    say({ type: "result", worker, startedAt, finishedAt: Date.now(), won, outcomes, problems })
  })

  Effect.runPromiseExit(
    Effect.scoped(Effect.provide(program, Layer.provide(runtime, Logger.replace(Logger.defaultLogger, logger))))
  ).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

// Only as a script: the test imports this module for its protocol types and helpers.
if (process.argv[1]?.endsWith("channelClaimWorker.ts")) main()
