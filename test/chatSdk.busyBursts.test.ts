/**
 * Attack on "Busy: it did not happen" and exactly-one claims under a burst of first writes
 * with a tiny lockWait: hundreds of new dedupe keys and locks claimed at once from three
 * adapters on one database. A call that rejected must not have landed: a key some caller saw
 * as taken (`false`) must have exactly one caller told `true`.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import type { StateAdapter } from "chat"
import { Effect } from "effect"
import { ChatStateError, createChatState } from "../src/chat-sdk/index.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const settle = <T>(p: Promise<T>) => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, reason: error instanceof ChatStateError ? error.reason : `untyped ${String(error)}` }))

const run = (make: () => StateAdapter) =>
  Effect.promise(async () => {
    const adapters = [make(), make(), make()]
    for (const a of adapters) await a.connect() // one at a time: concurrent connects with a 1 ms lockWait can reject Busy (see below)
    try {
      const keys = range(150).map((i) => `dedupe:${i}`)
      const claims = await Promise.all(keys.flatMap((k) => adapters.map((a) => settle(a.setIfNotExists(k, { by: Math.random() }, 60_000)))))
      const locks = await Promise.all(keys.flatMap((k) => adapters.map((a) => settle(a.acquireLock(k, 60_000)))))
      const reasons = new Set([...claims, ...locks].filter((r) => !r.ok).map((r) => (r as { reason: string }).reason))
      for (const reason of reasons) expect(["Busy"]).toContain(reason)
      const reader = adapters[0]!
      for (const [i, k] of keys.entries()) {
        const mine = claims.slice(i * 3, i * 3 + 3)
        const trues = mine.filter((r) => r.ok && r.value === true).length
        const falses = mine.filter((r) => r.ok && r.value === false).length
        expect(trues, k).toBeLessThanOrEqual(1)
        if (falses > 0) expect(trues, `${k}: someone saw it taken, nobody was told they took it`).toBe(1)
        const stored = await reader.get(k)
        if (trues === 0) expect(stored, `${k}: a row nobody was told they wrote`).toBeNull()
        const myLocks = locks.slice(i * 3, i * 3 + 3)
        const held = myLocks.filter((r) => r.ok && r.value !== null).length
        const refused = myLocks.filter((r) => r.ok && r.value === null).length
        expect(held, k).toBeLessThanOrEqual(1)
        if (refused > 0) expect(held, `${k}: lock refused but no holder`).toBe(1)
        if (held === 0) expect(await reader.acquireLock(k, 1000), `${k}: a lock nobody was told they hold`).not.toBeNull()
      }
      return { busy: [...claims, ...locks].filter((r) => !r.ok).length }
    } finally {
      await Promise.all(adapters.map((a) => a.disconnect()))
    }
  })

describe("chat adapter, Busy under a burst of first writes", () => {
  it.scopedLive("SQLite: three adapters connecting at once (first open: migrations) with lockWait 1 ms: connect() rejects only with a documented connect reason", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const sqlitePath = path.join(dir, "c.sqlite")
      const reasons = yield* Effect.promise(async () => {
        const adapters = range(3).map(() => createChatState({ sqlitePath, lockWait: "1 millis" }))
        const results = await Promise.all(adapters.map((a) => settle(a.connect())))
        await Promise.all(adapters.map((a) => a.disconnect()))
        return results.filter((r) => !r.ok).map((r) => (r as { reason: string }).reason)
      })
      for (const reason of reasons) expect(["OpenFailed", "InvalidArgument", "Unavailable", "Busy"]).toContain(reason)
    })
  )
  // connect() is documented (index.ts, connection.ts) to reject only with OpenFailed, InvalidArgument, Unavailable or Busy (another connect holding the schema's lock past lockWait).
  if (pgUrl)
    it.scopedLive("PostgreSQL: three adapters connecting at once with lockWait 1 ms: connect() rejects only with a documented connect reason", () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const reasons = yield* Effect.promise(async () => {
          const adapters = range(3).map(() => createChatState({ pgUrl: url, lockWait: "1 millis" }))
          const results = await Promise.all(adapters.map((a) => settle(a.connect())))
          // A failed connect leaves it closed and retryable: connecting again, one at a time, works.
          for (const a of adapters) {
            await a.disconnect()
            await a.connect()
          }
          // An already-migrated database: three connect at once again.
          await Promise.all(adapters.map((a) => a.disconnect()))
          const again = await Promise.all(adapters.map((a) => settle(a.connect())))
          await Promise.all(adapters.map((a) => a.disconnect()))
          const reasonsOf = (rs: typeof results) => rs.filter((r) => !r.ok).map((r) => (r as { reason: string }).reason)
          console.log(`pg connect rejections: first open ${JSON.stringify(reasonsOf(results))}, migrated ${JSON.stringify(reasonsOf(again))}`)
          return [...reasonsOf(results), ...reasonsOf(again)]
        })
        for (const reason of reasons) expect(["OpenFailed", "InvalidArgument", "Unavailable", "Busy"]).toContain(reason)
      })
    )

  it.scopedLive("SQLite, lockWait 1 ms", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const sqlitePath = path.join(dir, "b.sqlite")
      const { busy } = yield* run(() => createChatState({ sqlitePath, lockWait: "1 millis" }))
      console.log(`sqlite busy rejections: ${busy}`)
    })
  )
  if (pgUrl)
    it.scopedLive("PostgreSQL, lockWait 1 ms", () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const { busy } = yield* run(() => createChatState({ pgUrl: url, lockWait: "1 millis" }))
        console.log(`pg busy rejections: ${busy}`)
      })
    )
})
