/**
 * Attacks mixing namespaces and owners in one burst of concurrent calls (PostgreSQL coalesces
 * lookups), list TTL clearing, and TooLarge leaving a list or queue as it was, on SQLite and
 * PostgreSQL through the sqlitePath / pgUrl options themselves (the production layers).
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import type { QueueEntry, StateAdapter } from "chat"
import { Effect } from "effect"
import { createChatState } from "../src/chat-sdk/index.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"
import { ours, reasonOf, type SubjectKind, withSubject } from "./support/chatState.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const entry = (id: string, now: number, pad = ""): QueueEntry => ({ message: { id, pad } as never, enqueuedAt: now, expiresAt: now + 90_000 })

type Location = { readonly name: string; readonly open: Effect.Effect<(extra: { owner?: string; maxValueBytes?: number }) => Promise<StateAdapter>, never, import("effect").Scope.Scope> }

const adapters = (make: (extra: { owner?: string; maxValueBytes?: number }) => StateAdapter) =>
  Effect.gen(function* () {
    const made: Array<StateAdapter> = []
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(made.map((s) => s.disconnect()))))
    return async (extra: { owner?: string; maxValueBytes?: number }) => {
      const s = make(extra)
      made.push(s)
      await s.connect()
      return s
    }
  })

const locations: ReadonlyArray<Location> = [
  { name: "sqlitePath", open: Effect.flatMap(tempDir, (dir) => adapters((extra) => createChatState({ sqlitePath: path.join(dir, "c.sqlite"), ...extra }))) },
  ...(pgUrl ? [{ name: "pgUrl", open: Effect.flatMap(freshPgDatabase(pgUrl), ({ url }) => adapters((extra) => createChatState({ pgUrl: url, ...extra }))) }] : [])
]

for (const location of locations)
  describe(`chat adapter, mixed: ${location.name}`, () => {
    it.scopedLive("one burst of reads across every namespace and two owners, on the same ids: each answers from its own row", () =>
      Effect.flatMap(location.open, (open) =>
        Effect.promise(async () => {
          const [a1, a2, b] = [await open({ owner: "bot-a" }), await open({ owner: "bot-a" }), await open({ owner: "bot-b" })]
          const ids = range(30).map((i) => `id${i}`)
          await Promise.all(ids.map((id, i) => a1.set(id, `cache-${i}`)))
          await Promise.all(ids.map((id, i) => a2.appendToList(id, `list-${i}`)))
          await Promise.all(ids.filter((_, i) => i % 2 === 0).map((id) => a1.subscribe(id)))
          await Promise.all(ids.filter((_, i) => i % 3 === 0).map((id) => a2.enqueue(id, entry(id, Date.now()), 10)))
          await Promise.all(ids.map((id, i) => b.set(id, `b-${i}`)))
          const reads = await Promise.all(
            ids.flatMap((id) => [a1.get(id), a2.getList(id), a1.isSubscribed(id), a2.queueDepth(id), b.get(id), b.getList(id), b.isSubscribed(id), b.queueDepth(id), a2.get(id)])
          )
          const expected = ids.flatMap((_, i) => [`cache-${i}`, [`list-${i}`], i % 2 === 0, i % 3 === 0 ? 1 : 0, `b-${i}`, [], false, 0, `cache-${i}`])
          expect(reads).toEqual(expected)
        })
      )
    )

    it.scopedLive("an append without ttlMs (or ttlMs 0) clears a list's TTL: the list outlives the earlier TTL", () =>
      Effect.flatMap(location.open, (open) =>
        Effect.promise(async () => {
          const s = await open({})
          // Real time (these are the production layers; PostgreSQL expires on its own clock): a
          // TTL no stall between two calls outlasts, and a wait past it once all are made.
          await s.appendToList("l", 1, { ttlMs: 3000 })
          await s.appendToList("l", 2)
          await s.appendToList("m", 1, { ttlMs: 3000 })
          await s.appendToList("m", 2, { ttlMs: 0 })
          await s.set("c", 1, 3000)
          await s.set("c", 2)
          await new Promise((r) => setTimeout(r, 3500))
          expect(await s.getList("l")).toEqual([1, 2])
          expect(await s.getList("m")).toEqual([1, 2])
          expect(await s.get("c")).toBe(2)
        })
      )
    )

    it.scopedLive("with a small maxValueBytes: an append or enqueue that makes the row too large rejects TooLarge and leaves it as it was, while maxLength/maxSize trimming that fits lands", () =>
      Effect.flatMap(location.open, (open) =>
        Effect.promise(async () => {
          const s = await open({ maxValueBytes: 2048 })
          const other = await open({ maxValueBytes: 2048 })
          const item = "x".repeat(300)
          const results = await Promise.all(range(12).map((i) => (i % 2 ? s : other).appendToList("l", `${i}${item}`).then(() => "ok", reasonOf)))
          const ok = results.filter((r) => r === "ok").length
          expect(results.filter((r) => r !== "ok").every((r) => r === "TooLarge appendToList")).toBe(true)
          const list = await s.getList<string>("l")
          expect(list).toHaveLength(ok)
          expect(JSON.stringify(list).length).toBeLessThanOrEqual(2048)
          // Bounded: always fits, keeps the newest 3.
          for (const i of range(10)) await s.appendToList("b", `${i}${item}`, { maxLength: 3 })
          expect((await other.getList<string>("b")).map((x) => Number.parseInt(x, 10))).toEqual([7, 8, 9])
          const now = Date.now()
          const qResults = await Promise.all(range(12).map((i) => (i % 2 ? s : other).enqueue("q", entry(`m${i}`, now, item), 100).then(() => "ok", reasonOf)))
          const qOk = qResults.filter((r) => r === "ok").length
          expect(qResults.filter((r) => r !== "ok").every((r) => r === "TooLarge enqueue")).toBe(true)
          expect(await s.queueDepth("q")).toBe(qOk)
          for (const i of range(10)) await s.enqueue("qb", entry(`m${i}`, now, item), 3)
          expect(await other.queueDepth("qb")).toBe(3)
        })
      )
    )
  })

const viaStore = (kind: SubjectKind) =>
  describe(`chat adapter, mixed (store option): ${kind.name}`, () => {
    it.scopedLive("an enqueue on a partly dequeued queue, from another connection and later, neither brings back the dequeued entry nor loses the queued one", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        await state.enqueue("q", entry("old1", clock.now()), 10)
        await state.enqueue("q", entry("old2", clock.now()), 10)
        expect(((await other.dequeue("q"))?.message as { id?: string } | undefined)?.id).toBe("old1")
        clock.advance(30_000)
        await other.enqueue("q", entry("new", clock.now()), 10)
        const ids: Array<string> = []
        for (;;) {
          const e = await state.dequeue("q")
          if (e === null) break
          ids.push((e.message as { id: string }).id)
        }
        expect(ids).toEqual(["old2", "new"])
      })
    )
  })

for (const kind of ours) viaStore(kind)
