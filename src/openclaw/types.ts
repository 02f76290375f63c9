/**
 * The shapes of OpenClaw's plugin-state keyed store (`api.runtime.state.openKeyedStore`), as
 * its plugins see them, so code written for OpenClaw's store type-checks against this adapter
 * unchanged. Members OpenClaw marks optional and this adapter does not offer (`update`,
 * `deleteIf`, `moveEntriesFrom`, `withCurrent`) are left out.
 *
 * @module
 */
import type { PluginStateStoreError } from "./PluginStateStoreError.js"

/** A live entry: `expiresAt` is present only when the entry has a TTL. */
export type PluginStateEntry<T> = {
  key: string
  value: T
  createdAt: number
  expiresAt?: number
}

/** A key's live value and an opaque comparison naming exactly that row (value and timestamps), for {@link PluginStateKeyedStore.compareAndApply}. */
export type PluginStateObservation<T> = {
  value: T | undefined
  comparison: string
}

/** What a compare-and-apply does while the key is as observed. */
export type PluginStateCompareIntent<T> =
  | { operation: "update"; action: "set"; value: T; ttlMs?: number }
  | { operation: "update" | "delete"; action: "keep" }
  | { operation: "delete"; action: "delete" }

/** How a compare-and-apply ended: only a conflict carries the key's current observation. */
export type PluginStateCompareResult<T> = { status: "applied" | "unchanged" } | { status: "conflict"; current: PluginStateObservation<T> }

/** Another row of the same plugin a compare-and-apply would check too (not supported: see the README). */
export type PluginStateComparisonCondition = {
  namespace: string
  key: string
  comparison: string
}

/** A key range in UTF-8 byte order; `limit` is required. */
export type PluginStateKeyRange = {
  keyStartInclusive: string
  keyEndExclusive: string
  limit: number
  order?: "asc" | "desc"
}

/** One position of a `lookupMany`: the value (or `undefined`), or that key's own error. */
export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E }

export type PluginStateOverflowPolicy = "evict-oldest" | "reject-new"

/** A bounded store: at most `maxEntries` live entries. */
export type OpenKeyedStoreOptions = {
  namespace: string
  maxEntries: number
  retention?: "bounded"
  overflowPolicy?: PluginStateOverflowPolicy
  defaultTtlMs?: number
}

/** A retained store: no bound, no TTL. */
export type OpenRetainedKeyedStoreOptions = {
  namespace: string
  retention: "retained"
  maxEntries?: never
  overflowPolicy?: never
  defaultTtlMs?: never
}

export type OpenAsyncKeyedStoreOptions = OpenKeyedStoreOptions | OpenRetainedKeyedStoreOptions

/**
 * A keyed store of one plugin's namespace. Every member returns a Promise that rejects with
 * {@link PluginStateStoreError} (its `code` and `operation` as OpenClaw's); each one is one
 * atomic store operation, safe across processes sharing the database.
 */
export type PluginStateKeyedStore<T> = {
  /** The key's live value and its comparison. */
  observe(key: string): Promise<PluginStateObservation<T>>
  /** Applies `intent` only while the key is exactly as `comparison` saw it; of concurrent callers holding one comparison, exactly one applies. */
  compareAndApply(
    key: string,
    comparison: string,
    intent: PluginStateCompareIntent<T>,
    options?: { conditions: ReadonlyArray<PluginStateComparisonCondition> }
  ): Promise<PluginStateCompareResult<T>>
  /** Upsert: a new `createdAt`, and the TTL `ttlMs ?? defaultTtlMs` (none clears it). */
  register(key: string, value: T, opts?: { ttlMs?: number }): Promise<void>
  /** `true` only for the first live writer of the key (an expired entry counts as absent). */
  registerIfAbsent(key: string, value: T, opts?: { ttlMs?: number }): Promise<boolean>
  /** Deletes the live entry only while it equals the JSON scalar `expected` (strictly). */
  deleteIfEqual(key: string, expected: string | number | boolean | null): Promise<boolean>
  lookup(key: string): Promise<T | undefined>
  /** At most 10 000 keys, one result per key in order; missing and expired are `{ ok: true, value: undefined }`. */
  lookupMany(keys: ReadonlyArray<string>): Promise<Array<Result<T | undefined, PluginStateStoreError>>>
  /** Atomic get-and-delete: of concurrent consumers exactly one gets the value. */
  consume(key: string): Promise<T | undefined>
  /** `true` when a live entry was deleted. */
  delete(key: string): Promise<boolean>
  /** Live entries, oldest `createdAt` first (then key). */
  entries(): Promise<Array<PluginStateEntry<T>>>
  /** Live entries of a key range, ordered by key, at most `limit`. */
  entriesInKeyRange(range: PluginStateKeyRange): Promise<Array<PluginStateEntry<T>>>
  /** Live entries, counted without decoding. */
  count(): Promise<number>
  /** Deletes every entry of the namespace. */
  clear(): Promise<void>
}
