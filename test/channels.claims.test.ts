/**
 * The dedupe claims of BlueBubbles and Feishu across instances sharing one database: two
 * plugin runtimes in one process (two store connections), and two OS processes
 * (test/support/channelClaimWorker.ts), on a SQLite file and on PostgreSQL. Every message is
 * claimed exactly once in total; a release by the winner lets the other instance claim it;
 * a finalized message is a duplicate after a restart.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { type Context, Effect, Exit, Layer, Logger, Scope } from "effect"
import { BlueBubblesInboundDedupe, type ClaimOutcome } from "../src/channels/BlueBubblesInboundDedupe.js"
import { FeishuMessageDedupe } from "../src/channels/FeishuMessageDedupe.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type BackendFactory, sqlBackends, type TestDatabase, tempDir } from "./support/backends.js"
import { type ChannelWorkerLine, WORKER_PLUGIN, workerGuid } from "./support/channelClaimWorker.js"
import { type ChildExit, resultLineOf, spawnLineProcess } from "./support/lineProcess.js"

const workerScript = path.join("test", "support", "channelClaimWorker.ts")

const MESSAGES = 1000
/** How many of each side's wins are released, then claimed by the other side. */
const RELEASED = 20

const storeOf = (db: TestDatabase): PluginRuntime.StoreLocation => (db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location })

const configOn = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

/** What a test needs of one dedupe cache: which plugin runs it, and its claim. */
interface Dedupe {
  readonly name: string
  readonly pluginId: PluginRuntime.ChannelName
  readonly claim: (i: number) => Effect.Effect<ClaimOutcome, never, PluginRuntime.ChannelServices>
}

const dedupes: ReadonlyArray<Dedupe> = [
  {
    name: "BlueBubbles claim",
    pluginId: "bluebubbles",
    claim: (i) => Effect.flatMap(BlueBubblesInboundDedupe, (b) => b.claim({ accountId: "acc", guid: `guid-${i}` }))
  },
  {
    name: "Feishu beginProcessing",
    pluginId: "feishu",
    claim: (i) => Effect.flatMap(FeishuMessageDedupe, (f) => f.beginProcessing({ namespace: "app", messageId: `om_${i}` }))
  }
]

/** One gateway instance: the plugin runtime built on its own (its own store connection), closed on demand or with the test. */
const openInstance = (db: TestDatabase, pluginId: string) =>
  Effect.gen(function* () {
    const scope = yield* Effect.acquireRelease(Scope.make(), (scope, exit) => Scope.close(scope, exit))
    const layer = Layer.provide(PluginRuntime.layer({ pluginId, config: configOn(pluginId), store: storeOf(db) }), Logger.remove(Logger.defaultLogger))
    const context: Context.Context<PluginRuntime.ChannelServices> = yield* Layer.buildWithScope(layer, scope)
    return {
      run: <A>(effect: Effect.Effect<A, never, PluginRuntime.ChannelServices>) => Effect.provide(effect, context),
      /** Shuts the instance down (flushing what is queued). */
      close: Scope.close(scope, Exit.void)
    }
  })

type Instance = Effect.Effect.Success<ReturnType<typeof openInstance>>

/** Claims message `i` on `instance`. */
const claimOn = (instance: Instance, dedupe: Dedupe, i: number) => instance.run(dedupe.claim(i))

/**
 * Both instances claim every message, all at once: for each message the two claims are
 * started together (which side first alternates), so they contend on the same key in the
 * store. Answers the outcomes of each side, by message index.
 */
const claimBoth = (a: Instance, b: Instance, dedupe: Dedupe) =>
  Effect.gen(function* () {
    const fromA = new Array<ClaimOutcome>(MESSAGES)
    const fromB = new Array<ClaimOutcome>(MESSAGES)
    yield* Effect.forEach(
      Array.from({ length: MESSAGES }, (_, i) => i),
      (i) => {
        const first = Effect.map(claimOn(a, dedupe, i), (outcome) => {
          fromA[i] = outcome
        })
        const second = Effect.map(claimOn(b, dedupe, i), (outcome) => {
          fromB[i] = outcome
        })
        return Effect.all(i % 2 === 0 ? [first, second] : [second, first], { concurrency: 2, discard: true })
      },
      { concurrency: "unbounded", discard: true }
    )
    return [fromA, fromB] as const
  })

/** Claims every message on one instance; the outcomes by index. */
const claimAll = (instance: Instance, dedupe: Dedupe) =>
  Effect.forEach(Array.from({ length: MESSAGES }, (_, i) => i), (i) => claimOn(instance, dedupe, i), { concurrency: "unbounded" })

