/**
 * The keyed-store namespaces one Chat SDK state keeps its rows in, one per kind of state, so
 * a cache key, a list key and a thread id never meet (as the Redis and PostgreSQL adapters
 * keep them apart). None of them evicts: a live lock, subscription or queued message is
 * never dropped to make room (the bound is the largest safe integer).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { KeyedStore, type NamespaceHandle } from "../KeyedStore.js"
import type { StateStoreError } from "../StateStoreError.js"

/** A lock row: the holder's token (values are compared as JSON, so the token is the lock). */
export interface LockRow {
  readonly token: string
}

/** The namespaces of one state. */
export interface Namespaces {
  /** Thread id → `true`; retained: a subscription stays until unsubscribed. */
  readonly subscriptions: NamespaceHandle<unknown>
  /** Thread id → the holder's token, expiring with the lock. */
  readonly locks: NamespaceHandle<LockRow>
  /** `get`/`set` keys → their JSON values. */
  readonly cache: NamespaceHandle<unknown>
  /** List key → the whole list, in one row (one compare-and-set appends, trims and refreshes its TTL). */
  readonly lists: NamespaceHandle<ReadonlyArray<unknown>>
  /** Thread id → its queue, oldest first, in one row. */
  readonly queues: NamespaceHandle<ReadonlyArray<unknown>>
}

const Items = Schema.Array(Schema.Unknown)

/** Opens the five namespaces of `owner` (`InvalidInput` on an owner the store refuses). */
export const openNamespaces = (owner: string): Effect.Effect<Namespaces, StateStoreError, KeyedStore> =>
  Effect.gen(function* () {
    const store = yield* KeyedStore
    const bounded = { owner, maxEntries: Number.MAX_SAFE_INTEGER, overflow: "reject-new" as const }
    return {
      subscriptions: yield* store.open({ owner, namespace: "chat.subscriptions", schema: Schema.Unknown, retention: "retained" }),
      locks: yield* store.open({ ...bounded, namespace: "chat.locks", schema: Schema.Struct({ token: Schema.String }) }),
      cache: yield* store.open({ ...bounded, namespace: "chat.cache", schema: Schema.Unknown }),
      lists: yield* store.open({ ...bounded, namespace: "chat.lists", schema: Items }),
      queues: yield* store.open({ ...bounded, namespace: "chat.queues", schema: Items })
    }
  })
