/**
 * The batch upsert under hostile input (owner/namespace bound once per SQLite statement; the
 * strictly-increasing shortcut of lastStepPerKey): the same keys in other namespaces and
 * owners, retained namespaces, reject-new over expired rows, hostile key getters. Every
 * backend is compared with the memory store (the reference model).
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Schema } from "effect"
import { type BatchOp, KeyedStore } from "../src/KeyedStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import { backends, type TestDatabase } from "./support/backends.js"

const build = (db: TestDatabase, settings?: Partial<StoreSettings>) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(db.store(settings))
    return Effect.runSync(Effect.provide(KeyedStore, context))
  })

const reg = (key: string, value: string, createdAt: number, expiresAt?: number): BatchOp<string> => ({ _tag: "Register", key, value, createdAt, expiresAt })

const countsOk = (db: TestDatabase) =>
  db.sql === undefined
    ? Effect.succeed(true)
    : Effect.orDie(
        Effect.scoped(
          Effect.provide(
            Effect.flatMap(SqlClient, (sql) =>
              Effect.map(
                sql<{ bad: number | string }>`SELECT count(*) AS bad FROM channel_state_counts c WHERE c.row_count <> (SELECT count(*) FROM channel_state_entries e WHERE e.owner = c.owner AND e.namespace = c.namespace)`,
                (rows) => Number(rows[0]!.bad) === 0
              )
            ),
            db.sql
          )
        )
      )

/** Runs `scenario` on every backend; returns the results by backend name. */
const onEveryBackend = <A>(scenario: (db: TestDatabase) => Effect.Effect<A, unknown, import("effect").Scope.Scope>) =>
  Effect.gen(function* () {
    const out: Record<string, A> = {}
    for (const backend of backends) out[backend.name] = yield* scenario(yield* backend.fresh)
    return out
  })

const same = <A>(results: Record<string, A>) => expect(results).toEqual(Object.fromEntries(Object.keys(results).map((name) => [name, results.memory])))

