/**
 * The Chat SDK memory adapter's published behaviours (`@chat-adapter/state-memory`'s test
 * cases), in our own words, run on that adapter itself (the reference) and on ours over SQLite
 * and PostgreSQL: every case must answer the same on all of them. Time is a clock the test
 * moves (the reference's `Date.now`, our adapter's `now`), never a sleep. Where the memory
 * adapter forgets on `disconnect()` and ours keeps (the point of a durable adapter), the case
 * says so and checks each side.
 */
import { describe, expect, it } from "@effect/vitest"
import { createMemoryState } from "@chat-adapter/state-memory"
import type { QueueEntry } from "chat"
import { createChatState } from "../src/chat-sdk/index.js"
import { idOf, memoryReference, ours, type SubjectKind, withSubject } from "./support/chatState.js"

const entry = (id: string, enqueuedAt: number, now: number): QueueEntry => ({ message: { id } as never, enqueuedAt, expiresAt: now + 90_000 })

const behaviours = (kind: SubjectKind) =>
  describe(`Chat SDK state behaviours: ${kind.name}`, () => {
    describe("subscriptions", () => {
      it.scopedLive("a subscribed thread is subscribed; an unsubscribed one is not", () =>
        withSubject(kind, async ({ state }) => {
          expect(await state.isSubscribed("slack:C123:1234.5678")).toBe(false)
          await state.subscribe("slack:C123:1234.5678")
          expect(await state.isSubscribed("slack:C123:1234.5678")).toBe(true)
          await state.unsubscribe("slack:C123:1234.5678")
          expect(await state.isSubscribed("slack:C123:1234.5678")).toBe(false)
        })
      )
    })

    describe("locks", () => {
      it.scopedLive("a lock names its thread and carries a token; a second acquire of a held lock is null", () =>
        withSubject(kind, async ({ state, clock }) => {
          const lock = await state.acquireLock("thread1", 5000)
          expect(lock?.threadId).toBe("thread1")
          expect(lock?.token).toBeTruthy()
          expect(lock?.expiresAt).toBe(clock.now() + 5000)
          expect(await state.acquireLock("thread1", 5000)).toBeNull()
        })
      )

      it.scopedLive("a released lock can be acquired again; a release with another token releases nothing", () =>
        withSubject(kind, async ({ state, clock }) => {
          const lock = (await state.acquireLock("thread1", 5000))!
          await state.releaseLock({ threadId: "thread1", token: "fake-token", expiresAt: clock.now() + 5000 })
          expect(await state.acquireLock("thread1", 5000)).toBeNull()
          await state.releaseLock(lock)
          const again = await state.acquireLock("thread1", 5000)
          expect(again).not.toBeNull()
          expect(again?.token).not.toBe(lock.token)
        })
      )

      it.scopedLive("an expired lock can be taken by someone else, with a new token; the expired one cannot be extended", () =>
        withSubject(kind, async ({ state, clock }) => {
          const first = (await state.acquireLock("thread1", 10))!
          clock.advance(20)
          expect(await state.extendLock(first, 5000)).toBe(false)
          const second = await state.acquireLock("thread1", 5000)
          expect(second).not.toBeNull()
          expect(second?.token).not.toBe(first.token)
        })
      )

      it.scopedLive("an extended lock stays held past its first TTL", () =>
        withSubject(kind, async ({ state, clock }) => {
          const lock = (await state.acquireLock("thread1", 100))!
          expect(await state.extendLock(lock, 5000)).toBe(true)
          clock.advance(200)
          expect(await state.acquireLock("thread1", 5000)).toBeNull()
          clock.advance(5000)
          expect(await state.acquireLock("thread1", 5000)).not.toBeNull()
        })
      )

      it.scopedLive("force-release frees a lock whatever its token, and is a no-op on a thread with no lock", () =>
        withSubject(kind, async ({ state }) => {
          const lock = (await state.acquireLock("thread1", 5000))!
          await state.forceReleaseLock("thread1")
          const next = await state.acquireLock("thread1", 5000)
          expect(next?.token).not.toBe(lock.token)
          await expect(state.forceReleaseLock("nonexistent")).resolves.toBeUndefined()
        })
      )
    })

    describe("setIfNotExists", () => {
      it.scopedLive("sets an absent key, never overwrites a live one", () =>
        withSubject(kind, async ({ state }) => {
          expect(await state.setIfNotExists("key1", "first")).toBe(true)
          expect(await state.setIfNotExists("key1", "second")).toBe(false)
          expect(await state.get("key1")).toBe("first")
        })
      )

      it.scopedLive("an expired key counts as absent; the TTL applies to the value it set", () =>
        withSubject(kind, async ({ state, clock }) => {
          await state.setIfNotExists("key1", "first", 10)
          clock.advance(20)
          expect(await state.get("key1")).toBeNull()
          expect(await state.setIfNotExists("key1", "second", 10)).toBe(true)
          expect(await state.get("key1")).toBe("second")
          clock.advance(20)
          expect(await state.get("key1")).toBeNull()
        })
      )
    })

    describe("get / set / delete", () => {
      it.scopedLive("a set value is read back until its TTL passes or it is deleted; a missing key is null", () =>
        withSubject(kind, async ({ state, clock }) => {
          expect(await state.get("missing")).toBeNull()
          await state.set("kept", { a: [1, 2] })
          await state.set("short", "v", 50)
          expect(await state.get("kept")).toEqual({ a: [1, 2] })
          expect(await state.get("short")).toBe("v")
          clock.advance(60)
          expect(await state.get("short")).toBeNull()
          await state.delete("kept")
          expect(await state.get("kept")).toBeNull()
        })
      )
    })

    describe("appendToList / getList", () => {
      it.scopedLive("items come back in the order appended; a missing list is empty; lists are apart by key", () =>
        withSubject(kind, async ({ state }) => {
          await state.appendToList("list1", { id: 1 })
          await state.appendToList("list1", { id: 2 })
          await state.appendToList("list-b", "b")
          expect(await state.getList("list1")).toEqual([{ id: 1 }, { id: 2 }])
          expect(await state.getList("list-b")).toEqual(["b"])
          expect(await state.getList("nonexistent")).toEqual([])
        })
      )

      it.scopedLive("maxLength keeps the newest items", () =>
        withSubject(kind, async ({ state }) => {
          for (let i = 1; i <= 5; i++) await state.appendToList("list1", { id: i }, { maxLength: 3 })
          expect(await state.getList("list1")).toEqual([{ id: 3 }, { id: 4 }, { id: 5 }])
        })
      )

      it.scopedLive("a list expires with its TTL, and an append after that starts a fresh list", () =>
        withSubject(kind, async ({ state, clock }) => {
          await state.appendToList("list1", { id: 1 }, { ttlMs: 10 })
          clock.advance(20)
          expect(await state.getList("list1")).toEqual([])
          await state.appendToList("list1", { id: 2 })
          expect(await state.getList("list1")).toEqual([{ id: 2 }])
        })
      )

      it.scopedLive("each append refreshes the whole list's TTL", () =>
        withSubject(kind, async ({ state, clock }) => {
          await state.appendToList("list1", { id: 1 }, { ttlMs: 50 })
          clock.advance(30)
          await state.appendToList("list1", { id: 2 }, { ttlMs: 50 })
          clock.advance(30)
          expect(await state.getList("list1")).toEqual([{ id: 1 }, { id: 2 }])
          clock.advance(30)
          expect(await state.getList("list1")).toEqual([])
        })
      )
    })

    describe("enqueue / dequeue / queueDepth", () => {
      it.scopedLive("one entry in, the same entry out, depth 1 then nothing", () =>
        withSubject(kind, async ({ state, clock }) => {
          const queued = { message: { id: "m1", text: "hello" } as never, enqueuedAt: clock.now(), expiresAt: clock.now() + 90_000 }
          expect(await state.enqueue("thread1", queued, 10)).toBe(1)
          expect(await state.dequeue("thread1")).toEqual(queued)
          expect(await state.dequeue("thread1")).toBeNull()
        })
      )

      it.scopedLive("an empty or unknown queue dequeues null and has depth 0", () =>
        withSubject(kind, async ({ state }) => {
          expect(await state.dequeue("thread1")).toBeNull()
          expect(await state.dequeue("nonexistent")).toBeNull()
          expect(await state.queueDepth("thread1")).toBe(0)
        })
      )

      it.scopedLive("entries leave in the order they came", () =>
        withSubject(kind, async ({ state, clock }) => {
          for (const [i, id] of ["m1", "m2", "m3"].entries()) await state.enqueue("thread1", entry(id, (i + 1) * 1000, clock.now()), 10)
          expect(await state.queueDepth("thread1")).toBe(3)
          expect([idOf(await state.dequeue("thread1")), idOf(await state.dequeue("thread1")), idOf(await state.dequeue("thread1"))]).toEqual(["m1", "m2", "m3"])
          expect(await state.dequeue("thread1")).toBeNull()
          expect(await state.queueDepth("thread1")).toBe(0)
        })
      )

      it.scopedLive("maxSize keeps the newest entries; maxSize 1 keeps only the last (debounce)", () =>
        withSubject(kind, async ({ state, clock }) => {
          const depths: Array<number> = []
          for (let i = 1; i <= 5; i++) depths.push(await state.enqueue("thread1", entry(`m${i}`, i * 1000, clock.now()), 3))
          expect(depths).toEqual([1, 2, 3, 3, 3])
          expect([idOf(await state.dequeue("thread1")), idOf(await state.dequeue("thread1")), idOf(await state.dequeue("thread1"))]).toEqual(["m3", "m4", "m5"])
          for (let i = 1; i <= 3; i++) await state.enqueue("debounced", entry(`m${i}`, i * 1000, clock.now()), 1)
          expect(await state.queueDepth("debounced")).toBe(1)
          expect(idOf(await state.dequeue("debounced"))).toBe("m3")
        })
      )

      it.scopedLive("queues are apart by thread", () =>
        withSubject(kind, async ({ state, clock }) => {
          await state.enqueue("thread-a", entry("a1", 1000, clock.now()), 10)
          await state.enqueue("thread-b", entry("b1", 1000, clock.now()), 10)
          expect([await state.queueDepth("thread-a"), await state.queueDepth("thread-b")]).toEqual([1, 1])
          expect([idOf(await state.dequeue("thread-a")), idOf(await state.dequeue("thread-b"))]).toEqual(["a1", "b1"])
        })
      )
    })

    describe("connection", () => {
      it.scopedLive("a member called before connect() rejects, saying it is not connected", () =>
        withSubject(kind, async () => {
          const fresh = kind === memoryReference ? createMemoryState() : createChatState({ sqlitePath: "/nonexistent/never-opened.sqlite" })
          await expect(fresh.subscribe("test")).rejects.toThrow("not connected")
        })
      )

      it.scopedLive(
        kind.durable
          ? "disconnect() then connect() keeps subscriptions, locks and queues (the memory adapter clears them: ours is durable)"
          : "disconnect() then connect() clears subscriptions, locks and queues (the memory adapter is not durable)",
        () =>
          withSubject(kind, async ({ state, clock }) => {
            await state.subscribe("thread1")
            await state.acquireLock("thread1", 5000)
            await state.enqueue("thread1", entry("m1", 1000, clock.now()), 10)
            await state.disconnect()
            await state.connect()
            expect(await state.isSubscribed("thread1")).toBe(kind.durable)
            expect(await state.acquireLock("thread1", 5000) === null).toBe(kind.durable)
            expect(await state.queueDepth("thread1")).toBe(kind.durable ? 1 : 0)
            expect(idOf(await state.dequeue("thread1"))).toBe(kind.durable ? "m1" : null)
          })
      )
    })
  })

for (const kind of [memoryReference, ...ours]) behaviours(kind)
