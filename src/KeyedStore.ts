/**
 * The keyed store: one table of `(owner, namespace, key) → JSON value` rows with TTLs,
 * shared by every channel cache. Backends: memory (the reference model), SQLite and
 * PostgreSQL (`src/layers/`).
 *
 * @module
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import * as Context from "effect/Context"
import type { StateStoreError } from "./StateStoreError.js"

/**
 * What happens when a namespace is full (`maxEntries` live rows) and a new key arrives.
 * - `evict-oldest`: the write succeeds; expired rows, then the oldest live rows (by
 *   `createdAt`, then key) are deleted until the namespace is back at `maxEntries`.
 * - `reject-new`: the write fails with `LimitExceeded`; nothing stored changes.
 */
export type OverflowPolicy = "evict-oldest" | "reject-new"

/**
 * How long a namespace keeps its rows.
 * - `bounded` (the default): at most `maxEntries` live rows, with TTLs and an overflow policy.
 * - `retained`: no bound, no TTL, no eviction — rows stay until deleted (OpenClaw's retained
 *   stores). Its rows live under the stored namespace `@retained.<namespace>`, so a bounded
 *   and a retained namespace of the same name never share rows.
 */
export type Retention = "bounded" | "retained"

interface NamespaceOptionsBase<A, I> {
  /** The plugin id that owns the rows; a handle never sees another owner's rows. */
  readonly owner: string
  /** `^[a-zA-Z0-9][a-zA-Z0-9._-]*$`, at most 128 bytes (case-sensitive: `Foo` and `foo` are two namespaces). */
  readonly namespace: string
  /** Encodes values to plain JSON (within the store's `maxValueBytes`, 1 MiB by default; depth ≤ 64) and decodes them back. */
  readonly schema: Schema.Schema<A, I>
}

/** A bounded namespace: at most `maxEntries` live rows. */
export interface BoundedNamespaceOptions<A, I = unknown> extends NamespaceOptionsBase<A, I> {
  readonly retention?: "bounded" | undefined
  /** The most live rows the namespace keeps (a positive integer). */
  readonly maxEntries: number
  /** Default time-to-live of a row; none means rows live until deleted or evicted. */
  readonly ttl?: Duration.DurationInput | undefined
  /** Default `evict-oldest`. */
  readonly overflow?: OverflowPolicy | undefined
}

/** A retained namespace: no bound, no TTL (a write with `ttl` or `expiresAt` is `InvalidInput`). */
export interface RetainedNamespaceOptions<A, I = unknown> extends NamespaceOptionsBase<A, I> {
  readonly retention: "retained"
  readonly maxEntries?: undefined
  readonly ttl?: undefined
  readonly overflow?: undefined
}

/** How a namespace is opened. Reopening the same owner + namespace with other options fails. */
export type NamespaceOptions<A, I = unknown> = BoundedNamespaceOptions<A, I> | RetainedNamespaceOptions<A, I>

/**
 * Per-write options. `expiresAt` wins over `ttl`; both fall back to the namespace TTL.
 * Timestamps are whole epoch milliseconds from 0 to 8.64e15 (the largest JS `Date`);
 * fractions are rounded to the nearest millisecond on every backend, anything else is
 * `InvalidInput`.
 */
export interface WriteOptions {
  /** Rounded to whole milliseconds; at least 1 ms. */
  readonly ttl?: Duration.DurationInput | undefined
  /** When the entry was created, in epoch milliseconds (default: now). Kept across restarts. */
  readonly createdAt?: number | undefined
  /** Absolute expiry in epoch milliseconds. */
  readonly expiresAt?: number | undefined
}

/** A live row as stored. */
export interface StoredEntry<A> {
  readonly key: string
  readonly value: A
  /** Epoch milliseconds. */
  readonly createdAt: number
  /** Epoch milliseconds; `undefined` for a row without TTL. */
  readonly expiresAt: number | undefined
}

/** One step of a {@link NamespaceHandle.writeBatch}. */
export type BatchOp<A> =
  | {
      readonly _tag: "Register"
      readonly key: string
      readonly value: A
      readonly createdAt: number
      readonly expiresAt: number | undefined
      /**
       * Makes the step conditional: it lands only when `key` has no live row, or its live
       * row's value equals this one (compared as the Schema's JSON encoding). How a queued
       * claim or finalize lands without overwriting another holder's claim.
       */
      readonly ifAbsentOr?: A | undefined
    }
  | {
      readonly _tag: "Delete"
      readonly key: string
      /** Makes the step conditional: the row is deleted only while its live value equals this one. */
      readonly ifEqual?: A | undefined
    }

/** A step of a batch the store refused, and why (`InvalidInput` or `LimitExceeded`). */
export interface RefusedWrite {
  readonly key: string
  readonly error: StateStoreError
}

