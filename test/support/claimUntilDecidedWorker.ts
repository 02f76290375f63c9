/**
 * A child process for test/claims.contention.test.ts: one gateway instance handling messages
 * the way a plugin does. It builds the plugin runtime (BlueBubbles and Feishu, persistence
 * on) over a shared SQLite file or PostgreSQL database, says it is ready, waits for the start
 * signal (a file appearing), then for every id, on both channels at once:
 *
 * - claims it; `Claimed` → "handles" it (a pause of 0–20 ms) and finalizes it; `Duplicate` →
 *   done; `InFlight` (someone else holds it, or the store could not decide) → waits 100–400 ms
 *   and claims again, until the id is decided or the deadline passes.
 *
 * It prints one `result` line, then waits for `verify` on stdin: it claims every id again
 * (every answer should be `Duplicate`; an `InFlight` is asked again for a while, a `Claimed`
 * is a second claim) and prints one `verified` line.
 *
 *   node --import tsx test/support/claimUntilDecidedWorker.ts <sqlite|pg> <file or url> <go file> <worker id> <ids> <first id>
 *
 * Workers starting at different ids (in a ring) collide on every id over the whole run.
 */
import { Effect, Layer } from "effect"
import { BlueBubblesInboundDedupe } from "../../src/channels/BlueBubblesInboundDedupe.js"
import { FeishuMessageDedupe } from "../../src/channels/FeishuMessageDedupe.js"
import type { ClaimOutcome } from "../../src/layers/ClaimLedger.js"
import * as PluginRuntime from "../../src/PluginRuntime.js"
import { onStdinLine, persistenceOn, problemLogger, say, storeLocationOf, undecidedClaims, type WorkerLine, waitForGo } from "./workerIo.js"

/** The plugin id the workers run as (the owner of both namespaces). */
export const CONTENTION_PLUGIN = "gateway"
/** The channels every id is claimed on, and the namespaces they write. */
export const CONTENTION_CHANNELS = { bluebubbles: "bluebubbles.inbound-dedupe", feishu: "feishu.message-dedupe" } as const
export type ContentionChannel = keyof typeof CONTENTION_CHANNELS
export const contentionId = (i: number): string => `m-${i}`

/** How long a worker keeps asking about one id before it reports it unresolved. */
const CLAIM_DEADLINE_MS = 200_000
/** How long the verify pass keeps asking about an id that answers `InFlight`. */
const VERIFY_DEADLINE_MS = 60_000

/** What one worker saw on one channel. */
export interface ChannelTally {
  /** The ids this worker got `Claimed` for. */
  readonly won: ReadonlyArray<string>
  /** Every claim answer, by outcome (retries included). */
  readonly answers: Readonly<Record<string, number>>
  /** What each finalize of a won id answered. */
  readonly finalized: Readonly<Record<string, number>>
  /** Ids still answering `InFlight` at the deadline. */
  readonly unresolved: ReadonlyArray<string>
  /** The most claims one id took here. */
  readonly maxAttempts: number
}

/** What one worker saw on one channel when verifying. */
export interface VerifyTally {
  /** First answer of each id, by outcome. */
  readonly firstAnswers: Readonly<Record<string, number>>
  /** Ids that answered `Claimed` (claimable again: a second claim). */
  readonly claimedAgain: ReadonlyArray<string>
  /** Ids that never answered `Duplicate` within the verify deadline. */
  readonly notDuplicate: ReadonlyArray<string>
}

export type ContentionWorkerLine = WorkerLine<
  {
    readonly channels: Readonly<Record<ContentionChannel, ChannelTally>>
    /** `channel_state_undecided_claims` of this process, by namespace/reason/answer. */
    readonly undecided: Readonly<Record<string, number>>
    readonly problems: ReadonlyArray<string>
  },
  {
    readonly type: "verified"
    readonly worker: string
    readonly channels: Readonly<Record<ContentionChannel, VerifyTally>>
    readonly undecided: Readonly<Record<string, number>>
    readonly problems: ReadonlyArray<string>
  }
>

const randomMillis = (min: number, max: number) => Effect.sleep(`${Math.round(min + Math.random() * (max - min))} millis`)

const bump = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1
}

