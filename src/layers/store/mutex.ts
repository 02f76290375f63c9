/**
 * A lock one fiber holds at a time, on the paths every store operation takes: the claim
 * batcher's "one batch at a time", a SQLite store's writer connection, PostgreSQL's turns per
 * namespace.
 *
 * Why not Effect's `Semaphore`: its `withPermits(1)` costs about 4.5 µs even when a permit is
 * free (it takes the permit through an `asyncInterrupt`), and `Effect.scoped` around the SQL
 * client's `reserve` about 14 µs — more than SQLite takes to run the statement they guard.
 * Free, this lock is a flag and an `ensuring` (about 1 µs); held, waiters queue in the order
 * they came and each release hands the lock to the first one still waiting.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"

/** A lock for one holder at a time (see the module doc). */
export interface Mutex {
  /**
   * Runs `effect` holding the lock, first waiting (in arrival order) while another fiber holds
   * it. Interruptible while it waits (it then never takes the lock); the lock is released
   * however `effect` ends — success, failure, defect or interruption.
   */
  readonly withLock: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Runs `effect` holding the lock when it is free now (`Some` of its result); `None` at once when it is held. Released as by `withLock`. */
  readonly withLockIfFree: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<Option.Option<A>, E, R>
  /**
   * Takes the lock (waiting in arrival order, as `withLock` does) and adds its release to
   * `scope`: held until the scope closes. Unlike `withLock` it masks nothing itself: call it
   * where interruption is masked (a connection acquirer), so that a lock taken is always
   * handed to the scope — it then waits uninterruptibly, as the client's own reservation did.
   */
  readonly lockIn: (scope: Scope.Scope) => Effect.Effect<void>
}

interface Waiter {
  /** Wakes the waiting fiber (set once it waits). */
  resume: ((effect: Effect.Effect<void>) => void) | undefined
  /** The lock was handed to this waiter (its fiber owns it from then on). */
  granted: boolean
  /** The waiter was interrupted before the lock reached it: it is skipped. */
  cancelled: boolean
}

/** A free lock. */
export const makeMutex = (): Mutex => {
  let held = false
  // The waiters, in arrival order, from `head` on: the only writers are `take` (appends) and `release` (takes from the front).
  let waiting: Array<Waiter> = []
  let head = 0
  /** Hands the lock to the first waiter still waiting, or frees it. */
  const release = () => {
    while (head < waiting.length) {
      const next = waiting[head++]!
      if (next.cancelled) continue
      if (head > 64 && head * 2 > waiting.length) {
        waiting = waiting.slice(head)
        head = 0
      }
      next.granted = true
      next.resume?.(Effect.void)
      return
    }
    waiting = []
    head = 0
    held = false
  }
  const released = Effect.sync(release)
  /** Until the lock reaches `waiter` (queued already; granted at once if it came meanwhile). */
  const waitFor = (waiter: Waiter) =>
    Effect.async<void>((resume) => {
      if (waiter.granted) resume(Effect.void)
      else waiter.resume = resume
    })
  /**
   * Interrupted while waiting, or just after the lock reached it: the waiter leaves the queue,
   * or passes the lock on. Run where interruption is masked, outside the interruptible wait, so
   * that it also covers an interruption seen right after the wait ended.
   */
  const leave = (waiter: Waiter) =>
    Effect.sync(() => {
      if (waiter.granted) release()
      else waiter.cancelled = true
    })
  /**
   * Takes the lock and runs `holding` (which must release it however it ends), in one step
   * while the lock is free: the flag and the release are set up with interruption masked
   * (taking the lock inside an interruptible region would let an interruption seen at the next
   * step leave it held for good); `restore` makes only the wait interruptible.
   */
  const acquire = <A, E, R>(restore: <X, Y, Z>(e: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>, holding: Effect.Effect<A, E, R>) =>
    Effect.suspend(() => {
      if (!held) {
        held = true
        return holding
      }
      const waiter: Waiter = { resume: undefined, granted: false, cancelled: false }
      waiting.push(waiter)
      return Effect.zipRight(Effect.onInterrupt(restore(waitFor(waiter)), () => leave(waiter)), holding)
    })
  return {
    withLock: (effect) => Effect.uninterruptibleMask((restore) => acquire(restore, Effect.ensuring(restore(effect), released))),
    withLockIfFree: (effect) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          if (held) return Effect.succeed(Option.none())
          held = true
          return Effect.ensuring(Effect.map(restore(effect), Option.some), released)
        })
      ),
    lockIn: (scope) => acquire((waiting) => waiting, Scope.addFinalizer(scope, released))
  }
}
