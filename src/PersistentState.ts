/**
 * What a plugin runtime says about its own persistence: which caches are mirrored into the
 * store, and whether the store answers right now.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { KeyedStore, type StoreBackend } from "./KeyedStore.js"
import type { StateStoreError, StateStoreErrorReason } from "./StateStoreError.js"

/** What {@link PersistentState} `health` found. */
export type StoreHealth =
  /** Persistence is off for this plugin: every cache is memory-only, nothing is opened. */
  | { readonly status: "memory-only" }
  /** The store answered a read just now. */
  | { readonly status: "ok"; readonly backend: StoreBackend }
  /** The store did not answer: the caches serve from memory and queue their writes; claims follow `whenUnreachable`. */
  | { readonly status: "unreachable"; readonly backend: StoreBackend; readonly reason: StateStoreErrorReason; readonly detail: string }

/** A plugin runtime's persistence, as it is (not as it was configured). */
export class PersistentState extends Context.Tag("channel-state/PersistentState")<
  PersistentState,
  {
    /** The caches mirrored into the store (by channel name); empty with persistence off. Every other cache is memory-only. */
    readonly channels: ReadonlyArray<string>
    /**
     * Reads one key of the store now (opening it first if it was down) and says whether that
     * worked. Never fails; waits at most the store's `lockWait` under contention.
     */
    readonly health: Effect.Effect<StoreHealth>
  }
>() {}

/** The namespace `health` reads (it holds no rows). */
const HEALTH_NAMESPACE = "channel-state.health"

/** {@link PersistentState} for `channels` mirrored into `store` (none, and memory-only, without a store). */
export const persistentStateLayer = <E>(
  owner: string,
  channels: ReadonlyArray<string>,
  store: Layer.Layer<KeyedStore, E> | undefined
): Layer.Layer<PersistentState, E> => {
  if (store === undefined) return Layer.succeed(PersistentState, { channels, health: Effect.succeed<StoreHealth>({ status: "memory-only" }) })
  return Layer.effect(
    PersistentState,
    Effect.map(KeyedStore, (keyed) => {
      const probe = Effect.flatMap(keyed.open({ owner, namespace: HEALTH_NAMESPACE, schema: Schema.Unknown, maxEntries: 1 }), (ns) => ns.lookup("probe"))
      const health: Effect.Effect<StoreHealth> = probe.pipe(
        Effect.as<StoreHealth>({ status: "ok", backend: keyed.backend }),
        Effect.catchAll((error: StateStoreError) => Effect.succeed<StoreHealth>({ status: "unreachable", backend: keyed.backend, reason: error.reason, detail: error.detail }))
      )
      return { channels, health }
    })
  ).pipe(Layer.provide(store))
}
