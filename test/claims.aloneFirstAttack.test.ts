/**
 * Attacks on SQLite's lone claims running the statement first (sqlBatch's `claimAlone`) and on
 * the claims that queue behind them (`lookFirst`):
 *
 * - a lone claim of a LIVE key while another write of the same store (another namespace, or a
 *   plain register) is waiting out a file locked by another connection: the claim is a write,
 *   so it queues behind the store's busy gate — it must still answer `false` at once (reads
 *   never wait on the gate; before the change the claim read its key first, as a read);
 * - a claim queued behind a lone claim that waits out the lock, whose key becomes live (written
 *   by the lock's holder, which takes the lock again at once) while it waits: it must answer
 *   `false`, never `Busy`.
 *
 * No test asserts elapsed time: lockWait is long where a wait would be wrong, and a bound turns
 * the wait into a failure.
 */
import Database from "better-sqlite3"
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Option, Schema } from "effect"
import { bounded } from "./support/attackTools.js"
import { sqliteBackend, storeOf } from "./support/backends.js"

const Value = Schema.String

const sqliteFixture = (settings: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const db = yield* sqliteBackend.fresh
    const store = yield* storeOf(db.store({ sweepInterval: "1 hour", ...settings }))
    const raw = <R extends object>(q: string) => Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe<R>(q)), db.sql!)
    const countMismatches = raw<{ namespace: string }>(
      `SELECT c.namespace FROM channel_state_counts c WHERE c.row_count <> (SELECT count(*) FROM channel_state_entries e WHERE e.owner = c.owner AND e.namespace = c.namespace)
       UNION SELECT e.namespace FROM channel_state_entries e WHERE NOT EXISTS (SELECT 1 FROM channel_state_counts c WHERE c.owner = e.owner AND c.namespace = e.namespace)`
    )
    const lockHolder = Effect.gen(function* () {
      const holder = new Database(db.location!)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.close()))
      return {
        take: () => holder.exec("BEGIN IMMEDIATE"),
        release: () => {
          if (holder.inTransaction) holder.exec("COMMIT")
        },
        /** Writes a live row of `key` and commits, then takes the lock again, all in one step (no fiber of the store runs between). */
        writeLiveAndRetake: (owner: string, namespace: string, key: string) => {
          holder
            .prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES (?, ?, ?, ?, ?, NULL)")
            .run(owner, namespace, key, JSON.stringify("theirs"), Date.now())
          holder.exec("COMMIT")
          holder.exec("BEGIN IMMEDIATE")
        }
      }
    })
    return { store, countMismatches, lockHolder }
  })

/** Gives forked fibers time to reach their wait (no assertion on it: too short a pause only makes a test pass, never fail). */
const settle = Effect.sleep("300 millis")

