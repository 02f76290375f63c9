/**
 * How background work lives with the host process: it must never keep the process alive by
 * itself, must not hold the event loop, and may end with the process.
 * - {@link backgroundSleep}: a sleep on an unreferenced timer (under Effect's live clock; a
 *   `TestClock` or any other clock is used as it is, so tests still drive time);
 * - {@link yieldToEventLoop}: lets timers and I/O run between batches of synchronous work;
 * - {@link onBeforeExit}: work to do when the event loop runs dry, e.g. write what is still
 *   queued. Node emits `beforeExit` only when nothing else is pending, and again after any
 *   work that handler started, so a handler must only start work when there is some;
 * - {@link disposeOnSignals}: an opt-in dispose on SIGTERM/SIGINT.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

const liveClockPrototype = Object.getPrototypeOf(Clock.make())

/** Sleeps without keeping the process alive (live clock), or as the provided clock sleeps. */
export const backgroundSleep = (duration: Duration.DurationInput): Effect.Effect<void> =>
  Effect.flatMap(Effect.clock, (clock) => {
    if (Object.getPrototypeOf(clock) !== liveClockPrototype) return clock.sleep(Duration.decode(duration))
    const millis = Math.min(2 ** 31 - 1, Math.max(0, Duration.toMillis(duration)))
    return Effect.async<void>((resume) => {
      const timer = setTimeout(() => resume(Effect.void), millis)
      timer.unref()
      return Effect.sync(() => clearTimeout(timer))
    })
  })

/**
 * Lets timers and I/O run before the next batch of synchronous work. `Effect.yieldNow` is not
 * enough: Effect's scheduler resumes through microtasks, so a long run of synchronous SQLite
 * batches would hold the event loop for its whole length.
 */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const beforeExit = new Set<() => void>()
const runBeforeExit = () => {
  for (const handler of [...beforeExit]) handler()
}

/**
 * Calls `handler` whenever the process's event loop runs dry (`beforeExit`); returns the
 * function that stops it. One process listener serves every handler.
 */
export const onBeforeExit = (handler: () => void): (() => void) => {
  if (beforeExit.size === 0) process.on("beforeExit", runBeforeExit)
  beforeExit.add(handler)
  return () => {
    beforeExit.delete(handler)
    if (beforeExit.size === 0) process.off("beforeExit", runBeforeExit)
  }
}

/** The signals {@link disposeOnSignals} handles when asked for `true`. */
export const DEFAULT_SIGNALS: ReadonlyArray<NodeJS.Signals> = ["SIGTERM", "SIGINT"]

/**
 * On the first of `signals`, runs `dispose` (which writes queued changes and closes the
 * store), then — if nothing else listens for that signal — ends the process the way the
 * signal would have (its listener removed, the signal raised again). Returns the function
 * that stops listening (call it when disposing for another reason).
 */
export const disposeOnSignals = (dispose: () => Promise<void>, signals: ReadonlyArray<NodeJS.Signals>): (() => void) => {
  const handler = (signal: NodeJS.Signals) => {
    stop()
    void dispose().finally(() => {
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    })
  }
  const stop = () => {
    for (const signal of signals) process.off(signal, handler)
  }
  for (const signal of signals) process.on(signal, handler)
  return stop
}
