/**
 * Subscriptions and the key-value cache: each member one atomic keyed-store operation on one
 * row (`setIfNotExists` is the store's claim, in which an expired row counts as absent).
 *
 * @internal
 */
import type { StateAdapter } from "chat"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { json, optionalTtl, text } from "./arguments.js"
import type { StateStoreError } from "../StateStoreError.js"
import type { Connection } from "./connection.js"
import { storedKey } from "./keys.js"
import type { Namespaces } from "./namespaces.js"

/** The subscription members of the adapter. */
export const subscriptionMembers = (connection: Connection): Pick<StateAdapter, "subscribe" | "unsubscribe" | "isSubscribed"> => ({
  subscribe: (threadId) =>
    connection.run("subscribe", () => {
      const key = storedKey(text("subscribe", "threadId", threadId))
      return ({ subscriptions }) => subscriptions.register(key, true)
    }),
  unsubscribe: (threadId) =>
    connection.run("unsubscribe", () => {
      const key = storedKey(text("unsubscribe", "threadId", threadId))
      return ({ subscriptions }) => Effect.asVoid(subscriptions.delete(key))
    }),
  isSubscribed: (threadId) =>
    connection.run("isSubscribed", () => {
      const key = storedKey(text("isSubscribed", "threadId", threadId))
      return ({ subscriptions }) => Effect.map(subscriptions.lookup(key), Option.isSome)
    })
})

/** A write of `value` under `key` with an optional TTL: the arguments checked (and the value copied) before `f` runs. */
const write = <R>(
  connection: Connection,
  operation: "set" | "setIfNotExists",
  key: unknown,
  value: unknown,
  ttlMs: unknown,
  f: (cache: Namespaces["cache"], stored: string, copy: unknown, ttl: number | undefined) => Effect.Effect<R, StateStoreError>
): Promise<R> =>
  connection.run(operation, () => {
    const stored = storedKey(text(operation, "key", key))
    const copy = json(operation, "value", value)
    const ttl = optionalTtl(operation, ttlMs)
    return ({ cache }) => f(cache, stored, copy, ttl)
  })

/** The cache members of the adapter. */
export const cacheMembers = (connection: Connection): Pick<StateAdapter, "get" | "set" | "delete" | "setIfNotExists"> => ({
  get: <T>(key: string) =>
    connection.run("get", () => {
      const stored = storedKey(text("get", "key", key))
      return ({ cache }) => Effect.map(cache.lookup(stored), (value) => Option.getOrNull(value) as T | null)
    }),
  set: (key, value, ttlMs) => write(connection, "set", key, value, ttlMs, (cache, stored, copy, ttl) => cache.register(stored, copy, { ttl })),
  delete: (key) =>
    connection.run("delete", () => {
      const stored = storedKey(text("delete", "key", key))
      return ({ cache }) => Effect.asVoid(cache.delete(stored))
    }),
  setIfNotExists: (key, value, ttlMs) => write(connection, "setIfNotExists", key, value, ttlMs, (cache, stored, copy, ttl) => cache.registerIfAbsent(stored, copy, { ttl }))
})
