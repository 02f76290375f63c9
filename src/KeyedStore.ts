/**
 * The keyed store: one table of `(owner, namespace, key) → JSON value` rows with TTLs,
 * shared by every channel cache. Backends: memory (the reference model), SQLite and
 * PostgreSQL (`src/layers/`).
 *
 * @module
 */
import type { Duration, Effect, Option, Schema } from "effect"
import { Context } from "effect"
import type { StateStoreError } from "./StateStoreError.js"

/**
 * What happens when a namespace is full (`maxEntries` live rows) and a new key arrives.
 * - `evict-oldest`: the write succeeds; expired rows, then the oldest live rows (by
 *   `createdAt`, then key) are deleted until the namespace is back at `maxEntries`.
 * - `reject-new`: the write fails with `LimitExceeded`; nothing stored changes.
 */
export type OverflowPolicy = "evict-oldest" | "reject-new"

/** How a namespace is opened. Reopening the same owner + namespace with other options fails. */
export interface NamespaceOptions<A, I = unknown> {
  /** The plugin id that owns the rows; a handle never sees another owner's rows. */
  readonly owner: string
  /** `^[a-z0-9][a-z0-9._-]*$`, at most 128 bytes. */
  readonly namespace: string
  /** Encodes values to plain JSON (≤ 64 KiB, depth ≤ 64) and decodes them back. */
  readonly schema: Schema.Schema<A, I>
  /** The most live rows the namespace keeps (a positive integer). */
  readonly maxEntries: number
  /** Default time-to-live of a row; none means rows live until deleted or evicted. */
  readonly ttl?: Duration.DurationInput | undefined
  /** Default `evict-oldest`. */
  readonly overflow?: OverflowPolicy | undefined
}

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
  readonly owner: string
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
  /** Live rows of this namespace, oldest first. Corrupt rows are removed and reported as `Corrupt`. */
  readonly entries: Effect.Effect<ReadonlyArray<StoredEntry<A>>, StateStoreError>
  /** Number of live rows in this namespace. */
  readonly size: Effect.Effect<number, StateStoreError>
  /** Deletes every row of this namespace (and only it); returns how many were live. */
  readonly clear: Effect.Effect<number, StateStoreError>
}

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