/** What a {@link NamespaceHandle.writeBatch} did not write. */
export interface WriteBatchResult {
  /** Steps refused on their own; every other step landed. Empty when all landed. */
  readonly refused: ReadonlyArray<RefusedWrite>
}

/**
 * A namespace opened for one owner. Every member is an `Effect` that fails only with
 * {@link StateStoreError} (never a defect, file-system failures included); none of them
 * blocks the event loop for longer than one statement. Contention — a SQLite file locked by
 * another process, a PostgreSQL deadlock or serialization failure — is retried from the
 * fiber until the store's `lockWait` (default 5 s) and then fails with `Busy`.
 * Expired rows are invisible to every read.
 *
 * Caps are exact under any number of writers and processes: every write that can add a row
 * runs under the namespace's lock (SQLite `BEGIN IMMEDIATE`; a PostgreSQL advisory lock),
 * so after every committed write a namespace holds at most `maxEntries` rows.
 */
export interface NamespaceHandle<A> {
  /** The owner (plugin id) the handle's rows belong to. */
  readonly owner: string
  /** The stored namespace name: as opened, or `@retained.<name>` for a retained namespace. */
  readonly namespace: string
  /** Upsert. Atomic; applies the overflow policy and the owner cap, if one is set (failing with `LimitExceeded`, nothing changed). */
  readonly register: (key: string, value: A, options?: WriteOptions) => Effect.Effect<void, StateStoreError>
  /**
   * Atomic claim: `true` only for the first live writer of `key` (an expired row counts as
   * absent). Safe across processes sharing the database. On PostgreSQL the database's clock
   * decides whether the row has expired, and stamps a claim written with a `ttl`.
   */
  readonly registerIfAbsent: (key: string, value: A, options?: WriteOptions) => Effect.Effect<boolean, StateStoreError>
  /**
   * Atomic compare-and-set: replaces the live row of `key` with `value` only while its value
   * equals `expected` (compared as the Schema's JSON encoding — put a unique token in values
   * that must not be mistaken for an earlier, equal one). `false`, nothing changed, when the
   * row is absent, expired or holds anything else.
   */
  readonly replaceIfEqual: (key: string, expected: A, value: A, options?: WriteOptions) => Effect.Effect<boolean, StateStoreError>
  /** Atomic compare-and-delete: deletes the live row of `key` only while its value equals `expected`; `true` when it did. */
  readonly deleteIfEqual: (key: string, expected: A) => Effect.Effect<boolean, StateStoreError>
  /** The live value, if any. A row that no longer decodes fails with `Corrupt` and is removed. */
  readonly lookup: (key: string) => Effect.Effect<Option.Option<A>, StateStoreError>
  /** Like `lookup`, with the stored timestamps. */
  readonly lookupEntry: (key: string) => Effect.Effect<Option.Option<StoredEntry<A>>, StateStoreError>
  /** Atomic get-and-delete: of concurrent consumers (any process) exactly one gets the value. */
  readonly consume: (key: string) => Effect.Effect<Option.Option<A>, StateStoreError>
  /** Deletes the row; `true` when it was live. */
  readonly delete: (key: string) => Effect.Effect<boolean, StateStoreError>
  /**
   * Applies register/delete steps with explicit timestamps in one transaction: the last step
   * per key wins, deletes are applied first, rows are written in key order. A step the store
   * refuses (bad key or value: `InvalidInput`; a full `reject-new` namespace or owner:
   * `LimitExceeded`) is refused alone and returned; every other step lands. The batch as a
   * whole fails only when the database does (then nothing of it is written). This is how
   * write-behind mirrors flush.
   */
  readonly writeBatch: (ops: ReadonlyArray<BatchOp<A>>) => Effect.Effect<WriteBatchResult, StateStoreError>
  /**
   * Up to {@link MAX_KEYS_PER_CALL} keys in one statement, one result per key in the order
   * given (a key named twice is answered twice): its live value, none, or — for a row that no
   * longer decodes, which is removed — that key's `Corrupt`, so one bad row never hides the
   * others. The effect fails only on a bad key or count (`InvalidInput`, nothing read) or when
   * the store does.
   */
  readonly lookupMany: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Either.Either<Option.Option<A>, StateStoreError>>, StateStoreError>
  /**
   * Deletes up to {@link MAX_KEYS_PER_CALL} keys in one statement (atomic); one result per
   * key in the order given: `true` where this call removed a live row (a key named twice is
   * `true` at its first position only).
   */
  readonly deleteMany: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<boolean>, StateStoreError>
  /**
   * One page of live rows in a key range, in key order, read with one statement (the primary
   * key makes it an index range). A row that no longer decodes is removed and fails the read
   * with `Corrupt` (read again to go on).
   */
  readonly entriesInRange: (range: KeyRange) => Effect.Effect<EntriesPage<A>, StateStoreError>
  /** The live entry of `key` and its revision, for a later {@link compareAndSet}. A row that no longer decodes fails with `Corrupt` and is removed. */
  readonly observe: (key: string) => Effect.Effect<Observation<A>, StateStoreError>
  /**
   * Optimistic concurrency: applies `change` only while `key` is exactly as the observation
   * with `revision` saw it (the write is conditional on the observed row, so of concurrent
   * callers holding one revision — any process — exactly one applies). Otherwise nothing
   * changes and the result is `Conflict` with the key's current observation. A `Set` that
   * adds a row is subject to the caps as `register` is (`LimitExceeded`, nothing changed).
   * A `revision` that is not one {@link observe} returns is `InvalidInput`.
   */
  readonly compareAndSet: (key: string, revision: string, change: Change<A>) => Effect.Effect<CompareResult<A>, StateStoreError>
  /** Live rows of this namespace, oldest first. Corrupt rows are removed and reported as `Corrupt`. */
  readonly entries: Effect.Effect<ReadonlyArray<StoredEntry<A>>, StateStoreError>
  /** Number of live rows in this namespace (OpenClaw's `count`), read from the index without decoding a value. */
  readonly size: Effect.Effect<number, StateStoreError>
  /** Deletes every row of this namespace (and only it); returns how many were live. */
  readonly clear: Effect.Effect<number, StateStoreError>
}

