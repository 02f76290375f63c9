/**
 * A child process for the cross-process claim tests (test/channels.claims.test.ts,
 * test/coldStart.processes.test.ts): builds the BlueBubbles plugin runtime with persistence
 * on, over a shared SQLite file or PostgreSQL database, says it is ready, waits for the start
 * signal (a file appearing), claims every guid once, and prints the guids it won as one JSON
 * line.
 *
 *   node --import tsx test/support/channelClaimWorker.ts <sqlite|pg> <file or url> <go file> <worker id> <guids> [ascending|descending] [--open-after-go]
 *
 * Two workers claiming in opposite orders meet in the middle, so they contend on real keys.
 * With `--open-after-go` the worker says it is ready before it opens anything and builds the
 * runtime (store, migrations, namespace) only on the start signal: workers started together
 * then open one fresh database at the same moment.
 */
import { parseArgs } from "node:util"
import { Effect, Layer } from "effect"
import { BlueBubblesInboundDedupe } from "../../src/channels/BlueBubblesInboundDedupe.js"
import * as PluginRuntime from "../../src/PluginRuntime.js"
import { persistenceOn, problemLogger, say, storeLocationOf, undecidedClaims, type WorkerLine, waitForGo } from "./workerIo.js"

/** The plugin id (and channel) the workers run as. */
export const WORKER_PLUGIN = "bluebubbles"
export const workerGuid = (i: number): string => `guid-${i}`

/** The lines a worker prints, one JSON object each. */
export type ChannelWorkerLine = WorkerLine<{
  /** The guids this worker got `Claimed` for. */
  readonly won: ReadonlyArray<string>
  /** How many claims answered each outcome. */
  readonly outcomes: Readonly<Record<string, number>>
  /** Claims the store could not decide (`channel_state_undecided_claims`), by namespace/reason/answer. */
  readonly undecided: Readonly<Record<string, number>>
  /** Warning and error log lines of the runtime (store failures, fallbacks to memory). */
  readonly problems: ReadonlyArray<string>
}>

const main = () => {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { "open-after-go": { type: "boolean", default: false } } })
  const [backend, location, goFile, worker = "?", count = "1000", order = "ascending"] = positionals
  const openAfterGo = values["open-after-go"]

  const { problems, layer: logger } = problemLogger()
  const runtime = Layer.suspend(() =>
    PluginRuntime.layer({ pluginId: WORKER_PLUGIN, config: persistenceOn(WORKER_PLUGIN), store: storeLocationOf(backend, location) })
  )

  const claimAll = Effect.gen(function* () {
    const dedupe = yield* BlueBubblesInboundDedupe
    if (!openAfterGo) {
      say({ type: "ready", worker })
      yield* waitForGo(goFile!)
    }
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
    const finishedAt = Date.now()
    say({ type: "result", worker, startedAt, finishedAt, won, outcomes, undecided: yield* undecidedClaims, problems })
  }).pipe(Effect.provide(runtime))

  const program = openAfterGo
    ? Effect.zipRight(
        Effect.zipRight(
          Effect.sync(() => say({ type: "ready", worker })),
          waitForGo(goFile!)
        ),
        claimAll
      )
    : claimAll

  Effect.runPromiseExit(Effect.scoped(Effect.provide(program, logger))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

// Only as a script: the tests import this module for its protocol types and helpers.
if (process.argv[1]?.endsWith("channelClaimWorker.ts")) main()
