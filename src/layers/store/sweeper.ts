/**
 * The background sweeper of the SQL store: on a fixed interval (Effect's `Clock`, so
 * `TestClock` drives it), delete expired rows namespace by namespace, in bounded batches,
 * each under the namespace's lock, yielding to the event loop between batches.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { StateStoreError } from "../../StateStoreError.js"
import { backgroundSleep, yieldToEventLoop } from "../lifetime.js"
import type { StoreSettings } from "./storeRules.js"

/** What the sweeper needs from a store. */
export interface Sweepable<N> {
  /** The namespaces that may hold rows. */
  readonly namespaces: Effect.Effect<ReadonlyArray<N>, StateStoreError>
  /** Deletes up to `limit` expired rows of one namespace; how many it deleted. */
  readonly sweep: (namespace: N, limit: number) => Effect.Effect<number, StateStoreError>
}

/**
 * Forks, in the current scope, a fiber that every `sweepInterval` sweeps each namespace until
 * a batch deletes fewer than `sweepBatchSize` rows. A failed sweep is logged and tried again
 * next time. Its timer never keeps the process alive.
 */
export const forkSweeper = <N>(settings: StoreSettings, store: Sweepable<N>) => {
  const sweepNamespace = (namespace: N): Effect.Effect<void, StateStoreError> =>
    Effect.flatMap(store.sweep(namespace, settings.sweepBatchSize), (deleted) =>
      deleted < settings.sweepBatchSize ? Effect.void : Effect.zipRight(yieldToEventLoop, sweepNamespace(namespace))
    )
  const sweepAll = Effect.flatMap(store.namespaces, (namespaces) => Effect.forEach(namespaces, sweepNamespace, { discard: true })).pipe(
    Effect.catchAll((error) => Effect.logWarning("channel-state: sweeping expired rows failed", error.message)),
    Effect.withSpan("KeyedStore.sweep")
  )
  return Effect.zipRight(backgroundSleep(settings.sweepInterval), sweepAll).pipe(Effect.forever, Effect.interruptible, Effect.forkScoped)
}
