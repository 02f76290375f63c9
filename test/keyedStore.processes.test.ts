/**
 * Atomicity across OS processes: two workers (test/support/claimWorker.ts) open the same
 * SQLite file or PostgreSQL database, wait for one start signal, then race on the same
 * claims and one-shot keys. Every claim must be won exactly once and every one-shot value
 * handed out exactly once, across both processes.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import {
  CLAIM_KEYS,
  CONSUME_KEYS,
  claimKey,
  claimsNamespace,
  consumeKey,
  oneShotNamespace,
  RACE_KEY,
  type ResultLine,
  type WorkerLine
} from "./support/claimProtocol.js"
import { type BackendFactory, sqlBackends, tempDir } from "./support/backends.js"
import { type CompareLine, counterNamespace, COUNTER_KEY } from "./support/compareProtocol.js"
import { type ChildExit, resultLineOf, spawnLineProcess } from "./support/lineProcess.js"

const workerScript = path.join("test", "support", "claimWorker.ts")

/** Spawns a worker; it is killed with the scope if it is still running then. */
const spawnWorker = (args: ReadonlyArray<string>) => spawnLineProcess<WorkerLine>(workerScript, args)

const resultOf = (worker: string, exit: ChildExit<WorkerLine>): ResultLine =>
  resultLineOf(`worker ${worker}`, exit, (line): line is ResultLine => line.type === "result")

const processes = (backend: BackendFactory) =>
  describe(`KeyedStore across processes: ${backend.name}`, () => {
    it.scopedLive(
      "two processes racing on one database: every claim won once, every one-shot value handed out once",
      () =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          const signals = yield* tempDir
          const goFile = path.join(signals, "go")

          // The test creates the schema and the one-shot rows, so the workers only race.
          yield* Effect.scoped(
            Effect.provide(
              Effect.gen(function* () {
                const store = yield* KeyedStore
                yield* store.open(claimsNamespace)
                const oneShot = yield* store.open(oneShotNamespace)
                yield* oneShot.writeBatch(
                  Array.from({ length: CONSUME_KEYS }, (_, n) => ({
                    _tag: "Register" as const,
                    key: consumeKey(n),
                    value: { worker: "test", n },
                    createdAt: 0,
                    expiresAt: undefined
                  }))
                )
              }),
              db.store()
            )
          )

          const names = ["worker-a", "worker-b"]
          const workers = yield* Effect.forEach(names, (name) => spawnWorker([backend.name, db.location!, goFile, name]))
          // Start barrier: both stores are open before either worker may begin.
          yield* Effect.forEach(workers, (w, i) => w.ready((line) => line.type === "ready", `worker ${names[i]}`), { concurrency: "unbounded", discard: true }).pipe(
            Effect.timeout("90 seconds"),
            Effect.orDie
          )
          fs.writeFileSync(goFile, "go")
          const exits = yield* Effect.forEach(workers, (w) => w.exit, { concurrency: "unbounded" }).pipe(Effect.timeout("150 seconds"), Effect.orDie)
          const results = exits.map((exit, i) => resultOf(names[i]!, exit))

          for (const result of results) expect(result.failures, `${result.worker} had failing operations`).toEqual([])
          // The two runs really overlapped in time.
          const latestStart = Math.max(...results.map((r) => r.startedAt))
          const earliestEnd = Math.min(...results.map((r) => r.finishedAt))
          expect(latestStart, `runs did not overlap: ${JSON.stringify(results.map((r) => [r.startedAt, r.finishedAt]))}`).toBeLessThan(earliestEnd)

          // One contended key: exactly one racer of either process won it.
          expect(results.reduce((sum, r) => sum + r.raceWins, 0)).toBe(1)

          // 1000 distinct keys, claimed by both: each exactly once in total.
          const winners = new Map<string, Array<string>>()
          for (const r of results) for (const key of r.claimed) winners.set(key, [...(winners.get(key) ?? []), r.worker])
          const claimTotal = results.reduce((sum, r) => sum + r.claimed.length, 0)
          expect(claimTotal).toBe(CLAIM_KEYS)
          const notOnce = Array.from({ length: CLAIM_KEYS }, (_, i) => claimKey(i)).filter((key) => winners.get(key)?.length !== 1)
          expect(notOnce, "keys not claimed exactly once").toEqual([])

          // Every pre-registered one-shot value went to exactly one consumer.
          const handedOut = results.flatMap((r) => r.consumed).sort((a, b) => a.value.n - b.value.n)
          expect(handedOut).toEqual(Array.from({ length: CONSUME_KEYS }, (_, n) => ({ key: consumeKey(n), value: { worker: "test", n } })))

          // What is stored agrees with who won.
          yield* Effect.scoped(
            Effect.provide(
              Effect.gen(function* () {
                const store = yield* KeyedStore
                const claims = yield* store.open(claimsNamespace)
                const oneShot = yield* store.open(oneShotNamespace)
                expect(yield* oneShot.size).toBe(0)
                expect(yield* claims.size).toBe(CLAIM_KEYS + 1)
                const raceWinner = results.find((r) => r.raceWins === 1)!.worker
                expect(Option.map(yield* claims.lookup(RACE_KEY), (v) => v.worker)).toEqual(Option.some(raceWinner))
                const stored = yield* claims.entries
                const mismatched = stored.filter((e) => e.key !== RACE_KEY && winners.get(e.key)?.[0] !== e.value.worker)
                expect(mismatched, "stored claims whose value is not the winner's").toEqual([])
              }),
              db.store()
            )
          )
        }),
      300_000
    )
  })

