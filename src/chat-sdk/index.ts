/**
 * `channel-state/chat-sdk`: a state adapter for Vercel's Chat SDK (`chat`) over channel-state's
 * keyed store — an embedded SQLite file that survives restarts, or a PostgreSQL database that
 * several bot processes share.
 *
 * ```ts
 * import { Chat } from "chat"
 * import { createChatState } from "channel-state/chat-sdk"
 * const bot = new Chat({ userName: "bot", adapters: { slack }, state: createChatState({ sqlitePath: "/var/lib/bot/state.sqlite" }) })
 * ```
 *
 * Every member is one atomic operation of the store, atomic with respect to every other
 * process on the same database. Members reject (never throw) with a {@link ChatStateError}.
 *
 * @module
 */
import * as path from "node:path"
import type { StateAdapter } from "chat"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { KeyedStore } from "../KeyedStore.js"
import * as PgStore from "../layers/store/PgStore.js"
import * as SqliteStore from "../layers/store/SqliteStore.js"
import type { StateStoreError } from "../StateStoreError.js"
import { cacheMembers, subscriptionMembers } from "./cache.js"
import { makeConnection, unusable } from "./connection.js"
import { listMembers } from "./lists.js"
import { lockMembers } from "./locks.js"
import { queueMembers } from "./queues.js"

export { ChatStateError, type ChatStateErrorReason, type ChatStateOperation } from "./ChatStateError.js"

/** The largest value the adapter stores by default, in UTF-8 bytes of JSON (8 MiB: a thread's state, a whole list or queue). */
export const DEFAULT_CHAT_MAX_VALUE_BYTES = 8 * 1024 * 1024

/** Settings every location takes. */
export interface ChatStateSettings {
  /**
   * Whose rows these are (`^[a-z0-9][a-z0-9._-]*$`, default `chat-sdk`): two bots with two
   * owners share a database without sharing state.
   */
  readonly owner?: string | undefined
  /** The largest value, list or queue, in UTF-8 bytes of its JSON (default {@link DEFAULT_CHAT_MAX_VALUE_BYTES}, at most 64 MiB); a larger one rejects with `TooLarge`. */
  readonly maxValueBytes?: number | undefined
  /** How long a call waits out another process's lock on the database before rejecting with `Busy` (default 5 s). */
  readonly lockWait?: Duration.DurationInput | undefined
}

/** Where {@link createChatState} keeps its rows. */
export type ChatStateOptions = ChatStateSettings &
  (
    | {
        /** A SQLite file (created `0600` in a `0700` directory when missing): one host, any number of processes. */
        readonly sqlitePath: string
      }
    | {
        /** A PostgreSQL URL (`postgres://user@host:5432/db`): several hosts. The database's clock decides expiry. */
        readonly pgUrl: string
      }
    | {
        /** A keyed store layer of your own (tests: `MemoryStore.layer()`; a `SqliteStore`/`PgStore` layer with settings of your own). Built afresh on every `connect()`. */
        readonly store: Layer.Layer<KeyedStore, StateStoreError>
        /** The clock the store and the adapter read (epoch milliseconds; default `Date.now`), for tests that move time. */
        readonly now?: (() => number) | undefined
      }
  )

/** A clock reading `now`, sleeping as the default clock does. */
const clockOf = (now: () => number): Clock.Clock => {
  const base = Clock.make()
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: now,
    currentTimeMillis: Effect.sync(now),
    unsafeCurrentTimeNanos: () => BigInt(now()) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(now()) * 1_000_000n),
    sleep: (duration) => base.sleep(duration)
  }
}

const describeOption = (value: unknown): string => (value === null ? "null" : typeof value === "object" ? "an object" : typeof value)