const tally = (outcomes: ReadonlyArray<ClaimOutcome>) => {
  const counts: Record<string, number> = {}
  for (const outcome of outcomes) counts[outcome._tag] = (counts[outcome._tag] ?? 0) + 1
  return counts
}

const inProcess = (backend: BackendFactory, dedupe: Dedupe) =>
  it.scopedLive(
    `${dedupe.name} on ${backend.name}: two runtimes in one process claim the same ${MESSAGES} messages — each once in total; release hands over; finalize is a duplicate after a restart`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        // Opened one after the other: the first creates the schema.
        const a = yield* openInstance(db, dedupe.pluginId)
        const b = yield* openInstance(db, dedupe.pluginId)

        const [fromA, fromB] = yield* claimBoth(a, b, dedupe)
        const claimedBy = Array.from({ length: MESSAGES }, (_, i) =>
          [fromA[i]!._tag === "Claimed" ? "a" : "", fromB[i]!._tag === "Claimed" ? "b" : ""].join("")
        )
        const notOnce = claimedBy.flatMap((who, i) => (who.length === 1 ? [] : [`${i}:${who || "nobody"}`]))
        console.info(`[channel-state claims] ${dedupe.name} on ${backend.name}: a ${JSON.stringify(tally(fromA))}, b ${JSON.stringify(tally(fromB))}, not exactly once: ${notOnce.length}`)
        expect(notOnce.length, `messages not claimed exactly once (first: ${notOnce.slice(0, 10).join(", ")})`).toBe(0)
        // The losers were told why: the winner had not finalized yet.
        for (const [i, who] of claimedBy.entries()) {
          const loser = who === "a" ? fromB[i]! : fromA[i]!
          if (loser._tag !== "InFlight") expect.fail(`message ${i}: the loser got ${loser._tag}, expected InFlight`)
        }

        // The winner releases some: the other side may claim them now.
        const wonBy = (side: string) => claimedBy.flatMap((who, i) => (who === side ? [i] : []))
        const handOver = [...wonBy("a").slice(0, RELEASED).map((i) => ({ i, from: fromA, to: b })), ...wonBy("b").slice(0, RELEASED).map((i) => ({ i, from: fromB, to: a }))]
        const releasedSet = new Set(handOver.map((h) => h.i))
        const finalized = new Set<number>()
        const takenOver = yield* Effect.forEach(handOver, ({ i, from, to }) =>
          Effect.gen(function* () {
            const won = from[i]!
            if (won._tag !== "Claimed") return yield* Effect.die(`message ${i} was not claimed`)
            yield* won.release
            const again = yield* claimOn(to, dedupe, i)
            if (again._tag === "Claimed") {
              yield* again.finalize
              finalized.add(i)
            }
            return { i, outcome: again._tag }
          })
        )
        const refused = takenOver.filter((t) => t.outcome !== "Claimed")
        // Where the other side refused, ask a third instance (fresh memory) whether the store has the message free.
        const freeInStore = yield* Effect.gen(function* () {
          if (refused.length === 0) return 0
          const probe = yield* openInstance(db, dedupe.pluginId)
          const outcomes = yield* Effect.forEach(refused, ({ i }) =>
            Effect.flatMap(claimOn(probe, dedupe, i), (outcome) => (outcome._tag === "Claimed" ? Effect.as(outcome.release, true) : Effect.succeed(false)))
          )
          yield* probe.close
          return outcomes.filter(Boolean).length
        })
        expect
          .soft(
            refused.length,
            `released messages the other side could not claim, e.g. ${JSON.stringify(refused.slice(0, 3))}; ` +
              `${freeInStore} of them were free in the store (a fresh instance could claim them): the refusing side answered from its memory`
          )
          .toBe(0)

        // Every other winner finalizes; after a restart each finalized message is a duplicate
        // (and a released one nobody took over is free again).
        yield* Effect.forEach(
          claimedBy.entries(),
          ([i, who]) => {
            if (releasedSet.has(i)) return Effect.void
            const won = who === "a" ? fromA[i]! : fromB[i]!
            finalized.add(i)
            return won._tag === "Claimed" ? won.finalize : Effect.void
          },
          { concurrency: 16, discard: true }
        )
        yield* a.close
        yield* b.close
        const restarted = yield* openInstance(db, dedupe.pluginId)
        const afterRestart = yield* claimAll(restarted, dedupe)
        const wrongAfterRestart = afterRestart.flatMap((outcome, i) => {
          const expected = finalized.has(i) ? "Duplicate" : "Claimed"
          return outcome._tag === expected ? [] : [`${i}: ${outcome._tag}, expected ${expected}`]
        })
        expect(finalized.size).toBeGreaterThanOrEqual(MESSAGES - 2 * RELEASED)
        expect(wrongAfterRestart, "after a restart").toEqual([])
      }),
    60_000
  )