const compareScript = path.join("test", "support", "compareWorker.ts")
const INCREMENTS = 150

const compareAcrossProcesses = (backend: BackendFactory) =>
  describe(`KeyedStore compare-and-set across processes: ${backend.name}`, () => {
    it.scopedLive(
      "two processes incrementing one counter by observe + compareAndSet: every revision applied exactly once, no increment lost",
      () =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          const signals = yield* tempDir
          const goFile = path.join(signals, "go")
          yield* Effect.scoped(Effect.provide(Effect.flatMap(KeyedStore, (store) => store.open(counterNamespace)), db.store()))
          const names = ["worker-a", "worker-b"]
          const workers = yield* Effect.forEach(names, (name) =>
            spawnLineProcess<CompareLine>(compareScript, [backend.name, db.location!, goFile, name, String(INCREMENTS)])
          )
          yield* Effect.forEach(workers, (w, i) => w.ready((line) => line.type === "ready", `worker ${names[i]}`), { concurrency: "unbounded", discard: true }).pipe(
            Effect.timeout("90 seconds"),
            Effect.orDie
          )
          fs.writeFileSync(goFile, "go")
          const exits = yield* Effect.forEach(workers, (w) => w.exit, { concurrency: "unbounded" }).pipe(Effect.timeout("150 seconds"), Effect.orDie)
          const results = exits.map((exit, i) =>
            resultLineOf(`worker ${names[i]}`, exit, (line): line is Extract<CompareLine, { type: "result" }> => line.type === "result")
          )
          for (const result of results) expect(result.failures, `${result.worker} had failing operations`).toEqual([])
          const latestStart = Math.max(...results.map((r) => r.startedAt))
          const earliestEnd = Math.min(...results.map((r) => r.finishedAt))
          expect(latestStart, "runs did not overlap").toBeLessThan(earliestEnd)
          // Each counter value was moved from exactly once, by one process or the other.
          const movedFrom = results.flatMap((r) => r.movedFrom).sort((a, b) => a - b)
          expect(movedFrom).toEqual(Array.from({ length: 2 * INCREMENTS }, (_, i) => i))
          const stored = yield* Effect.scoped(
            Effect.provide(
              Effect.flatMap(KeyedStore, (store) => Effect.flatMap(store.open(counterNamespace), (h) => h.lookup(COUNTER_KEY))),
              db.store()
            )
          )
          expect(Option.map(stored, (c) => c.n)).toEqual(Option.some(2 * INCREMENTS))
        }),
      300_000
    )
  })

for (const backend of sqlBackends) {
  processes(backend)
  compareAcrossProcesses(backend)
}
