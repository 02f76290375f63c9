/**
 * How every store operation waits out trouble that passes: contention (a SQLite file locked
 * by another process, a PostgreSQL deadlock or serialization failure) is retried until the
 * store's `lockWait`; a dropped connection a few times, briefly. The waits are real timers
 * between attempts, so the event loop keeps running — never better-sqlite3's busy timeout,
 * which would block it — and they are measured in real time, not Effect's `Clock`: a
 * `TestClock` does not freeze a retry.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type { StateStoreError } from "../../StateStoreError.js"
import { fairly } from "../fairScheduler.js"

/** Sleeps on a real timer (contention is real time, whatever clock the caller runs on). */
export const realSleep = (millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/** Attempts after a dropped connection before it is reported (5, 10, 20, 40, 80 ms apart). */
const UNAVAILABLE_RETRIES = 5
/** The longest pause between two attempts on a busy database. */
const MAX_BUSY_PAUSE_MILLIS = 50

/** Whether a failure is worth another attempt: contention, a dropped connection, or neither. */
export type Transient = "busy" | "unavailable" | undefined

/**
 * One poller at a time for a database found busy. While the database is known to be locked,
 * every other operation waits on the gate instead of trying (and failing) on its own: a
 * hundred waiting claims cost one attempt per pause, not a hundred — each failed attempt
 * builds a driver error with its stack, which is most of what a wait costs.
 */
export class BusyGate {
  private opened: Deferred.Deferred<void> | undefined
  /** Resolves when the poller's attempt ends (or at once when nobody polls). */
  get wait(): Effect.Effect<void> | undefined {
    return this.opened === undefined ? undefined : Deferred.await(this.opened)
  }
  /** Becomes the poller (call it only when nobody is: `wait` is `undefined`). */
  claim(): void {
    this.opened = Deferred.unsafeMake(FiberId.none)
  }
  /** The poller's attempt is over: everyone waiting tries again. */
  release(): Effect.Effect<void> {
    const opened = this.opened
    this.opened = undefined
    return opened === undefined ? Effect.void : Deferred.succeed(opened, undefined)
  }
}

/**
 * Runs `effect`, retrying failures `kindOf` calls `busy` until `lockWaitMillis` have passed
 * since the first failure (pauses of 2 ms doubling to 50 ms, jittered so competing processes
 * spread out) and `unavailable` ones up to 5 times. The success path pays nothing for it: the
 * retry machinery is entered only after a first failure (or while `gate` says the database is
 * busy). Classifying the raw failure (not a typed error built per attempt) keeps a wait cheap.
 */
export const retryTransient =
  (lockWaitMillis: number, gate?: BusyGate) =>
  <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    kindOf: (error: E) => Transient,
    /** Tried first when the gate is closed as the operation starts (checked in the same step): `Some` answers it without waiting behind the poller. */
    whileGateClosed?: Effect.Effect<Option.Option<A>, E, R>
  ): Effect.Effect<A, E, R> => {
    const withRetries = (started: number | undefined) =>
      Effect.catchIf(
        effect,
        (error) => kindOf(error) !== undefined,
        // The chain of retries waits: on the fair scheduler, whatever the operation ran on.
        (first) => fairly(Effect.suspend(() => {
          // Measured from the first failure — or from the wait behind the gate, which counts too.
          const since = started ?? performance.now()
          /** `polling`: this operation holds the gate (its chain of attempts releases it when it ends). */
          const again = (error: E, busyAttempts: number, unavailableAttempts: number, polling: boolean): Effect.Effect<A, E, R> => {
            const kind = kindOf(error)
            if (kind === "unavailable") {
              if (unavailableAttempts >= UNAVAILABLE_RETRIES) return Effect.fail(error)
              return Effect.zipRight(realSleep(5 * 2 ** unavailableAttempts), attempt(busyAttempts, unavailableAttempts + 1, polling))
            }
            if (kind !== "busy") return Effect.fail(error)
            const left = lockWaitMillis - (performance.now() - since)
            const pause = Math.min(MAX_BUSY_PAUSE_MILLIS, 2 * 2 ** busyAttempts) * (0.5 + Math.random())
            if (pause > left) return Effect.fail(error)
            const pauseThenTry = (asPoller: boolean) => Effect.zipRight(realSleep(pause), attempt(busyAttempts + 1, unavailableAttempts, asPoller))
            if (gate === undefined || polling) return pauseThenTry(polling)
            // Becoming the poller and setting up the gate's release are one masked step: an
            // interruption between the two would leave the gate closed, and every later write
            // would wait out its whole lockWait behind a poller that is gone.
            return Effect.uninterruptibleMask((restore) =>
              Effect.suspend(() => {
                const waiting = gate.wait
                // Someone polls the database already: wait for their attempts to end, then try.
                if (waiting !== undefined) return restore(Effect.zipRight(Effect.raceFirst(waiting, realSleep(left)), attempt(busyAttempts, unavailableAttempts, false)))
                gate.claim()
                return Effect.ensuring(restore(pauseThenTry(true)), Effect.suspend(() => gate.release()))
              })
            )
          }
          const attempt = (busyAttempts: number, unavailableAttempts: number, polling: boolean): Effect.Effect<A, E, R> =>
            Effect.catchAll(effect, (error) => again(error, busyAttempts, unavailableAttempts, polling))
          return again(first, 0, 0, false)
        }))
      )
    if (gate === undefined) return withRetries(undefined)
    // While the database is known to be busy, a new operation queues behind the poller first.
    return Effect.suspend(() => {
      const waiting = gate.wait
      if (waiting === undefined) return withRetries(undefined)
      const queuedAt = performance.now()
      const queueBehind = Effect.zipRight(Effect.raceFirst(waiting, realSleep(lockWaitMillis)), withRetries(queuedAt))
      if (whileGateClosed === undefined) return queueBehind
      return Effect.flatMap(whileGateClosed, (answer) => (Option.isSome(answer) ? Effect.succeed(answer.value) : queueBehind))
    })
  }

/** The transient kind of a typed store failure. */
export const transientReason = (error: StateStoreError): Transient =>
  error.reason === "Busy" ? "busy" : error.reason === "Unavailable" ? "unavailable" : undefined
