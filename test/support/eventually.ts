/**
 * Polls `effect` on real time (10 ms steps, up to `attempts`) until `done` holds — for work
 * that TestClock starts but that finishes on real I/O (a sweep or flush against PostgreSQL).
 */
import { Effect } from "effect"

export const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean, attempts = 300): Effect.Effect<A, E, R> =>
  Effect.flatMap(effect, (a) =>
    done(a) || attempts <= 1
      ? Effect.succeed(a)
      : Effect.zipRight(
          Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10))),
          eventually(effect, done, attempts - 1)
        )
  )
