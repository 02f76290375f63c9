/**
 * The store's bookkeeping around an operation must survive the operation being interrupted at
 * any step, its fiber yielding every 10–40 steps (so that an interruption is seen at every
 * step boundary in turn):
 *
 * - the count of running operations closing waits for (`inFlight`): an operation interrupted
 *   as it starts must not stay counted — closing would wait for it until its bound, every time;
 * - the busy gate (`retryTransient`): an operation that became the database's poller must give
 *   the gate back however it ends — a gate left closed makes every later write wait out its
 *   whole lockWait behind a poller that is gone.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { makeInFlight } from "../src/layers/store/inFlight.js"
import { BusyGate, retryTransient } from "../src/layers/store/retry.js"

/** `n` steps of the calling fiber. */
const steps = (n: number) => (n <= 0 ? Effect.void : Effect.repeatN(Effect.yieldNow(), n - 1))

/** Every (steps between yields, steps before the interruption) pair the rounds try. */
const schedules = Array.from({ length: 31 }, (_, i) => i + 10).flatMap((maxOps) => Array.from({ length: 8 }, (_, lag) => ({ maxOps, lag })))

describe("bookkeeping of interrupted operations", () => {
  it.effect(`the running count: ${schedules.length} operations interrupted at every early step leave it at zero, and closing does not wait for them`, () =>
    Effect.gen(function* () {
      const inFlight = makeInFlight()
      const counted: Array<string> = []
      for (const { maxOps, lag } of schedules) {
        const op = yield* Effect.fork(Effect.withMaxOpsBeforeYield(inFlight.tracked(steps(3)), maxOps))
        yield* steps(lag)
        yield* Fiber.interrupt(op)
        if (inFlight.running() !== 0) counted.push(`yields every ${maxOps}, interrupted after ${lag} steps: ${inFlight.running()} still counted`)
      }
      expect(counted).toEqual([])
      const closing = yield* Effect.fork(inFlight.drained)
      yield* steps(2)
      expect(closing.unsafePoll(), "closing waits for nothing").not.toBeNull()
    })
  )

  it.effect("the running count: closing waits while an operation runs, and goes on once it ends — by success, failure or interruption", () =>
    Effect.gen(function* () {
      const inFlight = makeInFlight()
      for (const end of ["succeed", "fail", "interrupt"] as const) {
        const gate = yield* Deferred.make<void, string>()
        const op = yield* Effect.fork(inFlight.tracked(Deferred.await(gate)))
        yield* steps(2)
        expect(inFlight.running()).toBe(1)
        const closing = yield* Effect.fork(inFlight.drained)
        yield* steps(2)
        expect(closing.unsafePoll(), `closing waits for the operation (${end})`).toBeNull()
        if (end === "succeed") yield* Deferred.succeed(gate, undefined)
        if (end === "fail") yield* Deferred.fail(gate, "no")
        if (end === "interrupt") yield* Fiber.interrupt(op)
        yield* Fiber.await(op)
        yield* Fiber.join(closing)
        expect(inFlight.running()).toBe(0)
      }
    })
  )

  it.effect(`the busy gate: ${schedules.length} pollers interrupted at every early step give it back`, () =>
    Effect.gen(function* () {
      const gate = new BusyGate()
      const stuck: Array<string> = []
      for (const { maxOps, lag } of schedules) {
        // Always busy: the operation becomes the poller and pauses between attempts.
        const busy = retryTransient(60_000, gate)(Effect.fail("SQLITE_BUSY"), () => "busy")
        const op = yield* Effect.fork(Effect.withMaxOpsBeforeYield(busy, maxOps))
        yield* steps(lag)
        yield* Fiber.interrupt(op)
        if (gate.wait !== undefined) {
          stuck.push(`yields every ${maxOps}, interrupted after ${lag} steps`)
          yield* gate.release()
        }
      }
      expect(stuck).toEqual([])
    })
  )
})
