/**
 * Per-thread message queues: a queue is one row holding its entries, oldest first. Enqueue and
 * dequeue are each one read-modify-write of that row (see update.ts), so under any number of
 * callers (any process) the row never holds more than `maxSize` entries, every entry is handed
 * to exactly one `dequeue`, and entries leave in the order they came. A queue's row lives at
 * least until its newest entry expires (and at least a minute, as the Redis adapter keeps it);
 * an emptied queue's row is deleted.
 *
 * @internal
 */
import type { QueueEntry, StateAdapter } from "chat"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { positiveWhole, queueEntry, text } from "./arguments.js"
import type { Connection } from "./connection.js"
import { storedKey } from "./keys.js"
import { updateRow } from "./update.js"

/** The least a queue row is kept after an enqueue, in milliseconds (the Redis adapter's floor). */
const MIN_QUEUE_TTL_MS = 60_000

/** The queue members of the adapter. */
export const queueMembers = (connection: Connection): Pick<StateAdapter, "enqueue" | "dequeue" | "queueDepth"> => ({
  enqueue: (threadId, entry, maxSize) =>
    connection.run("enqueue", () => {
      const stored = storedKey(text("enqueue", "threadId", threadId))
      const checked = queueEntry("enqueue", entry)
      const bound = positiveWhole("enqueue", "maxSize", maxSize)
      return ({ queues }) =>
        updateRow(queues, stored, (current, now) => {
          const entries = [...Option.match(current, { onNone: () => [], onSome: (row) => row.value }), checked.entry]
          const kept = entries.length <= bound ? entries : entries.slice(entries.length - bound)
          const expiresAt = Math.max(checked.expiresAt, now + MIN_QUEUE_TTL_MS, Option.match(current, { onNone: () => 0, onSome: (row) => row.expiresAt ?? 0 }))
          return { change: { _tag: "Set", value: kept, options: { expiresAt } }, result: kept.length }
        })
    }),
  dequeue: (threadId) =>
    connection.run("dequeue", () => {
      const stored = storedKey(text("dequeue", "threadId", threadId))
      return ({ queues }) =>
        updateRow(queues, stored, (current) => {
          if (Option.isNone(current) || current.value.value.length === 0) return { change: undefined, result: null }
          const [first, ...rest] = current.value.value
          return {
            change: rest.length === 0 ? { _tag: "Delete" } : { _tag: "Set", value: rest, options: { createdAt: current.value.createdAt, expiresAt: current.value.expiresAt } },
            result: first as QueueEntry
          }
        })
    }),
  queueDepth: (threadId) =>
    connection.run("queueDepth", () => {
      const stored = storedKey(text("queueDepth", "threadId", threadId))
      return ({ queues }) => Effect.map(queues.lookup(stored), (entries) => Option.match(entries, { onNone: () => 0, onSome: (list) => list.length }))
    })
})
