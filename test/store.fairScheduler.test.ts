/**
 * Attacks on the fair scheduler (`fairly`): every operation completes — nested, from another
 * operation's continuation, interrupted, under Effect.timeout, under TestClock, failing or
 * dying, at any scheduling priority, after a task that throws — and the event loop gets turns
 * during a burst. No elapsed time is asserted.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, FiberRef, Layer, Option, Schema, TestClock } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { fairly } from "../src/layers/fairScheduler.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"

const busyFor = (millis: number) => {
  const end = performance.now() + millis
  while (performance.now() < end) {
    // spin
  }
}

describe("the fair scheduler", () => {
  it.live("nested fairly, and fairly started from the continuation of another fairly, complete", () =>
    Effect.gen(function* () {
      const inner = yield* fairly(Effect.flatMap(fairly(Effect.succeed(1)), (a) => fairly(fairly(Effect.succeed(a + 1)))))
      const chained = yield* Effect.forEach(Array.from({ length: 500 }, (_, i) => i), (i) => fairly(Effect.flatMap(fairly(Effect.succeed(i)), (n) => fairly(Effect.succeed(n)))), {
        concurrency: "unbounded"
      })
      expect(inner).toBe(2)
      expect(chained.length).toBe(500)
    })
  )

  it.live("interruption, Effect.timeout, failure and death of fibers on the fair scheduler: each ends, and later work still runs", () =>
    Effect.gen(function* () {
      const never = yield* Effect.fork(fairly(Effect.never))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(never)
      const timedOut = yield* Effect.either(Effect.timeout(fairly(Effect.never), "20 millis"))
      expect(timedOut._tag).toBe("Left")
      const inner = yield* Effect.either(fairly(Effect.timeout(Effect.never, "20 millis")))
      expect(inner._tag).toBe("Left")
      const failed = yield* Effect.exit(fairly(Effect.fail("boom")))
      const died = yield* Effect.exit(fairly(Effect.die("dead")))
      expect(Exit.isFailure(failed) && Exit.isFailure(died)).toBe(true)
      // A long synchronous loop on the fair scheduler, interrupted from outside.
      const spinning = yield* Effect.fork(fairly(Effect.forever(Effect.sync(() => busyFor(1)))))
      yield* Effect.sleep("30 millis")
      yield* Fiber.interrupt(spinning)
      expect(yield* fairly(Effect.succeed("after"))).toBe("after")
    })
  )

  it.live("every scheduling priority: 2 000 fibers at mixed priorities all complete", () =>
    Effect.gen(function* () {
      const results = yield* Effect.forEach(
        Array.from({ length: 2000 }, (_, i) => i),
        (i) => Effect.withSchedulingPriority(fairly(Effect.flatMap(Effect.yieldNow(), () => Effect.succeed(i))), i % 5),
        { concurrency: "unbounded" }
      )
      expect(results.length).toBe(2000)
    })
  )

  it.effect("TestClock: a sleep inside fairly wakes when the test clock is adjusted", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(fairly(Effect.as(Effect.sleep("1 second"), "woke")))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("woke")
    })
  )

  it.effect("TestClock: a daemon loop on the fair scheduler (like the flusher) ticks once per adjusted second while other fair work keeps slices full", () =>
    Effect.gen(function* () {
      let ticks = 0
      const ticker = yield* Effect.forkDaemon(fairly(Effect.forever(Effect.zipRight(Effect.sleep("1 second"), Effect.sync(() => ticks++)))))
      // Other library work: steps of 10 ms of synchronous work (a large SQLite batch).
      const busy = yield* Effect.forkDaemon(fairly(Effect.forever(Effect.zipRight(Effect.sync(() => busyFor(10)), Effect.yieldNow()))))
      for (let i = 0; i < 10; i++) yield* TestClock.adjust("1 second")
      const seen = ticks
      yield* Fiber.interrupt(busy)
      yield* Fiber.interrupt(ticker)
      expect(seen).toBe(10)
    })
  )

  it.live("a task on the fair scheduler that throws: the tasks queued after it in the same slice still run, and later fairly work completes", () =>
    Effect.gen(function* () {
      const saved = process.listeners("uncaughtException")
      const thrown: Array<unknown> = []
      process.removeAllListeners("uncaughtException")
      const catcher = (error: unknown) => {
        thrown.push(error)
      }
      process.on("uncaughtException", catcher)
      try {
        const ranAfter = yield* Deferred.make<void>()
        yield* fairly(
          Effect.flatMap(FiberRef.get(FiberRef.currentScheduler), (scheduler) =>
            Effect.sync(() => {
              scheduler.scheduleTask(() => {
                throw new Error("a task that throws")
              }, 0)
              scheduler.scheduleTask(() => {
                Deferred.unsafeDone(ranAfter, Exit.void)
              }, 0)
            })
          )
        )
        yield* Effect.timeout(Deferred.await(ranAfter), "5 seconds")
        expect(yield* Effect.timeout(fairly(Effect.succeed("still runs")), "5 seconds")).toBe("still runs")
        yield* Effect.sleep("10 millis")
      } finally {
        process.off("uncaughtException", catcher)
        for (const listener of saved) process.on("uncaughtException", listener)
      }
      expect(thrown.length).toBe(1)
    })
  )

  it.live("the event loop turns during one fiber's long synchronous run on the fair scheduler", () =>
    Effect.gen(function* () {
      let steps = 0
      let stepsWhenTheLoopTurned: number | undefined
      setImmediate(() => {
        stepsWhenTheLoopTurned = steps
      })
      const N = 300_000
      yield* fairly(
        Effect.forEach(
          Array.from({ length: N }, (_, i) => i),
          () =>
            Effect.sync(() => {
              steps++
            }),
          { discard: true }
        )
      )
      expect(steps).toBe(N)
      expect(stepsWhenTheLoopTurned).toBeDefined()
      expect(stepsWhenTheLoopTurned!).toBeLessThan(N)
    })
  )

  it.scopedLive("a SQLite lookup or lone claim (which never suspends) run with Effect.runSync completes, as it did before the fair scheduler (6512101) — never a defect", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const context = yield* Layer.build(SqliteStore.layer({ filename: path.join(dir, "s.sqlite") }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.String, maxEntries: 10 })
      yield* ns.register("k", "v")
      const exit = Effect.runSyncExit(ns.lookup("k"))
      expect(Exit.isSuccess(exit) ? exit.value : Cause.pretty(exit.cause).split("\n")[0]).toEqual(Option.some("v"))
      // A lone claim runs in the caller's fiber: with no contention it never suspends either.
      const claims = ["c", "c"].map((key) => Effect.runSyncExit(ns.registerIfAbsent(key, "mine")))
      expect(claims.map((claim) => (Exit.isSuccess(claim) ? claim.value : Cause.pretty(claim.cause).split("\n")[0]))).toEqual([true, false])
      expect(yield* ns.lookup("c")).toEqual(Option.some("mine"))
    })
  )
})
