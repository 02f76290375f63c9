/**
 * Polls `effect` on real time (a 10 ms pause between polls) until `done` holds or `timeoutMs`
 * of real time have passed since the first poll — for work that TestClock starts but that
 * finishes on real I/O (a sweep or flush against PostgreSQL). Answers the last value either
 * way: the caller's assertion on it is what fails when `done` never holds.
 *
 * The budget is a deadline, not a count of polls: on a busy machine each poll (and each pause)
 * can take far longer than planned, and work that is merely slow must not fail the test. It is
 * a bound on a hang, not a speed target (default 30 s).
 */
import { Effect } from "effect"

const POLL_PAUSE_MILLIS = 10

export const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean, timeoutMs = 30_000): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const deadline = performance.now() + timeoutMs
    const poll = (): Effect.Effect<A, E, R> =>
      Effect.flatMap(effect, (a) =>
        done(a) || performance.now() >= deadline
          ? Effect.succeed(a)
          : Effect.zipRight(
              Effect.promise(() => new Promise((resolve) => setTimeout(resolve, POLL_PAUSE_MILLIS))),
              poll()
            )
      )
    return poll()
  })
