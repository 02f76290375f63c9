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
import { bounded, prng } from "./support/attackTools.js"
import { sqliteBackend, storeOf } from "./support/backends.js"
import { againstMemory, sqliteClaimFixture } from "./support/sqliteClaims.js"

const Value = Schema.String


/** Gives forked fibers time to reach their wait (no assertion on it: too short a pause only makes a test pass, never fail). */
const settle = Effect.sleep("300 millis")

describe("SQLite lone claims, statement first: attacks", () => {
  it.scopedLive("a live key claimed alone while another write of the store waits out a locked file (the busy gate closed) answers false at once (lockWait 60 s)", () =>
    Effect.gen(function* () {
      const { store, lockHolder, countMismatches } = yield* sqliteClaimFixture({ lockWait: "60 seconds" })
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
      const { store, lockHolder } = yield* sqliteClaimFixture({ lockWait: "60 seconds" })
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
      const { store, lockHolder, countMismatches } = yield* sqliteClaimFixture({ lockWait: "1500 millis" })
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
      const { store, lockHolder, countMismatches } = yield* sqliteClaimFixture({ lockWait: "1500 millis" })
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

  it.scopedLive("150 seeded mixes, wider than claims.aloneFirst's: dead-on-arrival and expired claims, claims and deletes in a sibling under an owner cap, full namespaces of both policies: the memory store's answers, live keys, counts exact", () =>
    Effect.gen(function* () {
      const failures: Array<string> = []
      const answerOf = (e: Either.Either<boolean, { readonly reason?: string }>) => (Either.isRight(e) ? e.right : (e.left.reason ?? "defect"))
      for (let seed = 1; seed <= 150; seed++) {
        const random = prng(seed * 7919)
        const maxEntries = 1 + random(3)
        const overflow = random(2) === 0 ? ("reject-new" as const) : ("evict-oldest" as const)
        const ownerMaxEntries = random(2) === 0 ? maxEntries + random(3) : undefined
        const settings = ownerMaxEntries === undefined ? {} : { ownerMaxEntries }
        const siblingOverflow = random(2) === 0 ? ("reject-new" as const) : ("evict-oldest" as const)
        const { sqlite, sides } = yield* againstMemory(
          settings,
          { owner: "p", namespace: "mix", schema: Value, maxEntries, overflow },
          { owner: "p", namespace: "sibling", schema: Value, maxEntries: 2, overflow: siblingOverflow }
        )
        const now = Date.now()
        const log: Array<string> = []
        for (let step = 0; step < 16; step++) {
          const key = `k${random(4)}`
          const kind = random(8)
          const answers: Array<boolean | string> = []
          for (const { ns, other } of sides) {
            const target = kind === 5 || kind === 6 ? other : ns
            const e =
              kind === 0
                ? Effect.as(ns.register(key, `r${step}`, { createdAt: now - 10_000 + step, expiresAt: now - 1000 }), true)
                : kind === 1
                  ? ns.registerIfAbsent(key, `d${step}`, { createdAt: now - 10_000 + step, expiresAt: now - 1000 })
                  : kind === 2
                    ? ns.delete(key)
                    : kind === 5
                      ? target.registerIfAbsent(key, `s${step}`, { createdAt: now + step, expiresAt: now + 3_600_000 })
                      : kind === 6
                        ? target.delete(key)
                        : ns.registerIfAbsent(key, `c${step}`, { createdAt: now + step, expiresAt: now + 3_600_000 })
            answers.push(answerOf(yield* Effect.either(e)))
          }
          log.push(`${["expired register", "DOA claim", "delete", "claim", "claim", "sibling claim", "sibling delete", "claim"][kind]} ${key}: ${answers.join(" / ")}`)
          if (answers[0] !== answers[1]) {
            failures.push(`seed ${seed} (max ${maxEntries}, ${overflow}, owner cap ${ownerMaxEntries}, sibling ${siblingOverflow}): ${log.join("; ")}`)
            break
          }
        }
        for (const pick of ["ns", "other"] as const) {
          const live = yield* Effect.forEach(sides, (side) => Effect.map(side[pick].entries, (entries) => entries.map((e) => `${e.key}=${e.value}`).sort().join(",")))
          if (live[0] !== live[1]) failures.push(`seed ${seed}: ${pick} live rows ${live[0]} vs memory ${live[1]}`)
        }
        const mismatches = yield* sqlite.countMismatches
        if (mismatches.length > 0) failures.push(`seed ${seed}: counts differ for ${mismatches.map((m) => m.namespace).join(", ")}`)
      }
      expect(failures).toEqual([])
    })
  )

  it.scopedLive("two stores on one file, claims of 12 keys racing while another connection takes and releases the lock, some claimers interrupted: one winner per key, each row its winner's (or an interrupted claimer's), counts exact, every failure typed", () =>
    Effect.gen(function* () {
      const db = yield* sqliteBackend.fresh
      const stores = [yield* storeOf(db.store({ sweepInterval: "1 hour", lockWait: "60 seconds" })), yield* storeOf(db.store({ sweepInterval: "1 hour", lockWait: "60 seconds" }))]
      const handles = yield* Effect.forEach(stores, (store) => Effect.all([store.open({ owner: "p", namespace: "race", schema: Value, maxEntries: 1000 }), store.open({ owner: "p", namespace: "race2", schema: Value, maxEntries: 1000 })]))
      yield* handles[0]![0].register("live0", "before")
      const holder = new Database(db.location!)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.close()))
      const random = prng(4242)
      const outcomes = new Map<string, Array<{ id: string; answer: string }>>()
      const fibers: Array<{ key: string; id: string; fiber: Fiber.RuntimeFiber<boolean, unknown>; interrupt: boolean }> = []
      for (let round = 0; round < 8; round++) {
        if (round % 2 === 0) holder.exec("BEGIN IMMEDIATE")
        for (let i = 0; i < 30; i++) {
          const key = `k${random(12)}`
          const id = `${round}.${i}`
          const [a, b] = handles[random(2)]!
          const ns = random(3) === 0 ? b : a
          const fiber = yield* Effect.fork(ns.registerIfAbsent(key, id))
          fibers.push({ key: `${ns.namespace}/${key}`, id, fiber, interrupt: random(5) === 0 })
        }
        yield* Effect.sleep(`${5 + random(30)} millis`)
        for (const f of fibers) if (f.interrupt) yield* Fiber.interrupt(f.fiber)
        if (holder.inTransaction) holder.exec("COMMIT")
      }
      for (const f of fibers) {
        const exit = yield* bounded(`claim ${f.id}`, Fiber.await(f.fiber), 40)
        const answer = exit._tag === "Success" ? String(exit.value) : exit.cause._tag === "Interrupt" || f.interrupt ? "interrupted" : `failure:${JSON.stringify(exit.cause).slice(0, 200)}`
        const list = outcomes.get(f.key) ?? []
        list.push({ id: f.id, answer })
        outcomes.set(f.key, list)
      }
      const wrong: Array<string> = []
      for (const [key, list] of outcomes) {
        const [namespace, entry] = key.split("/") as [string, string]
        const ns = namespace === "race" ? handles[0]![0] : handles[0]![1]
        const row = yield* ns.lookup(entry)
        const winners = list.filter((o) => o.answer === "true").map((o) => o.id)
        const failed = list.filter((o) => o.answer.startsWith("failure"))
        if (failed.length > 0) wrong.push(`${key}: ${failed.map((o) => o.answer).join(" | ")}`)
        if (winners.length > 1) wrong.push(`${key}: ${winners.length} winners ${winners.join(",")}`)
        if (Option.isNone(row)) {
          if (winners.length > 0) wrong.push(`${key}: won by ${winners[0]} but no row`)
          if (list.every((o) => o.answer !== "interrupted")) wrong.push(`${key}: no row, nobody won, nobody interrupted`)
        } else {
          const owner = list.find((o) => o.id === row.value)
          if (winners.length === 1 ? row.value !== winners[0] : owner?.answer !== "interrupted") wrong.push(`${key}: row ${row.value}, winners ${winners.join(",")}, its claimer ${owner?.answer}`)
        }
      }
      const mismatches = yield* Effect.provide(
        Effect.flatMap(SqlClient, (sql) => sql.unsafe<{ namespace: string }>("SELECT c.namespace FROM channel_state_counts c WHERE c.row_count <> (SELECT count(*) FROM channel_state_entries e WHERE e.owner = c.owner AND e.namespace = c.namespace)")),
        db.sql!
      )
      expect(wrong).toEqual([])
      expect(mismatches).toEqual([])
      // The batchers are not stuck: a live key answers false, a fresh one wins, on both stores.
      for (const [a] of handles) expect(yield* bounded("claims after the race", Effect.all([a.registerIfAbsent("live0", "late"), a.registerIfAbsent(`fresh${Math.random()}`, "late")]), 20)).toEqual([false, true])
    })
  )
})
