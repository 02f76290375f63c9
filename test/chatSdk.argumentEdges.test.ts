/**
 * Attacks on argument handling and TTL edges: every member rejects (never throws
 * synchronously) with a ChatStateError, a bad argument rejects InvalidArgument and leaves
 * what is stored intact, and TTLs of 0 / undefined / null / -0 never expire while fractional
 * ones are never shorter than asked and the largest accepted one is usable.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Lock, StateAdapter } from "chat"
import { ChatStateError } from "../src/chat-sdk/index.js"
import { MAX_TTL_MS } from "../src/chat-sdk/arguments.js"
import { MAX_EPOCH_MILLIS } from "../src/layers/store/storeRules.js"
import { entry, idOf, ours, type SubjectKind, withSubject } from "./support/chatState.js"

const outcome = (call: () => Promise<unknown>): Promise<string> => {
  let p: Promise<unknown>
  try {
    p = call()
  } catch (error) {
    return Promise.resolve(`threw synchronously: ${String(error)}`)
  }
  if (!(p instanceof Promise)) return Promise.resolve("not a promise")
  return p.then(
    () => "ok",
    (e: unknown) => (e instanceof ChatStateError ? `${e.reason} ${e.operation}` : `not a ChatStateError: ${String(e)}`)
  )
}
const throwing = new Proxy({}, { get: () => { throw new Error("boom getter") }, has: () => { throw new Error("boom has") } })

const attacks = (kind: SubjectKind) =>
  describe(`chat adapter, arguments and TTLs: ${kind.name}`, () => {
    it.scopedLive("no-expiry TTLs (0, -0, undefined, null) never expire, across set, setIfNotExists and appendToList", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const ttls = [0, -0, undefined, null]
        for (const [i, ttl] of ttls.entries()) {
          await state.set(`s${i}`, i, ttl as never)
          expect(await state.setIfNotExists(`n${i}`, i, ttl as never)).toBe(true)
          await state.appendToList(`l${i}`, i, { ttlMs: ttl as never })
        }
        clock.advance(1_000_000_000_000) // ~31 years
        for (const [i] of ttls.entries()) {
          expect(await other.get(`s${i}`)).toBe(i)
          expect(await other.setIfNotExists(`n${i}`, "again")).toBe(false)
          expect(await other.getList(`l${i}`)).toEqual([i])
        }
      })
    )

    it.scopedLive("a fractional TTL is never shorter than asked (rounded up), and a tiny positive one still expires", () =>
      withSubject(kind, async ({ state, clock }) => {
        await state.set("frac", "v", 1.2)
        await state.set("tiny", "v", Number.MIN_VALUE)
        expect(await state.setIfNotExists("fracNx", "v", 0.4)).toBe(true)
        const lock = (await state.acquireLock("fracLock", 1.5))!
        expect(await state.get("frac")).toBe("v")
        clock.advance(1)
        expect(await state.get("frac")).toBe("v") // 1.2 ms has not passed
        expect(await state.get("tiny")).toBeNull()
        expect(await state.setIfNotExists("fracNx", "w", 1000)).toBe(true)
        expect(lock.expiresAt).toBeGreaterThanOrEqual(clock.now())
        clock.advance(1)
        expect(await state.get("frac")).toBeNull()
      })
    )

    it.scopedLive("the largest accepted TTL is usable on every member that takes one; one past it is InvalidArgument and changes nothing", () =>
      withSubject(kind, async ({ state, clock }) => {
        await state.set("big", "v", MAX_TTL_MS)
        expect(await state.setIfNotExists("bigNx", "v", MAX_TTL_MS)).toBe(true)
        await state.appendToList("bigList", 1, { ttlMs: MAX_TTL_MS })
        const lock = (await state.acquireLock("bigLock", MAX_TTL_MS))!
        expect(lock).not.toBeNull()
        expect(await state.extendLock(lock, MAX_TTL_MS)).toBe(true)
        expect(await state.enqueue("bigQ", { message: { id: "far" } as never, enqueuedAt: clock.now(), expiresAt: MAX_EPOCH_MILLIS }, 10)).toBe(1)
        expect(await state.enqueue("bigQ", entry("near", clock.now()), 10)).toBe(2)
        expect(idOf(await state.dequeue("bigQ"))).toBe("far")
        for (const bad of [MAX_TTL_MS + 1, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, -0.5, Number.NaN, "1000", true, {}]) {
          expect(await outcome(() => state.set("big", "changed", bad as never))).toBe("InvalidArgument set")
          expect(await outcome(() => state.setIfNotExists("fresh", "x", bad as never))).toBe("InvalidArgument setIfNotExists")
          expect(await outcome(() => state.appendToList("bigList", 2, { ttlMs: bad as never }))).toBe("InvalidArgument appendToList")
          expect(await outcome(() => state.extendLock(lock, bad as never))).toBe("InvalidArgument extendLock")
          expect(await outcome(() => state.acquireLock("freshLock", bad as never))).toBe("InvalidArgument acquireLock")
        }
        clock.advance(365 * 24 * 3600 * 1000)
        expect(await state.get("big")).toBe("v")
        expect(await state.get("fresh")).toBeNull()
        expect(await state.getList("bigList")).toEqual([1])
        expect(await state.acquireLock("bigLock", 1000)).toBeNull()
        expect(await state.acquireLock("freshLock", 1000)).not.toBeNull()
      })
    )

    it.scopedLive("bad maxLength / maxSize / lock / entry arguments reject InvalidArgument and leave lists, queues and locks as they were", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        for (const i of [1, 2, 3]) await state.appendToList("list", i, { maxLength: 5 })
        for (const i of [1, 2, 3]) await state.enqueue("q", entry(`m${i}`, clock.now()), 5)
        const lock = (await state.acquireLock("t", 30_000))!
        const badLengths = [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "2", 2n, {}, true, 2 ** 53]
        for (const bad of badLengths) {
          expect(await outcome(() => state.appendToList("list", "bad", { maxLength: bad as never }))).toBe("InvalidArgument appendToList")
          expect(await outcome(() => state.enqueue("q", entry("bad", clock.now()), bad as never))).toBe("InvalidArgument enqueue")
        }
        for (const bad of [0, -0, undefined, null]) expect(await outcome(() => state.enqueue("q", entry("bad", clock.now()), bad as never))).toBe("InvalidArgument enqueue")
        const badEntries = [null, undefined, 5, "e", [], { expiresAt: -1 }, { expiresAt: Number.NaN }, { expiresAt: MAX_EPOCH_MILLIS + 1 }, { expiresAt: "1" }, { message: {} }]
        for (const bad of badEntries) expect(await outcome(() => state.enqueue("q", bad as never, 5))).toBe("InvalidArgument enqueue")
        const badLocks = [null, undefined, "t", {}, { threadId: "t" }, { threadId: "t", token: "" }, { threadId: 1, token: lock.token }, { token: lock.token }, [lock]]
        for (const bad of badLocks) {
          expect(await outcome(() => state.releaseLock(bad as never))).toBe("InvalidArgument releaseLock")
          expect(await outcome(() => state.extendLock(bad as never, 1000))).toBe("InvalidArgument extendLock")
        }
        expect(await other.getList("list")).toEqual([1, 2, 3])
        expect(await other.queueDepth("q")).toBe(3)
        expect(await other.acquireLock("t", 1000)).toBeNull()
        expect(await state.extendLock(lock, 1000)).toBe(true)
      })
    )

    it.scopedLive("hostile arguments (throwing getters, throwing toJSON, symbols, proxies) reject with a ChatStateError, never throw synchronously, and write nothing", () =>
      withSubject(kind, async ({ state, clock }) => {
        await state.set("k", "before")
        const badJson = { toJSON: () => { throw new Error("no json") } }
        const calls: Record<string, () => Promise<unknown>> = {
          get: () => state.get(Symbol("k") as never),
          set: () => state.set("k", badJson),
          setProxy: () => state.set("k", throwing),
          setIfNotExists: () => state.setIfNotExists("k2", badJson),
          delete: () => state.delete(throwing as never),
          subscribe: () => state.subscribe(throwing as never),
          unsubscribe: () => state.unsubscribe(123 as never),
          isSubscribed: () => state.isSubscribed(null as never),
          acquireLock: () => state.acquireLock("t", throwing as never),
          releaseLock: () => state.releaseLock(throwing as never),
          extendLock: () => state.extendLock(throwing as never, 1000),
          forceReleaseLock: () => state.forceReleaseLock(undefined as never),
          appendToList: () => state.appendToList("l", 1, throwing as never),
          appendToListValue: () => state.appendToList("l", badJson),
          getList: () => state.getList([] as never),
          enqueue: () => state.enqueue("q", throwing as never, 10),
          enqueueMsg: () => state.enqueue("q", { message: badJson as never, enqueuedAt: 0, expiresAt: clock.now() + 1000 }, 10),
          dequeue: () => state.dequeue({} as never),
          queueDepth: () => state.queueDepth(1n as never)
        }
        const results: Record<string, string> = {}
        for (const [name, call] of Object.entries(calls)) results[name] = await outcome(call)
        for (const [name, result] of Object.entries(results)) {
          expect(result, name).toMatch(/^(InvalidArgument|InvalidValue) /)
        }
        expect(await state.get("k")).toBe("before")
        expect(await state.get("k2")).toBeNull()
        expect(await state.getList("l")).toEqual([])
        expect(await state.queueDepth("q")).toBe(0)
      })
    )

    it.scopedLive("members detached from the adapter (no this) still work", () =>
      withSubject(kind, async ({ state }) => {
        const { set, get, acquireLock, releaseLock } = state as StateAdapter
        await set("k", 1)
        expect(await get("k")).toBe(1)
        const lock = (await acquireLock("t", 1000)) as Lock
        await releaseLock(lock)
        expect(await acquireLock("t", 1000)).not.toBeNull()
      })
    )
  })

for (const kind of ours) attacks(kind)
