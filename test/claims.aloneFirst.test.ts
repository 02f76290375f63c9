/**
 * SQLite claims that come alone (no other claim of the namespace waiting or running) run the
 * one-statement claim first, without first reading their key (sqlBatch's `claimAlone`); only
 * when it wrote nothing, or found the file locked by another connection, is the key read.
 * Tried where that could break:
 *
 * - another connection holds the write lock: a live key must still answer `false` at once
 *   (lockWait 60 s: a claim that waited for the lock would hang, and the bound fails it), a
 *   free key waits and wins after the release, an expired row is claimed after it;
 * - the answers and the rows must be the reference semantics (the memory store's) in bounded
 *   namespaces of both overflow policies and under an owner cap, with live, expired and absent
 *   keys: 60 seeded mixes of registers and claims, every answer and every live key compared;
 * - claims interrupted at every early step: the counts stay exact, an interrupted claim either
 *   landed or did not (a second claim of its key says which), and later claims still answer.
 *
 * No test asserts elapsed time: a claim that waited where it must not is caught by a bound.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Option, Schema } from "effect"
import { bounded, prng } from "./support/attackTools.js"
import { againstMemory, sqliteClaimFixture } from "./support/sqliteClaims.js"

const Value = Schema.String
type Answer = boolean | string

const answerOf = (e: Either.Either<boolean, { readonly reason?: string }>): Answer => (Either.isRight(e) ? e.right : (e.left.reason ?? "defect"))


describe("SQLite claims that come alone: the statement first", () => {
  it.scopedLive("another connection holds the write lock: 20 live keys answer false at once (lockWait 60 s), a free key waits and wins after the release, and so does an expired row", () =>
    Effect.gen(function* () {
      const { store, lockHolder, countMismatches } = yield* sqliteClaimFixture({ lockWait: "60 seconds" })
      const ns = yield* store.open({ owner: "p", namespace: "locked", schema: Value, maxEntries: 100 })
      for (let i = 0; i < 20; i++) yield* ns.register(`live${i}`, `v${i}`)
      yield* ns.register("old", "old", { createdAt: Date.now() - 60_000, expiresAt: Date.now() - 1000 })
      const lock = yield* lockHolder
      lock.take()
      const answers = yield* bounded("live keys claimed while the file is locked", Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => ns.registerIfAbsent(`live${i}`, "other")), 30)
      expect(answers).toEqual(Array.from({ length: 20 }, () => false))
      const fresh = yield* Effect.fork(ns.registerIfAbsent("fresh", "mine"))
      const expired = yield* Effect.fork(ns.registerIfAbsent("old", "mine"))
      yield* Effect.sleep("100 millis")
      const early = [yield* Fiber.poll(fresh), yield* Fiber.poll(expired)].map((p) => p._tag)
      lock.release()
      expect(early).toEqual(["None", "None"])
      expect(yield* bounded("the free key after the release", Fiber.join(fresh), 30)).toBe(true)
      expect(yield* bounded("the expired key after the release", Fiber.join(expired), 30)).toBe(true)
      expect(yield* Effect.forEach(["live0", "fresh", "old"], (key) => ns.lookup(key))).toEqual([Option.some("v0"), Option.some("mine"), Option.some("mine")])
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("60 seeded mixes of registers and lone claims in bounded namespaces (both overflow policies, an owner cap): the memory store's answers and live keys, counts exact", () =>
    Effect.gen(function* () {
      const failures: Array<string> = []
      for (let seed = 1; seed <= 60; seed++) {
        const random = prng(seed)
        const maxEntries = 2 + random(3)
        const overflow = random(2) === 0 ? ("reject-new" as const) : ("evict-oldest" as const)
        const ownerMaxEntries = random(3) === 0 ? maxEntries + 1 : undefined
        const settings = ownerMaxEntries === undefined ? {} : { ownerMaxEntries }
        const { sqlite, sides } = yield* againstMemory(
          settings,
          { owner: "p", namespace: "mix", schema: Value, maxEntries, overflow },
          { owner: "p", namespace: "sibling", schema: Value, maxEntries: 10 }
        )
        const now = Date.now()
        const log: Array<string> = []
        for (let step = 0; step < 14; step++) {
          const key = `k${random(6)}`
          const kind = random(5)
          const answers: Array<Answer> = []
          for (const { ns, other } of sides) {
            if (kind === 0) answers.push(answerOf(yield* Effect.either(Effect.as(ns.register(key, `r${step}`, { createdAt: now - 10_000 + step, expiresAt: now - 1000 }), true))))
            else if (kind === 1) answers.push(answerOf(yield* Effect.either(Effect.as(other.register(`s${step}`, "s"), true))))
            else answers.push(answerOf(yield* Effect.either(ns.registerIfAbsent(key, `c${step}`, { createdAt: now + step, expiresAt: now + 3_600_000 }))))
          }
          log.push(`${["expired register", "sibling register", "claim", "claim", "claim"][kind]} ${key}: ${answers.join(" / ")}`)
          if (answers[0] !== answers[1]) failures.push(`seed ${seed} (max ${maxEntries}, ${overflow}, owner cap ${ownerMaxEntries}): ${log.join("; ")}`)
        }
        const live = yield* Effect.forEach(sides, ({ ns }) => Effect.map(ns.entries, (entries) => entries.map((e) => `${e.key}=${e.value}`).sort().join(",")))
        if (live[0] !== live[1]) failures.push(`seed ${seed}: live rows ${live[0]} vs memory ${live[1]}`)
        const mismatches = yield* sqlite.countMismatches
        if (mismatches.length > 0) failures.push(`seed ${seed}: counts differ for ${mismatches.map((m) => m.namespace).join(", ")}`)
      }
      expect(failures).toEqual([])
    })
  )

  it.scopedLive("lone claims interrupted at every early step (yields every 10–40 steps): counts exact, each either landed or not, later claims answer", () =>
    Effect.gen(function* () {
      const { store, countMismatches } = yield* sqliteClaimFixture()
      const ns = yield* store.open({ owner: "p", namespace: "intr", schema: Value, maxEntries: 100_000 })
      const wrong: Array<string> = []
      let round = 0
      for (let maxOps = 10; maxOps <= 40; maxOps += 2) {
        for (let lag = 0; lag < 8; lag++) {
          const key = `k${round++}`
          const claim = yield* Effect.fork(Effect.withMaxOpsBeforeYield(ns.registerIfAbsent(key, "first"), maxOps))
          for (let i = 0; i < lag; i++) yield* Effect.yieldNow()
          yield* Fiber.interrupt(claim)
          const landed = Option.isSome(yield* ns.lookup(key))
          const again = yield* bounded(`the claim after an interrupted one (every ${maxOps}, after ${lag})`, ns.registerIfAbsent(key, "second"), 30)
          if (again === landed) wrong.push(`yields every ${maxOps}, interrupted after ${lag}: landed ${landed}, the second claim answered ${again}`)
        }
      }
      expect(wrong).toEqual([])
      expect(yield* countMismatches).toEqual([])
    })
  )
})