const main = () => {
  const [backend, location, goFile, worker = "?", count = "1000", first = "0"] = process.argv.slice(2)
  const ids = Array.from({ length: Number(count) }, (_, i) => contentionId((i + Number(first)) % Number(count)))
  const { problems, layer: logger } = problemLogger()
  let verify: () => void = () => {}
  const verifyRequested = new Promise<void>((resolve) => {
    verify = resolve
  })
  onStdinLine((line) => {
    if (line === "verify") verify()
  })

  const runtime = Layer.suspend(() =>
    PluginRuntime.layer({
      pluginId: CONTENTION_PLUGIN,
      config: persistenceOn(CONTENTION_PLUGIN),
      store: storeLocationOf(backend, location),
      channels: ["bluebubbles", "feishu"]
    })
  )

  const program = Effect.gen(function* () {
    const bluebubbles = yield* BlueBubblesInboundDedupe
    const feishu = yield* FeishuMessageDedupe
    const claimOn: Record<ContentionChannel, (id: string) => Effect.Effect<ClaimOutcome>> = {
      bluebubbles: (id) => bluebubbles.claim({ accountId: "acc", guid: id }),
      feishu: (id) => feishu.beginProcessing({ namespace: "app", messageId: id })
    }
    say({ type: "ready", worker })
    yield* waitForGo(goFile!)
    const startedAt = Date.now()
    const deadline = startedAt + CLAIM_DEADLINE_MS

    const decideAll = (channel: ContentionChannel) => {
      const won: Array<string> = []
      const answers: Record<string, number> = {}
      const finalized: Record<string, number> = {}
      const unresolved: Array<string> = []
      let maxAttempts = 0
      const decide = (id: string, attempt: number): Effect.Effect<void> =>
        Effect.flatMap(claimOn[channel](id), (outcome) => {
          bump(answers, outcome._tag)
          maxAttempts = Math.max(maxAttempts, attempt)
          if (outcome._tag === "Claimed") {
            won.push(id)
            return randomMillis(0, 20).pipe(
              Effect.zipRight(outcome.finalize),
              Effect.map((settled) => bump(finalized, settled))
            )
          }
          if (outcome._tag !== "InFlight") return Effect.void
          if (Date.now() > deadline) return Effect.sync(() => void unresolved.push(id))
          return Effect.zipRight(randomMillis(100, 400), decide(id, attempt + 1))
        })
      return Effect.map(
        Effect.forEach(ids, (id) => decide(id, 1), { concurrency: "unbounded", discard: true }),
        (): ChannelTally => ({ won, answers, finalized, unresolved, maxAttempts })
      )
    }

    const [bluebubblesTally, feishuTally] = yield* Effect.all([decideAll("bluebubbles"), decideAll("feishu")], { concurrency: 2 })
    const finishedAt = Date.now()
    say({ type: "result", worker, startedAt, finishedAt, channels: { bluebubbles: bluebubblesTally, feishu: feishuTally }, undecided: yield* undecidedClaims, problems: [...problems] })

    yield* Effect.promise(() => verifyRequested)
    const verifyDeadline = Date.now() + VERIFY_DEADLINE_MS
    const verifyAll = (channel: ContentionChannel) => {
      const firstAnswers: Record<string, number> = {}
      const claimedAgain: Array<string> = []
      const notDuplicate: Array<string> = []
      const check = (id: string, attempt: number): Effect.Effect<void> =>
        Effect.flatMap(claimOn[channel](id), (outcome) => {
          if (attempt === 1) bump(firstAnswers, outcome._tag)
          if (outcome._tag === "Duplicate") return Effect.void
          if (outcome._tag === "Claimed") {
            claimedAgain.push(id)
            notDuplicate.push(id)
            return Effect.asVoid(outcome.release)
          }
          if (Date.now() > verifyDeadline) return Effect.sync(() => void notDuplicate.push(id))
          return Effect.zipRight(randomMillis(100, 400), check(id, attempt + 1))
        })
      return Effect.as(Effect.forEach(ids, (id) => check(id, 1), { concurrency: 50, discard: true }), { firstAnswers, claimedAgain, notDuplicate } satisfies VerifyTally)
    }
    const [bbVerified, fsVerified] = yield* Effect.all([verifyAll("bluebubbles"), verifyAll("feishu")], { concurrency: 2 })
    say({ type: "verified", worker, channels: { bluebubbles: bbVerified, feishu: fsVerified }, undecided: yield* undecidedClaims, problems: [...problems] })
  }).pipe(Effect.provide(runtime))

  Effect.runPromiseExit(Effect.scoped(Effect.provide(program, logger))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
    // Done: stop listening for commands, so the process can end.
    process.stdin.destroy()
  })
}

if (process.argv[1]?.endsWith("claimUntilDecidedWorker.ts")) main()
