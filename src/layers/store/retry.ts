/**
 * How every store operation waits out trouble that passes: contention (`Busy`: a SQLite file
 * locked by another process, a PostgreSQL deadlock or serialization failure) is retried until
 * the store's `lockWait`; a dropped connection (`Unavailable`) a few times, briefly. The
 * waits are real timers between attempts, so the event loop keeps running — never
 * better-sqlite3's busy timeout, which would block it — and they are measured in real time,
 * not Effect's `Clock`: a `TestClock` does not freeze a retry.
 *
 * @internal
 */
import { Effect } from "effect"
import { StateStoreError } from "../../StateStoreError.js"

/** Sleeps on a real timer (contention is real time, whatever clock the caller runs on). */
export const realSleep = (millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/** Attempts after a dropped connection before `Unavailable` is reported (5, 10, 20, 40, 80 ms apart). */
const UNAVAILABLE_RETRIES = 5
/** The longest pause between two attempts on a busy database. */
const MAX_BUSY_PAUSE_MILLIS = 50

/**
 * Runs `effect`, retrying `Busy` failures until `lockWaitMillis` have passed since the first
 * attempt (pauses of 2 ms doubling to 50 ms, jittered so competing processes spread out)
 * and `Unavailable` ones up to 5 times. The success path pays nothing for it: the retry
 * machinery is entered only after a first failure.
 */
export const retryTransient =
  (lockWaitMillis: number) =>
  <A, R>(effect: Effect.Effect<A, StateStoreError, R>): Effect.Effect<A, StateStoreError, R> =>
    Effect.catchIf(
      effect,
      (error) => error.reason === "Busy" || error.reason === "Unavailable",
      (first) => {
        const started = performance.now()
        const again = (error: StateStoreError, busyAttempts: number, unavailableAttempts: number): Effect.Effect<A, StateStoreError, R> => {
          if (error.reason === "Unavailable") {
            if (unavailableAttempts >= UNAVAILABLE_RETRIES) return Effect.fail(error)
            return Effect.zipRight(realSleep(5 * 2 ** unavailableAttempts), attempt(busyAttempts, unavailableAttempts + 1))
          }
          if (error.reason !== "Busy") return Effect.fail(error)
          const waited = performance.now() - started
          const pause = Math.min(MAX_BUSY_PAUSE_MILLIS, 2 * 2 ** busyAttempts) * (0.5 + Math.random())
          if (waited + pause > lockWaitMillis) {
            return Effect.fail(new StateStoreError({ ...error, detail: `${error.detail}; still contended after ${Math.round(waited)} ms of retries` }))
          }
          return Effect.zipRight(realSleep(pause), attempt(busyAttempts + 1, unavailableAttempts))
        }
        const attempt = (busyAttempts: number, unavailableAttempts: number): Effect.Effect<A, StateStoreError, R> =>
          Effect.catchAll(effect, (error) => again(error, busyAttempts, unavailableAttempts))
        return again(first, 0, 0)
      }
    )
