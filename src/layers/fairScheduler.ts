/**
 * The scheduler the library's own work runs on, so that a burst of it never holds the event
 * loop. Effect's default scheduler resumes fibers through microtasks; when a held lock is
 * released, hundreds of waiting claims, settles and flush batches become runnable at once and
 * would all run before a single timer or socket callback of the host (measured: 120–340 ms
 * of one unbroken run). This one runs queued fiber steps for at most {@link SLICE_MS}, then
 * lets the event loop turn (`setImmediate`) before the next slice; a fiber that runs on past
 * the slice yields at its next check.
 *
 * Only the library's fibers use it ({@link fairly}): a store operation, the flusher. The
 * caller's own continuation returns to the caller's scheduler. A SQLite read, which never
 * waits, switches to it only once the operations run inline have used up their slice
 * ({@link fairlyUnlessInline}).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Scheduler from "effect/Scheduler"

/** The longest unbroken run of the library's fiber steps, in milliseconds. */
export const SLICE_MS = 8
/** A fiber checks the clock every this many steps (a power of two). */
const CHECK_EVERY = 128

/**
 * When operations began to run inline, in the caller's run: for {@link SLICE_MS} from then,
 * until the event loop turns (not when the fair scheduler runs out of steps: a caller that
 * awaits each operation in turn empties its queue every time, and would never let go).
 * Written only by {@link inlineAllowed} and {@link endInlineWindow}.
 */
let inlineWindowStart: number | undefined
const endInlineWindow = () => {
  inlineWindowStart = undefined
}
/** Whether one more operation may run inline: the event loop turned less than a slice ago (counted from the first inline one). */
const inlineAllowed = (): boolean => {
  const now = performance.now()
  if (inlineWindowStart === undefined) {
    inlineWindowStart = now
    setImmediate(endInlineWindow)
  }
  return now - inlineWindowStart < SLICE_MS
}

class FairScheduler implements Scheduler.Scheduler {
  private readonly tasks = new Scheduler.PriorityBuckets()
  /** Tasks of a slice that ran out, run first in the next one. */
  private leftover: Array<Scheduler.Task> = []
  private running = false
  /**
   * When the current budget ends: one {@link SLICE_MS} per turn of the event loop, shared by
   * every slice begun in that turn (a slice that empties the queue and one begun again at the
   * next step, in the same turn, are one slice to the event loop).
   */
  private sliceEnds = Number.POSITIVE_INFINITY
  /** Whether the event loop turned since the current budget began (a new slice then gets a fresh one). */
  private turned = true
  private readonly markTurned = () => {
    this.turned = true
  }
  private inSlice = false

  shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]): number | false {
    const count = fiber.currentOpCount
    if (count > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)) return fiber.getFiberRef(FiberRef.currentSchedulingPriority)
    if (this.inSlice && (count & (CHECK_EVERY - 1)) === 0 && performance.now() > this.sliceEnds) return fiber.getFiberRef(FiberRef.currentSchedulingPriority)
    return false
  }

  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.tasks.scheduleTask(task, priority)
    if (!this.running) {
      this.running = true
      // The budget of this turn is spent: the next slice waits for the event loop to turn.
      if (!this.turned && performance.now() > this.sliceEnds) setImmediate(this.slice)
      else queueMicrotask(this.slice)
    }
  }

  private readonly slice = () => {
    if (this.turned) {
      this.turned = false
      this.sliceEnds = performance.now() + SLICE_MS
      setImmediate(this.markTurned)
    }
    this.inSlice = true
    let queue = this.leftover
    this.leftover = []
    let i = 0
    try {
      for (;;) {
        if (i === queue.length) {
          if (this.tasks.buckets.length === 0) break
          queue = this.tasks.buckets.flatMap(([, bucket]) => bucket)
          this.tasks.buckets = []
          i = 0
        }
        ;(queue[i++] as Scheduler.Task)()
        if (performance.now() > this.sliceEnds) break
      }
    } finally {
      this.inSlice = false
      this.leftover = queue.slice(i)
      if (this.leftover.length > 0 || this.tasks.buckets.length > 0) {
        // It runs after the event loop has turned: with a fresh budget.
        this.turned = true
        setImmediate(this.slice)
      } else this.running = false
    }
  }
}

const fairScheduler: Scheduler.Scheduler = new FairScheduler()

/**
 * Runs `effect` on the fair scheduler: its steps never hold the event loop past a slice.
 * Whatever it waits for resumes it on the fair scheduler. It starts at once, inline, while
 * the operations run inline since the event loop last turned have taken less than a slice;
 * past that it starts with a yield, so that even a burst of operations that never suspend
 * (SQLite answers synchronously) runs in slices instead of in the caller's run. Under
 * `Effect.runSync` (Effect's synchronous scheduler) it runs as it is: the caller asked for
 * one synchronous run.
 */
export const fairly = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) =>
    runningSynchronously(fiber.currentScheduler)
      ? effect
      : Effect.withScheduler(inlineAllowed() ? effect : Effect.zipRight(Effect.yieldNow(), effect), fairScheduler)
  )

/**
 * {@link fairly}, for work that does not wait on its usual path (a SQLite read on the store's
 * reader connection: SQLite answers synchronously). While operations may still start inline
 * it runs as it is, in the caller's run, without switching the fiber's scheduler — the switch
 * (two FiberRef writes, each copying the fiber's refs) costs about 7 µs, and it only decides
 * where a wait resumes; past that, it is `fairly`: a yield first, then slices. The paths of
 * such work that can wait (a retry's pause, a corrupt row's delete, a reopening) must be
 * `fairly` themselves, so that waiters never resume in a burst outside the slices.
 */
export const fairlyUnlessInline = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => (inlineAllowed() ? effect : fairly(effect)))

/**
 * Whether `scheduler` is a synchronous run still going on. A `SyncScheduler` whose run has
 * ended ("deferred") hands its tasks to Effect's default scheduler, and fibers (or runtimes
 * built under `runSync`) keep it for good: those are not synchronous runs.
 */
const runningSynchronously = (scheduler: Scheduler.Scheduler): boolean => scheduler instanceof Scheduler.SyncScheduler && !scheduler.deferred