/** The most keys one {@link NamespaceHandle.lookupMany} or {@link NamespaceHandle.deleteMany} takes, and the largest page of a range read. */
export const MAX_KEYS_PER_CALL = 10_000

/**
 * A slice of a namespace in key order: UTF-8 byte order, the same on every backend (SQLite's
 * `BINARY`, PostgreSQL's `"C"` collation). Bounds need not be keys that exist.
 */
export interface KeyRange {
  /** The first key of the range (inclusive); none: from the smallest key. */
  readonly from?: string | undefined
  /** The end of the range (exclusive); none: to the largest key. Must sort after `from`. */
  readonly to?: string | undefined
  /** The most entries in the page, 1 … {@link MAX_KEYS_PER_CALL}. */
  readonly limit: number
  /** Default `asc`. */
  readonly order?: "asc" | "desc" | undefined
  /** A previous page's `cursor`: the read resumes after the last key that page returned. */
  readonly cursor?: string | undefined
}

/** One page of a {@link KeyRange} read. */
export interface EntriesPage<A> {
  /** Live rows in key order (ascending or descending, as asked). */
  readonly entries: ReadonlyArray<StoredEntry<A>>
  /**
   * Where the next page starts (pass it as `cursor` with the same range), or `undefined`
   * when the range holds nothing more. Resuming is keyset paging: rows written between two
   * pages appear in a later page when their key sorts after the cursor, and no row is
   * returned twice.
   */
  readonly cursor: string | undefined
}

/**
 * What {@link NamespaceHandle.observe} saw of a key: its live entry (if any) and an opaque
 * `revision` naming exactly that row — its stored JSON and both timestamps. Every write of
 * the key changes the revision (a `register` stamps a new `createdAt`), except one that
 * writes the very same JSON and timestamps. An absent and an expired key have the same
 * revision.
 */
export interface Observation<A> {
  readonly entry: Option.Option<StoredEntry<A>>
  readonly revision: string
}

/** What a {@link NamespaceHandle.compareAndSet} does when the key is still as observed. */
export type Change<A> =
  /** Writes `value` (an upsert: new `createdAt`, TTL as `register` resolves it). */
  | { readonly _tag: "Set"; readonly value: A; readonly options?: WriteOptions | undefined }
  /** Deletes the live row (`Unchanged` when there is none). */
  | { readonly _tag: "Delete" }
  /** Writes nothing: only checks that the key is still as observed. */
  | { readonly _tag: "Keep" }

/** How a {@link NamespaceHandle.compareAndSet} ended. */
export type CompareResult<A> =
  | { readonly _tag: "Applied" }
  /** The key was as observed and the change wrote nothing (`Keep`, or `Delete` of an absent key). */
  | { readonly _tag: "Unchanged" }
  /** The key was not as observed: nothing changed; `current` is what it is now. */
  | { readonly _tag: "Conflict"; readonly current: Observation<A> }

/** Which backend a store runs on. */
export type StoreBackend = "memory" | "sqlite" | "pg"

/**
 * The keyed store service. Provided by `MemoryStore.layer`, `SqliteStore.layer`,
 * `PgStore.layer` (or `SqlStore.layer` over any `SqlClient`).
 */
export class KeyedStore extends Context.Tag("channel-state/KeyedStore")<
  KeyedStore,
  {
    readonly backend: StoreBackend
    /**
     * Opens (validates and registers) a namespace. Fails with `InvalidInput` on a bad owner,
     * namespace or option, or when it was already opened with different options.
     */
    readonly open: <A, I>(options: NamespaceOptions<A, I>) => Effect.Effect<NamespaceHandle<A>, StateStoreError>
  }
>() {}
