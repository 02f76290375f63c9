/**
 * The background sweeper every backend runs: on a fixed interval (Effect's `Clock`, so
 * `TestClock` drives it), delete expired rows in bounded batches, yielding between batches.
 *
 * @internal
 */
import { Effect, Schedule } from "effect"
import type { StateStoreError } from "../../StateStoreError.js"
import type { StoreSettings } from "./storeRules.js"

/**
 * Lets timers and I/O run before the next batch. `Effect.yieldNow` is not enough: Effect's
 * scheduler resumes through microtasks, so a long sweep of synchronous SQLite batches would
 * hold the event loop for its whole length.
 */
const yieldToEventLoop = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * Forks, in the current scope, a fiber that calls `sweepBatch(limit)` until it deletes fewer
 * than `limit` rows, every `sweepInterval`. A failed sweep is logged and tried again next time.
 */
export const forkSweeper = (
  settings: StoreSettings,
  sweepBatch: (limit: number) => Effect.Effect<number, StateStoreError>
) => {
  const sweepAll: Effect.Effect<void, StateStoreError> = Effect.flatMap(sweepBatch(settings.sweepBatchSize), (deleted) =>
    deleted < settings.sweepBatchSize ? Effect.void : Effect.zipRight(yieldToEventLoop, sweepAll)
  )
  return sweepAll.pipe(
    Effect.catchAll((error) => Effect.logWarning("channel-state: sweeping expired rows failed", error.message)),
    Effect.withSpan("KeyedStore.sweep"),
    Effect.repeat(Schedule.spaced(settings.sweepInterval)),
    Effect.delay(settings.sweepInterval),
    Effect.interruptible,
    Effect.forkScoped
  )
}
