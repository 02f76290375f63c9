/**
 * The operations of a store still running, counted so that closing can wait for them.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"

/** A count of running operations (see {@link makeInFlight}). */
export interface InFlight {
  /**
   * Runs `effect`, counted while it runs — however it ends: success, failure, defect or
   * interruption, including an interruption at its very first step (the count is taken and
   * given back with interruption masked; `effect` itself stays interruptible).
   */
  readonly tracked: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Completes once no operation is running (at once when none is). Its only waiter is the one closing. */
  readonly drained: Effect.Effect<void>
  /** How many operations are running now. */
  readonly running: () => number
}

/** A count at zero. Its only writers are `tracked` (one up, one down per operation) and `drained`. */
export const makeInFlight = (): InFlight => {
  let running = 0
  let idle: Deferred.Deferred<void> | undefined
  const finished = () => {
    running--
    if (running === 0 && idle !== undefined) {
      Deferred.unsafeDone(idle, Exit.void)
      idle = undefined
    }
  }
  return {
    // Its own success and failure handler instead of `Effect.ensuring`, whose finalizer is an
    // effect of its own: this is on every operation's path.
    tracked: (effect) =>
      Effect.uninterruptibleMask((restore) => {
        running++
        return Effect.matchCauseEffect(restore(effect), {
          onFailure: (cause) => {
            finished()
            return Effect.failCause(cause)
          },
          onSuccess: (value) => {
            finished()
            return Effect.succeed(value)
          }
        })
      }),
    drained: Effect.suspend(() => {
      if (running === 0) return Effect.void
      idle ??= Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(idle)
    }),
    running: () => running
  }
}
