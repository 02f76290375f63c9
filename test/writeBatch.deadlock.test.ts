/**
 * No deadlocks between batches: two OS processes (test/support/storeWriteWorker.ts) run
 * `writeBatch` over the same 200 keys — one lists them in ascending order, the other in
 * descending order, registers mixed with deletes — 40 batches each, 4 at a time per process,
 * on one PostgreSQL database and on one SQLite file. Batches that lock rows in opposite orders
 * would deadlock (PostgreSQL aborts one with 40P01; SQLite would fail with SQLITE_BUSY past
 * the wait): every batch must succeed, and the row count the caps use must agree with the rows.
 * The store retries a deadlock it is told about, so on PostgreSQL the database's own deadlock
 * counter (`pg_stat_database.deadlocks`) must not move either.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { type BackendFactory, sqlBackends } from "./support/backends.js"
import { entryRows } from "./support/entryRows.js"
import { batchNamespace, type StoreWriteLine } from "./support/storeWriteWorker.js"
import { resultsOf, spawnGroup } from "./support/workerGroup.js"

const KEYS = 200
const BATCHES = 40
const CONCURRENT = 4

type ResultLine = Extract<StoreWriteLine, { type: "result" }>

const oppositeOrders = (backend: BackendFactory) =>
  it.scopedLive(
    `two processes, ${BATCHES} writeBatch each over the same ${KEYS} keys in opposite orders (${CONCURRENT} at a time): 0 failures`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* Effect.scoped(Effect.provide(Effect.flatMap(KeyedStore, (s) => s.open(batchNamespace)), db.store()))
        const rows = yield* entryRows(db)
        const deadlocks =
          db.backend === "pg"
            ? Effect.orDie(Effect.map(rows.sql<{ n: number | string }>`SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()`, (r) => Number(r[0]?.n ?? 0)))
            : Effect.succeed(0)
        const deadlocksBefore = yield* deadlocks
        const orders = ["ascending", "descending"]
        const group = yield* spawnGroup<StoreWriteLine>(path.join("test", "support", "storeWriteWorker.ts"), orders, (goFile, order) => [
          backend.name,
          db.location!,
          goFile,
          order,
          "batches",
          order,
          String(BATCHES),
          String(KEYS),
          String(CONCURRENT)
        ])
        yield* group.start
        const results = resultsOf(group, yield* group.exits(150_000), (line): line is ResultLine => line.type === "result")
        // The workers' sessions have ended, so their statistics are flushed.
        const deadlocksDuring = (yield* deadlocks) - deadlocksBefore
        const stored = yield* rows.count(batchNamespace.owner, batchNamespace.namespace)
        const counter = yield* rows.counter(batchNamespace.owner, batchNamespace.namespace)
        console.info(
          `[channel-state batches] ${backend.name}: ${results.map((r) => `${r.worker} ${r.attempted - r.failed.length}/${r.attempted} batches ok in ${r.finishedAt - r.startedAt} ms`).join(", ")}; ` +
            `refused steps ${results.map((r) => r.refused).join("/")}; rows ${stored}, counter ${counter}` +
            (db.backend === "pg" ? `; deadlocks counted by PostgreSQL ${deadlocksDuring}` : "")
        )
        expect(Math.max(...results.map((r) => r.startedAt)), "the two runs overlapped").toBeLessThan(Math.min(...results.map((r) => r.finishedAt)))
        for (const r of results) {
          expect(r.failed, `${r.worker}: failed batches`).toEqual([])
          expect(r.refused, `${r.worker}: refused steps`).toBe(0)
        }
        // Every batch writes all the keys, so the namespace holds what the last one left: its registers, not its deletes.
        const possible = new Set(Array.from({ length: BATCHES }, (_, b) => Array.from({ length: KEYS }, (_, k) => k).filter((k) => (k + b) % 7 !== 0).length))
        expect([...possible], "rows some batch leaves").toContain(stored)
        expect(counter, "the trigger-kept row count").toBe(stored)
        expect(deadlocksDuring, "deadlocks PostgreSQL detected (and the store retried)").toBe(0)
      }),
    180_000
  )

for (const backend of sqlBackends) {
  describe(`writeBatch in opposite orders across processes: ${backend.name}`, () => {
    oppositeOrders(backend)
  })
}
