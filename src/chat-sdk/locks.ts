/**
 * Thread locks: one row per thread holding the holder's random token, expiring with the
 * lock. Acquiring is the store's atomic claim; releasing and extending are its
 * compare-and-delete and compare-and-replace on that token, so they act only while the
 * caller's token still holds the lock.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import type { StateAdapter } from "chat"
import * as Effect from "effect/Effect"
import { lock as lockArgument, requiredTtl, text } from "./arguments.js"
import type { Connection } from "./connection.js"
import { storedKey } from "./keys.js"

/** The lock members of the adapter. */
export const lockMembers = (connection: Connection): Pick<StateAdapter, "acquireLock" | "releaseLock" | "extendLock" | "forceReleaseLock"> => ({
  acquireLock: (threadId, ttlMs) =>
    connection.run("acquireLock", () => {
      const id = text("acquireLock", "threadId", threadId)
      const ttl = requiredTtl("acquireLock", ttlMs)
      const token = `cs_${randomUUID()}`
      return ({ locks }) =>
        // `now` is read before the claim: the lock reported never outlives the row.
        Effect.flatMap(Effect.clockWith((clock) => clock.currentTimeMillis), (now) =>
          Effect.map(locks.registerIfAbsent(storedKey(id), { token }, { ttl }), (won) => (won ? { threadId: id, token, expiresAt: now + ttl } : null))
        )
    }),
  releaseLock: (lock) =>
    connection.run("releaseLock", () => {
      const held = lockArgument("releaseLock", lock)
      return ({ locks }) => Effect.asVoid(locks.deleteIfEqual(storedKey(held.threadId), { token: held.token }))
    }),
  extendLock: (lock, ttlMs) =>
    connection.run("extendLock", () => {
      const held = lockArgument("extendLock", lock)
      const ttl = requiredTtl("extendLock", ttlMs)
      return ({ locks }) => locks.replaceIfEqual(storedKey(held.threadId), { token: held.token }, { token: held.token }, { ttl })
    }),
  forceReleaseLock: (threadId) =>
    connection.run("forceReleaseLock", () => {
      const id = text("forceReleaseLock", "threadId", threadId)
      return ({ locks }) => Effect.asVoid(locks.delete(storedKey(id)))
    })
})
