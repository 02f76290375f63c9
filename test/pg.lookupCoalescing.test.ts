/**
 * The PostgreSQL lookup coalescing, tried (sqlLookups.ts): every caller of a coalesced
 * `lookupMany` must get exactly what a lone lookup of its key gives.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { pgBackend, pgUrl } from "./support/backends.js"
import { describePg } from "./support/describePg.js"

const Value = Schema.Struct({ n: Schema.Number })
const options = { owner: "p", namespace: "lk", schema: Value, maxEntries: 10_000 }

type Answer = Either.Either<Option.Option<{ readonly n: number }>, { readonly reason: string; readonly operation: string; readonly key?: string | undefined }>
const answerOf = (a: Answer) => (Either.isRight(a) ? { value: Option.getOrNull(a.right) } : { reason: a.left.reason, operation: a.left.operation, errorKey: a.left.key })

describePg("coalesced PostgreSQL lookups", () => {
  const backend = pgBackend(pgUrl ?? "")

  it.scopedLive("a corrupt row whose removal cannot take the namespace lock fails only the lookups of its key (good keys in the same batch still answer)", () =>
    Effect.gen(function* () {
      const db = yield* backend.fresh
      const context = yield* Layer.build(db.store({ lockWait: "300 millis" }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const h = yield* store.open(options)
      for (let i = 0; i < 40; i++) yield* h.register(`k${i}`, { n: i })
      yield* Effect.provide(
        Effect.flatMap(SqlClient, (sql) => sql`UPDATE channel_state_entries SET value_json = ${'{"n":"text"}'} WHERE entry_key = ${"k7"}`),
        db.sql!
      )
      // Another process holds the namespace's write lock (a long write transaction, or a session lock).
      const holderSql = yield* Effect.provide(SqlClient, yield* Layer.build(db.sql!))
      const holder = yield* holderSql.reserve
      yield* holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", ["p/lk"], undefined)

      // Reference: lone lookups, one at a time. Good keys answer (a read takes no lock).
      const lone = yield* Effect.either(h.lookup("k3"))
      expect(answerOf(lone)).toEqual({ value: { n: 3 } })

      const keys = Array.from({ length: 60 }, (_, i) => (i % 6 === 1 ? "k7" : `k${i % 40 === 7 ? 8 : i % 40}`))
      const burst = yield* Effect.forEach(keys, (key) => Effect.either(h.lookup(key)), { concurrency: "unbounded" })
      const wrong = keys.flatMap((key, i) => {
        if (key === "k7") return []
        const got = answerOf(burst[i]!)
        const n = Number(key.slice(1))
        return JSON.stringify(got) === JSON.stringify({ value: { n } }) ? [] : [{ i, key, got }]
      })
      expect(wrong).toEqual([])
    }),
    120_000
  )

  it.scopedLive("a statement failure of a coalesced batch names each caller's key, as a lone lookup's failure does", () =>
    Effect.gen(function* () {
      const db = yield* backend.fresh
      const context = yield* Layer.build(db.store())
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const h = yield* store.open(options)
      for (let i = 0; i < 10; i++) yield* h.register(`k${i}`, { n: i })
      const raw = (q: string) => Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe(q)), db.sql!)
      // The table is gone for a moment (a broken migration, a DBA's mistake): every lookup fails, not transiently.
      yield* raw("ALTER TABLE channel_state_entries RENAME TO channel_state_entries_away")
      const lone = answerOf(yield* Effect.either(h.lookup("k1")))
      expect(lone).toMatchObject({ operation: "lookup", errorKey: "k1" })
      const keys = Array.from({ length: 30 }, (_, i) => `k${i % 10}`)
      const burst = yield* Effect.forEach(keys, (key) => Effect.either(h.lookup(key)), { concurrency: "unbounded" })
      yield* raw("ALTER TABLE channel_state_entries_away RENAME TO channel_state_entries")
      const wrong = keys.flatMap((key, i) => {
        const got = answerOf(burst[i]!)
        return JSON.stringify(got) === JSON.stringify({ ...lone, errorKey: key }) ? [] : [{ i, key, got }]
      })
      expect(wrong).toEqual([])
    }),
    120_000
  )
})

import { Exit, Fiber, Scope } from "effect"

describePg("coalesced PostgreSQL lookups, interrupted and closed", () => {
  const backend = pgBackend(pgUrl ?? "")

  it.scopedLive("some callers of a burst interrupted (the inline one among them), 10 rounds: every other caller answers its own value", () =>
    Effect.gen(function* () {
      const db = yield* backend.fresh
      const context = yield* Layer.build(db.store())
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const h = yield* store.open(options)
      yield* h.writeBatch(Array.from({ length: 100 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: { n: i }, createdAt: Date.now(), expiresAt: undefined })))
      const wrong: Array<unknown> = []
      for (let round = 0; round < 10; round++) {
        const keys = Array.from({ length: 150 }, (_, i) => `k${(i * 7 + round) % 120}`)
        const fibers = yield* Effect.forEach(keys, (key) => Effect.fork(Effect.either(h.lookup(key))))
        yield* Effect.yieldNow()
        // The first (running inline), then every third.
        yield* Effect.forEach(fibers.filter((_, i) => i % 3 === 0), (f) => Fiber.interrupt(f), { concurrency: "unbounded", discard: true })
        const exits = yield* Effect.forEach(fibers, (f) => Fiber.await(f))
        for (const [i, exit] of exits.entries()) {
          if (i % 3 === 0) continue
          const n = Number(keys[i]!.slice(1))
          const expected = { value: n < 100 ? { n } : null }
          const got = Exit.isSuccess(exit) ? answerOf(exit.value) : { exit: String(exit) }
          if (JSON.stringify(got) !== JSON.stringify(expected)) wrong.push({ round, i, key: keys[i], got })
        }
      }
      expect(wrong).toEqual([])
      // Nothing stays taken: a lone lookup still answers.
      expect(yield* h.lookup("k5")).toEqual(Option.some({ n: 5 }))
    }),
    120_000
  )

  it.scopedLive("the store closed (runtime disposed) with a burst in flight: every caller answers its value or Unavailable, none hangs, none gets another error", () =>
    Effect.gen(function* () {
      const db = yield* backend.fresh
      const seedScope = yield* Scope.make()
      {
        const context = yield* Layer.buildWithScope(db.store(), seedScope)
        const h = yield* Effect.runSync(Effect.provide(KeyedStore, context)).open(options)
        yield* h.writeBatch(Array.from({ length: 100 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: { n: i }, createdAt: Date.now(), expiresAt: undefined })))
        yield* Scope.close(seedScope, Exit.void)
      }
      const bad: Array<unknown> = []
      for (let round = 0; round < 5; round++) {
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(db.store(), scope)
        const h = yield* Effect.runSync(Effect.provide(KeyedStore, context)).open(options)
        const keys = Array.from({ length: 300 }, (_, i) => `k${(i * 13 + round) % 100}`)
        const fibers = yield* Effect.forEach(keys, (key) => Effect.fork(Effect.either(h.lookup(key))))
        yield* Effect.sleep(`${round * 3} millis`)
        yield* Scope.close(scope, Exit.void)
        const exits = yield* Effect.forEach(fibers, (f) => Fiber.await(f))
        for (const [i, exit] of exits.entries()) {
          const n = Number(keys[i]!.slice(1))
          const got = Exit.isSuccess(exit) ? answerOf(exit.value) : { exit: String(exit) }
          const fine = JSON.stringify(got) === JSON.stringify({ value: { n } }) || ("reason" in got && got.reason === "Unavailable" && got.operation !== "lookupMany")
          if (!fine) bad.push({ round, i, got })
        }
      }
      expect(bad.slice(0, 5)).toEqual([])
    }),
    180_000
  )
})

import { pgClientLayer } from "./support/backends.js"

describePg("coalesced PostgreSQL lookups, connections killed", () => {
  const backend = pgBackend(pgUrl ?? "")

  it.scopedLive("server connections killed (pg_terminate_backend) mid-burst, 8 rounds: every caller answers what a lone lookup answers (its value)", () =>
    Effect.gen(function* () {
      const db = yield* backend.fresh
      const context = yield* Layer.build(db.store())
      const h = yield* Effect.runSync(Effect.provide(KeyedStore, context)).open(options)
      yield* h.writeBatch(Array.from({ length: 100 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: { n: i }, createdAt: Date.now(), expiresAt: undefined })))
      const admin = yield* Layer.build(pgClientLayer(db.location!))
      const kill = Effect.flatMap(SqlClient, (sql) =>
        sql`SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`
      ).pipe(Effect.provide(admin), Effect.orDie)
      const wrong: Array<unknown> = []
      for (let round = 0; round < 8; round++) {
        const keys = Array.from({ length: 400 }, (_, i) => `k${(i * 11 + round) % 100}`)
        const burst = yield* Effect.fork(
          Effect.forEach(keys, (key) => Effect.either(h.lookup(key)), { concurrency: "unbounded" })
        )
        yield* Effect.sleep(`${1 + round} millis`)
        yield* kill
        const answers = yield* Fiber.join(burst)
        for (const [i, a] of answers.entries()) {
          const got = answerOf(a)
          if (JSON.stringify(got) !== JSON.stringify({ value: { n: Number(keys[i]!.slice(1)) } })) wrong.push({ round, i, key: keys[i], got })
        }
      }
      expect(wrong.slice(0, 5)).toEqual([])
    }),
    180_000
  )
})