// ---------------------------------------------------------------------------------------------
// Two OS processes

type ResultLine = Extract<ChannelWorkerLine, { type: "result" }>

const spawnWorker = (args: ReadonlyArray<string>) => spawnLineProcess<ChannelWorkerLine>(workerScript, args)

const resultOf = (worker: string, exit: ChildExit<ChannelWorkerLine>): ResultLine =>
  resultLineOf(`worker ${worker}`, exit, (line): line is ResultLine => line.type === "result")

const acrossProcesses = (backend: BackendFactory) =>
  it.scopedLive(
    `BlueBubbles claim on ${backend.name}: two OS processes claim the same ${MESSAGES} guids — the union is all of them, the intersection empty`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const signals = yield* tempDir
        const goFile = path.join(signals, "go")
        // The schema exists before the workers start, so they only race on claims.
        const setup = yield* openInstance(db, WORKER_PLUGIN)
        yield* setup.close

        const names = ["worker-a", "worker-b"]
        const workers = yield* Effect.forEach(names, (name) => spawnWorker([backend.name, db.location!, goFile, name, String(MESSAGES), name === "worker-b" ? "descending" : "ascending"]))
        yield* Effect.forEach(workers, (w) => w.ready((line) => line.type === "ready", "worker"), { concurrency: "unbounded", discard: true }).pipe(
          Effect.timeout("90 seconds"),
          Effect.orDie
        )
        fs.writeFileSync(goFile, "go")
        const exits = yield* Effect.forEach(workers, (w) => w.exit, { concurrency: "unbounded" }).pipe(Effect.timeout("150 seconds"), Effect.orDie)
        const [a, b] = exits.map((exit, i) => resultOf(names[i]!, exit)) as [ResultLine, ResultLine]

        const union = new Set([...a.won, ...b.won])
        const wonByA = new Set(a.won)
        const intersection = b.won.filter((guid) => wonByA.has(guid))
        console.info(
          `[channel-state claims] 2 processes on ${backend.name}: a ${JSON.stringify(a.outcomes)} (${a.finishedAt - a.startedAt} ms, ${a.problems.length} problem lines), ` +
            `b ${JSON.stringify(b.outcomes)} (${b.finishedAt - b.startedAt} ms, ${b.problems.length} problem lines), union ${union.size}, intersection ${intersection.length}`
        )
        // The runs really overlapped in time.
        expect(Math.max(a.startedAt, b.startedAt)).toBeLessThan(Math.min(a.finishedAt, b.finishedAt))
        expect.soft(intersection.length, `guids claimed by both processes (first: ${intersection.slice(0, 5).join(", ")}; problems: ${[...a.problems, ...b.problems].slice(0, 2).join(" | ")})`).toBe(0)
        expect.soft([...union].sort(), "guids nobody claimed").toEqual(Array.from({ length: MESSAGES }, (_, i) => workerGuid(i)).sort())
      }),
    300_000
  )

/** Asking whether a message was processed must not make this instance treat it as held. */
const askingDoesNotHold = (backend: BackendFactory) =>
  it.scopedLive("Feishu hasProcessed on a message claimed elsewhere, then released there: this instance can claim it at once", () =>
    Effect.gen(function* () {
      const db = yield* backend.fresh
      const [a, b] = [yield* openInstance(db, "feishu"), yield* openInstance(db, "feishu")]
      const message = { namespace: "app", messageId: "om_asked" }
      const first = yield* a.run(Effect.flatMap(FeishuMessageDedupe, (f) => f.beginProcessing(message)))
      expect(first._tag).toBe("Claimed")
      expect(yield* b.run(Effect.flatMap(FeishuMessageDedupe, (f) => f.hasProcessed(message)))).toBe(false)
      if (first._tag === "Claimed") yield* first.release
      const second = yield* b.run(Effect.flatMap(FeishuMessageDedupe, (f) => f.beginProcessing(message)))
      expect(second._tag).toBe("Claimed")
    })
  )

for (const backend of sqlBackends) {
  describe(`claims across instances: ${backend.name}`, () => {
    for (const dedupe of dedupes) inProcess(backend, dedupe)
    acrossProcesses(backend)
    askingDoesNotHold(backend)
  })
}