describe("writeBatch: owner and namespace bound once (SQLite) never leak across namespaces or owners", () => {
  it.scopedLive("three namespaces of two owners, the same 600 keys, interleaved batches: each namespace holds exactly its own values", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend((db) =>
        Effect.gen(function* () {
          const store = yield* build(db)
          const t = Date.now()
          const handles = [
            yield* store.open({ owner: "o1", namespace: "n", schema: Schema.String, maxEntries: 1000 }),
            yield* store.open({ owner: "o1", namespace: "m", schema: Schema.String, maxEntries: 1000 }),
            yield* store.open({ owner: "o2", namespace: "n", schema: Schema.String, maxEntries: 1000 }),
            yield* store.open({ owner: "o1", namespace: "n", schema: Schema.String, retention: "retained" } as never)
          ]
          const keys = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, "0")}`)
          for (let round = 0; round < 2; round++) {
            for (const [h, handle] of handles.entries()) {
              const r = yield* (handle as (typeof handles)[0]).writeBatch(keys.filter((_, i) => (i + h + round) % 2 === 0 || round === 0).map((k) => reg(k, `${h}:${round}:${k}`, t)))
              expect(r.refused).toEqual([])
            }
          }
          const summary: Array<string> = []
          for (const [h, handle] of handles.entries()) {
            const entries = yield* (handle as (typeof handles)[0]).entries
            const values = entries.map((e) => String(e.value))
            const wrong = values.filter((v) => !v.startsWith(`${h}:`)).length
            summary.push(`${h}: ${entries.length} rows, ${wrong} foreign, ${values.filter((v) => v.startsWith(`${h}:1:`)).length} from round 1`)
          }
          return { summary, countsOk: yield* countsOk(db) }
        })
      )
      expect(results.memory!.summary).toEqual(["0: 600 rows, 0 foreign, 300 from round 1", "1: 600 rows, 0 foreign, 300 from round 1", "2: 600 rows, 0 foreign, 300 from round 1", "3: 600 rows, 0 foreign, 300 from round 1"])
      same(results)
    }),
    120_000
  )
})

describe("writeBatch caps with expired rows in the way", () => {
  it.scopedLive("reject-new maxEntries 3: 2 live + 2 expired-unswept rows; a batch re-registering both expired keys, one live key and 3 new keys: same rows land and are refused as on memory", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend((db) =>
        Effect.gen(function* () {
          const store = yield* build(db)
          const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 3, overflow: "reject-new" })
          const t = Date.now()
          const w = yield* h.writeBatch([reg("e1", "old", t - 10_000, t - 5_000), reg("e2", "old", t - 10_000, t - 5_000), reg("l1", "old", t - 10_000), reg("l2", "old", t - 10_000)])
          const result = yield* h.writeBatch([reg("a", "new", t), reg("e1", "new", t), reg("e2", "new", t), reg("l1", "new", t), reg("m", "new", t), reg("z", "new", t)])
          const entries = (yield* h.entries).map((e) => `${e.key}=${e.value}`).sort()
          return { first: w.refused.map((r) => r.key), refused: result.refused.map((r) => r.key).sort(), entries, countsOk: yield* countsOk(db) }
        }).pipe(Effect.map((x) => x), Effect.either, Effect.map((e) => (Either.isRight(e) ? e.right : { failed: String(e.left) })))
      )
      same(results)
    }),
    120_000
  )

  it.scopedLive("ownerMaxEntries 4 across two reject-new namespaces, mixed new and existing keys in 501-row batches: same as memory, never over the cap", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend((db) =>
        Effect.gen(function* () {
          const store = yield* build(db, { ownerMaxEntries: 4 })
          const a = yield* store.open({ owner: "o", namespace: "a", schema: Schema.String, maxEntries: 1000, overflow: "reject-new" })
          const b = yield* store.open({ owner: "o", namespace: "b", schema: Schema.String, maxEntries: 1000, overflow: "reject-new" })
          const t = Date.now()
          yield* a.register("k0250", "x")
          const keys = Array.from({ length: 501 }, (_, i) => `k${String(i).padStart(4, "0")}`)
          const ra = yield* a.writeBatch(keys.map((k) => reg(k, "a", t)))
          const rb = yield* b.writeBatch([...keys].reverse().map((k) => reg(k, "b", t)))
          const ra2 = yield* a.writeBatch(keys.map((k) => reg(k, "a2", t)))
          return {
            refused: [ra.refused.length, rb.refused.length, ra2.refused.length],
            a: (yield* a.entries).map((e) => `${e.key}=${e.value}`).sort(),
            b: (yield* b.entries).map((e) => `${e.key}=${e.value}`).sort(),
            countsOk: yield* countsOk(db)
          }
        })
      )
      expect(results.memory!.a.length + results.memory!.b.length).toBeLessThanOrEqual(4)
      same(results)
    }),
    120_000
  )
})

describe("lastStepPerKey's shortcut and keys that change as they are read", () => {
  it.scopedLive("a step whose key getter answers 'b' once, then 'a' (so the batch looks strictly increasing but names 'a' twice): refused or last-step-wins, never a batch-wide failure, same on every backend", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend((db) =>
        Effect.gen(function* () {
          const store = yield* build(db)
          const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 10 })
          const t = Date.now()
          let reads = 0
          const sly = { _tag: "Register" as const, value: "second", createdAt: t, expiresAt: undefined, get key() { return reads++ === 0 ? "b" : "a" } }
          const result = yield* Effect.either(h.writeBatch([reg("a", "first", t), sly as BatchOp<string>, reg("c", "c", t)]))
          return {
            outcome: Either.isRight(result) ? `refused ${result.right.refused.map((r) => r.key).join(",")}` : `failed ${result.left.reason}: ${result.left.detail}`,
            entries: (yield* h.entries).map((e) => `${e.key}=${e.value}`).sort()
          }
        })
      )
      expect(results.memory!.outcome).not.toMatch(/^failed/)
      same(results)
    }),
    120_000
  )
})

describe("a step whose key getter throws", () => {
  it.scopedLive("writeBatch fails typed (InvalidInput), never with a defect, on every backend", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend((db) =>
        Effect.gen(function* () {
          const store = yield* build(db)
          const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 10 })
          const t = Date.now()
          const bad = { _tag: "Register" as const, value: "v", createdAt: t, expiresAt: undefined, get key(): string { throw new Error("boom") } }
          const exit = yield* Effect.exit(h.writeBatch([reg("a", "a", t), bad as BatchOp<string>]))
          return exit._tag === "Success" ? "succeeded" : exit.cause._tag === "Fail" ? `failed ${(exit.cause.error as { reason: string }).reason}` : `cause ${exit.cause._tag}`
        })
      )
      expect(results.memory).toMatch(/^failed/)
      same(results)
    }),
    60_000
  )
})