describe("SQLite lone claims, statement first: attacks", () => {
  it.scopedLive("a live key claimed alone while another write of the store waits out a locked file (the busy gate closed) answers false at once (lockWait 60 s)", () =>
    Effect.gen(function* () {
      const { store, lockHolder, countMismatches } = yield* sqliteFixture({ lockWait: "60 seconds" })
      const ns = yield* store.open({ owner: "p", namespace: "a", schema: Value, maxEntries: 100 })
      const other = yield* store.open({ owner: "p", namespace: "b", schema: Value, maxEntries: 100 })
      yield* ns.register("live", "v")
      const lock = yield* lockHolder
      lock.take()
      // Another namespace's write, waiting for the lock: the store's busy gate is closed.
      const waiting = yield* Effect.fork(other.register("x", "y"))
      yield* settle
      const answer = yield* Effect.either(bounded("a lone claim of a live key while the gate is closed", ns.registerIfAbsent("live", "other"), 20))
      lock.release()
      expect(yield* bounded("the waiting register", Fiber.join(waiting), 30)).toBeUndefined()
      expect(answer).toEqual(Either.right(false))
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("a live key claimed alone while a lone claim of another namespace waits out a locked file answers false at once (lockWait 60 s)", () =>
    Effect.gen(function* () {
      const { store, lockHolder } = yield* sqliteFixture({ lockWait: "60 seconds" })
      const ns = yield* store.open({ owner: "p", namespace: "a", schema: Value, maxEntries: 100 })
      const other = yield* store.open({ owner: "p", namespace: "b", schema: Value, maxEntries: 100 })
      yield* ns.register("live", "v")
      const lock = yield* lockHolder
      lock.take()
      const waiting = yield* Effect.fork(other.registerIfAbsent("free", "mine"))
      yield* settle
      const answer = yield* Effect.either(bounded("a lone claim of a live key while another namespace's claim polls", ns.registerIfAbsent("live", "other"), 20))
      lock.release()
      expect(yield* bounded("the waiting claim", Fiber.join(waiting), 30)).toBe(true)
      expect(answer).toEqual(Either.right(false))
    })
  )

  it.scopedLive("a claim queued behind a lone claim waiting out the lock, whose key turns live while it waits (the holder writes it and locks again): false, never Busy", () =>
    Effect.gen(function* () {
      const { store, lockHolder, countMismatches } = yield* sqliteFixture({ lockWait: "1500 millis" })
      const ns = yield* store.open({ owner: "p", namespace: "q", schema: Value, maxEntries: 100 })
      const lock = yield* lockHolder
      lock.take()
      // A lone claim of a free key: holds the batcher while it waits out the lock (and then fails Busy: a free key past lockWait).
      const first = yield* Effect.fork(Effect.either(ns.registerIfAbsent("free", "mine")))
      yield* settle
      // Queued behind it: its key is free when it looks.
      const queued = yield* Effect.fork(Effect.either(ns.registerIfAbsent("k", "mine")))
      yield* settle
      lock.writeLiveAndRetake("p", "q", "k")
      const firstAnswer = yield* bounded("the lone claim", Fiber.join(first), 30)
      const queuedAnswer = yield* bounded("the queued claim", Fiber.join(queued), 30)
      lock.release()
      expect(Either.isLeft(firstAnswer) ? firstAnswer.left.reason : firstAnswer.right).toBe("Busy")
      expect(Either.isLeft(queuedAnswer) ? queuedAnswer.left.reason : queuedAnswer.right).toBe(false)
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("a queued batch of two on a locked file, one key turned live while it waited and one free: the free one is never answered false (Busy past lockWait), the live one never true", () =>
    Effect.gen(function* () {
      const { store, lockHolder, countMismatches } = yield* sqliteFixture({ lockWait: "1500 millis" })
      const ns = yield* store.open({ owner: "p", namespace: "q", schema: Value, maxEntries: 100 })
      const lock = yield* lockHolder
      lock.take()
      const reasonOf = (e: Either.Either<boolean, { readonly reason: string }>) => (Either.isLeft(e) ? e.left.reason : e.right)
      // A lone claim holds the batcher; a queued one is taken as a batch and waits for it; the next two gather into one batch.
      const lone = yield* Effect.fork(Effect.either(ns.registerIfAbsent("free", "mine")))
      yield* settle
      const taken = yield* Effect.fork(Effect.either(ns.registerIfAbsent("x", "mine")))
      yield* settle
      const turning = yield* Effect.fork(Effect.either(ns.registerIfAbsent("k", "mine")))
      const free = yield* Effect.fork(Effect.either(ns.registerIfAbsent("free2", "mine")))
      yield* settle
      lock.writeLiveAndRetake("p", "q", "k")
      const answers = yield* bounded("the four claims", Effect.forEach([lone, taken, turning, free], (f) => Effect.map(Fiber.join(f), reasonOf)), 40)
      lock.release()
      expect(answers[0]).toBe("Busy")
      expect(answers[1]).toBe("Busy")
      expect(answers[2]).not.toBe(true)
      expect(answers[3]).toBe("Busy")
      expect(yield* Effect.forEach(["k", "free2", "x"], (key) => ns.lookup(key))).toEqual([Option.some("theirs"), Option.none(), Option.none()])
      expect(yield* countMismatches).toEqual([])
    })
  )
})