/** The store layer the options name, or one that fails `connect()` with what is wrong. */
const storeOf = (options: ChatStateOptions): (() => Layer.Layer<KeyedStore, StateStoreError>) => {
  if (typeof options !== "object" || options === null) return unusable("createChatState takes { sqlitePath } or { pgUrl } or { store }")
  const settings = { maxValueBytes: options.maxValueBytes ?? DEFAULT_CHAT_MAX_VALUE_BYTES, ...(options.lockWait === undefined ? {} : { lockWait: options.lockWait }) }
  if ("store" in options) {
    const { store, now } = options
    if (!Layer.isLayer(store as unknown)) return unusable(`store must be a KeyedStore layer (e.g. MemoryStore.layer()), got ${describeOption(store)}`)
    if (now !== undefined && typeof now !== "function") return unusable(`now must be a function returning epoch milliseconds, got ${describeOption(now)}`)
    return now === undefined ? () => store : () => Layer.merge(store, Layer.setClock(clockOf(now)))
  }
  if ("pgUrl" in options) {
    const url = options.pgUrl
    if (typeof url !== "string" || url.trim() === "") return unusable(`pgUrl must be a PostgreSQL URL (postgres://user@host:5432/db), got ${JSON.stringify(url) ?? String(url)}`)
    return () => PgStore.layer({ url, ...settings })
  }
  const file = (options as { readonly sqlitePath?: unknown }).sqlitePath
  if (typeof file !== "string" || file.trim() === "") return unusable(`sqlitePath must be a file path, got ${JSON.stringify(file) ?? String(file)}`)
  const filename = path.resolve(file)
  return () => SqliteStore.layer({ filename, ...settings })
}

/**
 * A Chat SDK `StateAdapter` over the SQLite file `sqlitePath`, the PostgreSQL database
 * `pgUrl`, or a keyed store layer of your own. Nothing is opened until `connect()` (the Chat
 * SDK calls it on `initialize`). Never throws: options it cannot use make `connect()` reject
 * with `InvalidArgument`.
 *
 * What each member guarantees (on every backend, across every process sharing the database):
 * - `connect()` opens the database, its schema migrated; concurrent calls share one opening;
 *   it rejects with `OpenFailed`, `InvalidArgument`, `Unavailable` or `Busy` (another
 *   process held the schema's lock past `lockWait`) and stays closed.
 *   `disconnect()` waits for the calls in flight, then closes it (nothing stored is lost:
 *   state is durable, unlike the memory adapter's); calls made after it began reject with
 *   `NotConnected`. It never rejects. A call made while `connect()` is opening waits for it.
 * - `subscribe`/`unsubscribe`/`isSubscribed`: one row per thread, kept until unsubscribed.
 * - `acquireLock`: atomic — of concurrent callers for a free (or expired) thread lock exactly
 *   one gets it; the others get `null` at once (it never waits for the holder). The returned
 *   `expiresAt` is read before the claim, so the lock never lapses before it.
 *   `releaseLock`/`extendLock` act only while the caller's token still holds the lock: they
 *   never release, extend, create or resurrect another holder's (an expired lock is not
 *   extended: `false`). `forceReleaseLock` deletes whatever holds it.
 * - `get`/`set`/`delete`: one row per key, TTL in milliseconds (none or `0`: no expiry);
 *   `setIfNotExists` is atomic — exactly one of concurrent callers gets `true`, an expired
 *   row counting as absent.
 * - `appendToList`/`getList`: a list is one row; an append is atomic (trim to `maxLength`
 *   keeping the newest, TTL set to `ttlMs` — none clears it, as the memory adapter does),
 *   and an item it trimmed never comes back. Values are stored as their JSON, as the Redis
 *   and PostgreSQL adapters store them.
 * - `enqueue`/`dequeue`/`queueDepth`: a queue is one row; `enqueue` never leaves more than
 *   `maxSize` entries (dropping the oldest) and answers the depth after it; `dequeue` hands each
 *   entry to exactly one caller, oldest first. Chat SDK discards expired entries after dequeue.
 *
 * On contention (another process holding the SQLite write lock; a PostgreSQL deadlock) a call
 * waits it out from a fiber — never blocking the event loop — for `lockWait`, then rejects with
 * `Busy` (it did not happen); with the database out of reach it rejects with `Unavailable`
 * (a write whose connection dropped in flight may have landed, once: it is never run twice). A call that was waiting on a list or queue row another call changed retries on the
 * new row (each retry means another call landed).
 */
export const createChatState = (options: ChatStateOptions): StateAdapter => {
  const owner = typeof options === "object" && options !== null && options.owner !== undefined ? options.owner : "chat-sdk"
  const connection = makeConnection(storeOf(options), owner)
  return {
    connect: connection.connect,
    disconnect: connection.disconnect,
    ...subscriptionMembers(connection),
    ...lockMembers(connection),
    ...cacheMembers(connection),
    ...listMembers(connection),
    ...queueMembers(connection)
  }
}
