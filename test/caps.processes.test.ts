/**
 * Caps are exact across processes: three OS processes (test/support/storeWriteWorker.ts),
 * each with 20 concurrent writers, `register` distinct keys into one namespace capped at
 * 5 live rows, on one SQLite file and on one PostgreSQL database, directly on the keyed store.
 *
 * - `reject-new`: exactly 5 writes succeed in total, every other one fails with
 *   `LimitExceeded`, and exactly those 5 rows remain.
 * - `evict-oldest`: every write succeeds; meanwhile an observer (the test process, on its own
 *   connection) counts the namespace's committed rows over and over and never sees more than
 *   5; 5 remain.
 *
 * Either way, the trigger-kept row count the caps are enforced from agrees with the rows.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { KeyedStore, type OverflowPolicy } from "../src/KeyedStore.js"
import { type BackendFactory, sqlBackends } from "./support/backends.js"
import { entryRows } from "./support/entryRows.js"
import { CAP, capsNamespace, type StoreWriteLine } from "./support/storeWriteWorker.js"
import { resultsOf, spawnGroup } from "./support/workerGroup.js"

const WORKERS = ["writer-a", "writer-b", "writer-c"]
const WRITERS = 20
const KEYS_PER_WRITER = 5

type ResultLine = Extract<StoreWriteLine, { type: "result" }>

/** Lets the event loop run (child output, timers) between two samples. */
const nextTick = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const caps = (backend: BackendFactory, overflow: OverflowPolicy) =>
  it.scopedLive(
    `${overflow} on ${backend.name}: ${WORKERS.length} processes × ${WRITERS} writers × ${KEYS_PER_WRITER} distinct keys into a namespace of ${CAP}: the cap holds exactly`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const ns = capsNamespace(overflow)
        // Schema and namespace exist before the workers start, so they race only on writes.
        yield* Effect.scoped(Effect.provide(Effect.flatMap(KeyedStore, (s) => s.open(ns)), db.store()))
        const rows = yield* entryRows(db)

        const group = yield* spawnGroup<StoreWriteLine>(path.join("test", "support", "storeWriteWorker.ts"), WORKERS, (goFile, name) => [
          backend.name,
          db.location!,
          goFile,
          name,
          "distinct",
          overflow,
          String(WRITERS),
          String(KEYS_PER_WRITER)
        ])
        yield* group.ready

        // The observer: committed rows of the namespace, sampled until the writers are done.
        const samples: Array<{ readonly at: number; readonly rows: number }> = []
        let observing = true
        const observer = yield* Effect.fork(
          Effect.whileLoop({
            while: () => observing,
            body: () =>
              Effect.zipRight(
                Effect.map(rows.count(ns.owner, ns.namespace), (n) => {
                  samples.push({ at: Date.now(), rows: n })
                }),
                nextTick
              ),
            step: () => {}
          })
        )
        yield* group.go
        const exits = yield* group.exits(150_000)
        observing = false
        yield* Fiber.join(observer)
        const results = resultsOf(group, exits, (line): line is ResultLine => line.type === "result")

        const from = Math.min(...results.map((r) => r.startedAt))
        const to = Math.max(...results.map((r) => r.finishedAt))
        const during = samples.filter((s) => s.at >= from && s.at <= to)
        const most = Math.max(0, ...samples.map((s) => s.rows))
        const finalRows = yield* rows.count(ns.owner, ns.namespace)
        const counter = yield* rows.counter(ns.owner, ns.namespace)
        const written = results.flatMap((r) => r.written)
        const failed = results.flatMap((r) => r.failed)
        const reasons: Record<string, number> = {}
        for (const f of failed) reasons[f.reason] = (reasons[f.reason] ?? 0) + 1
        const stored = new Set((yield* Effect.scoped(Effect.provide(Effect.flatMap(Effect.flatMap(KeyedStore, (s) => s.open(ns)), (h) => h.entries), db.store()))).map((e) => e.key))
        console.info(
          `[channel-state caps] ${overflow} on ${backend.name}: succeeded ${results.map((r) => `${r.worker} ${r.written.length}/${r.attempted}`).join(", ")}; failures ${JSON.stringify(reasons)}; ` +
            `observer ${samples.length} samples (${during.length} while writing), most rows seen ${most}; rows at the end ${finalRows}, counter ${counter}; runs ${results.map((r) => r.finishedAt - r.startedAt).join("/")} ms`
        )

        // The processes really wrote at the same time.
        expect(Math.max(...results.map((r) => r.startedAt))).toBeLessThan(Math.min(...results.map((r) => r.finishedAt)))
        expect(most, "the most committed rows the observer saw").toBeLessThanOrEqual(CAP)
        expect(during.length, "observer samples taken while the processes wrote").toBeGreaterThanOrEqual(10)
        expect(finalRows).toBe(CAP)
        expect(counter, "the trigger-kept row count").toBe(finalRows)
        if (overflow === "reject-new") {
          expect(written.length, "writes that succeeded, in total").toBe(CAP)
          expect(reasons, "why the other writes failed").toEqual({ LimitExceeded: WORKERS.length * WRITERS * KEYS_PER_WRITER - CAP })
          expect([...stored].sort(), "the rows that remain are the writes that succeeded").toEqual([...written].sort())
        } else {
          expect(failed.slice(0, 5), "failed writes").toEqual([])
          expect(written.length).toBe(WORKERS.length * WRITERS * KEYS_PER_WRITER)
          expect(stored.size).toBe(CAP)
        }
      }),
    180_000
  )

for (const backend of sqlBackends) {
  describe(`exact caps across processes: ${backend.name}`, () => {
    caps(backend, "reject-new")
    caps(backend, "evict-oldest")
  })
}
