/**
 * Lists: a list is one row holding its items, oldest first. An append is one
 * read-modify-write of that row (see update.ts): push, trim to `maxLength` keeping the
 * newest, and write with the new TTL — all in the one compare-and-set, so of concurrent
 * appends (any process) each lands exactly once, the row never holds more than `maxLength`
 * items after any of them, and an item one append trimmed never comes back with another.
 * Reading a list reads its one row.
 *
 * @internal
 */
import type { StateAdapter } from "chat"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { json, optionalLength, optionalTtl, text } from "./arguments.js"
import type { Connection } from "./connection.js"
import { storedKey } from "./keys.js"
import { updateRow } from "./update.js"

/** The list members of the adapter. */
export const listMembers = (connection: Connection): Pick<StateAdapter, "appendToList" | "getList"> => ({
  appendToList: (key, value, options) =>
    connection.run("appendToList", () => {
      const stored = storedKey(text("appendToList", "key", key))
      const item = json("appendToList", "value", value)
      const maxLength = optionalLength("appendToList", "maxLength", options?.maxLength)
      const ttl = optionalTtl("appendToList", options?.ttlMs)
      return ({ lists }) =>
        updateRow(lists, stored, (current) => {
          const items = [...Option.match(current, { onNone: () => [], onSome: (entry) => entry.value }), item]
          // The TTL is the append's, as the memory adapter sets it (none: the list no longer expires).
          const kept = maxLength === undefined || items.length <= maxLength ? items : items.slice(items.length - maxLength)
          return { change: { _tag: "Set", value: kept, options: { ttl } }, result: undefined }
        })
    }),
  getList: <T>(key: string) =>
    connection.run("getList", () => {
      const stored = storedKey(text("getList", "key", key))
      return ({ lists }) => Effect.map(lists.lookup(stored), (items) => Option.match(items, { onNone: () => [] as Array<T>, onSome: (list) => [...list] as Array<T> }))
    })
})
