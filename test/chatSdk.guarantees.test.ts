/**
 * Attacks on what the Chat SDK adapter promises beyond the reference cases, in one process
 * with two adapters on one database (two connections: as far as the store can tell, two
 * processes), on SQLite and PostgreSQL: concurrent callers of every atomic member, a lock that
 * expires while its holder is still working (the test's clock moves), a bad argument among
 * good ones, values of several MiB, thread ids past the key limit, calls in flight at
 * disconnect, and options that cannot be used. The cross-process cases with real OS processes
 * are in chatSdk.processes.test.ts.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import type { StateAdapter } from "chat"
import { createChatState } from "../src/chat-sdk/index.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import { entry, idOf, manualClock, ours, reasonOf, type SubjectKind, withSubject } from "./support/chatState.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
/** `n` calls of `f`, alternating between the two adapters, all started at once. */
const race = <R>(a: StateAdapter, b: StateAdapter, n: number, f: (state: StateAdapter, i: number) => Promise<R>) => Promise.all(range(n).map((i) => f(i % 2 === 0 ? a : b, i)))

const guarantees = (kind: SubjectKind) =>
  describe(`Chat SDK state guarantees: ${kind.name}`, () => {
    it.scopedLive("setIfNotExists: exactly one of 40 concurrent callers on two connections wins, and again exactly one once the winner's row expired", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const first = await race(state, other, 40, (s, i) => s.setIfNotExists("dedupe:slack:m1", { by: i }, 1000))
        expect(first.filter(Boolean)).toHaveLength(1)
        const winner = first.indexOf(true)
        expect(await other.get("dedupe:slack:m1")).toEqual({ by: winner })
        clock.advance(1500)
        const second = await race(state, other, 40, (s, i) => s.setIfNotExists("dedupe:slack:m1", { by: 100 + i }, 1000))
        expect(second.filter(Boolean)).toHaveLength(1)
        expect(await state.get("dedupe:slack:m1")).toEqual({ by: 100 + second.indexOf(true) })
      })
    )

    it.scopedLive("acquireLock: exactly one of 40 concurrent callers on two connections gets the lock, with a token no one else got", () =>
      withSubject(kind, async ({ state, another }) => {
        const other = await another()
        const locks = await race(state, other, 40, (s) => s.acquireLock("slack:C1:1.1", 30_000))
        const held = locks.filter((lock) => lock !== null)
        expect(held).toHaveLength(1)
        await other.releaseLock(held[0]!)
        expect((await race(state, other, 40, (s) => s.acquireLock("slack:C1:1.1", 30_000))).filter((lock) => lock !== null)).toHaveLength(1)
      })
    )

    it.scopedLive("a lock that expired while its holder worked: the holder's extend and release never touch the next holder's lock, nor create one", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const stale = (await state.acquireLock("thread", 1000))!
        clock.advance(1500) // the holder is still working; its lock lapsed
        const next = (await other.acquireLock("thread", 1000))!
        expect(next).not.toBeNull()
        expect(await state.extendLock(stale, 60_000)).toBe(false)
        await state.releaseLock(stale)
        expect(await state.acquireLock("thread", 1000)).toBeNull() // the next holder's lock stands
        expect(await other.extendLock(next, 60_000)).toBe(true)
        clock.advance(30_000)
        expect(await state.acquireLock("thread", 1000)).toBeNull() // extended past its first TTL
        await other.releaseLock(next)
        // Free now: the stale holder's extend must not create (resurrect) a lock.
        expect(await state.extendLock(stale, 60_000)).toBe(false)
        expect(await other.acquireLock("thread", 1000)).not.toBeNull()
      })
    )

    it.scopedLive("appendToList: 60 concurrent appends on two connections each land exactly once; with maxLength 10 the list never holds more, and trimmed items never come back when a later append refreshes the TTL", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        await race(state, other, 60, (s, i) => s.appendToList("all", i))
        expect([...(await state.getList<number>("all"))].sort((x, y) => x - y)).toEqual(range(60))
        await race(state, other, 60, (s, i) => s.appendToList("bounded", i, { maxLength: 10, ttlMs: 1000 }))
        const bounded = await other.getList<number>("bounded")
        expect(bounded).toHaveLength(10)
        expect(new Set(bounded).size).toBe(10)
        clock.advance(900)
        await state.appendToList("bounded", 1000, { maxLength: 10, ttlMs: 1000 })
        clock.advance(900) // past the first appends' TTL, within the refreshed one
        const refreshed = await other.getList<number>("bounded")
        expect(refreshed).toEqual([...bounded.slice(1), 1000])
      })
    )

    it.scopedLive("enqueue/dequeue: 40 concurrent enqueues then 50 concurrent dequeues on two connections hand each entry to exactly one caller; concurrent enqueues never leave more than maxSize", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const depths = await race(state, other, 40, (s, i) => s.enqueue("thread", entry(`m${i}`, clock.now()), 1000))
        expect([...depths].sort((x, y) => x - y)).toEqual(range(40).map((i) => i + 1))
        const got = await race(state, other, 50, (s) => s.dequeue("thread"))
        const ids = got.map(idOf).filter((id) => id !== null)
        expect([...ids].sort()).toEqual(range(40).map((i) => `m${i}`).sort())
        expect(await state.queueDepth("thread")).toBe(0)
        const bounded = await race(state, other, 30, (s, i) => s.enqueue("bounded", entry(`b${i}`, clock.now()), 5))
        expect(Math.max(...bounded)).toBeLessThanOrEqual(5)
        expect(await other.queueDepth("bounded")).toBe(5)
      })
    )

    it.scopedLive("dequeue is oldest first whichever connection asks", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        for (const i of range(10)) await (i % 3 === 0 ? other : state).enqueue("thread", entry(`m${i}`, clock.now()), 100)
        const order: Array<string | null> = []
        for (const i of range(10)) order.push(idOf(await (i % 2 === 0 ? state : other).dequeue("thread")))
        expect(order).toEqual(range(10).map((i) => `m${i}`))
      })
    )

    it.scopedLive("values of several MiB round-trip; one past maxValueBytes rejects with TooLarge and the value before it stays", () =>
      withSubject(kind, async ({ state }) => {
        const big = { messages: range(4096).map((i) => ({ id: `m${i}`, text: "é".repeat(512) })) } // ≈ 4.3 MiB of JSON
        await state.set("thread-state:slack:C1:1.1", big)
        expect(await state.get("thread-state:slack:C1:1.1")).toEqual(big)
        await state.appendToList("history", big.messages[0], { maxLength: 100 })
        const tooBig = "x".repeat(9 * 1024 * 1024)
        const refused = await state.set("thread-state:slack:C1:1.1", tooBig).catch((error: unknown) => error)
        expect(reasonOf(refused)).toBe("TooLarge set")
        expect(await state.get("thread-state:slack:C1:1.1")).toEqual(big)
        expect(reasonOf(await state.appendToList("history", tooBig).catch((error: unknown) => error))).toBe("TooLarge appendToList")
        expect(await state.getList("history")).toEqual([big.messages[0]])
      })
    )

    it.scopedLive("thread ids and keys of any length and content: past the 512-byte key limit, differing only at the end, empty, with NUL or lone surrogates — each its own row", () =>
      withSubject(kind, async ({ state, clock }) => {
        const teams = `msteams:${"19:meeting_".padEnd(700, "Zm9vYmFy")}`
        const ids = [teams, `${teams}x`, `${teams}y`, "", "a\u0000b", "a\uD800b", "a\uDC00b", "=literal", "#0000"]
        for (const [i, id] of ids.entries()) {
          await state.subscribe(id)
          await state.set(id, i)
          await state.appendToList(id, i)
          await state.enqueue(id, entry(`m${i}`, clock.now()), 10)
          expect(await state.acquireLock(id, 5000)).not.toBeNull()
        }
        for (const [i, id] of ids.entries()) {
          expect(await state.isSubscribed(id)).toBe(true)
          expect(await state.get(id)).toBe(i)
          expect(await state.getList(id)).toEqual([i])
          expect(idOf(await state.dequeue(id))).toBe(`m${i}`)
          expect(await state.acquireLock(id, 5000)).toBeNull()
        }
        await state.unsubscribe(`${teams}x`)
        expect([await state.isSubscribed(teams), await state.isSubscribed(`${teams}x`), await state.isSubscribed(`${teams}y`)]).toEqual([true, false, true])
      })
    )

    it.scopedLive("a bad argument among good calls rejects alone with a ChatStateError naming it; the good calls land and nothing stored is lost", () =>
      withSubject(kind, async ({ state, clock }) => {
        await state.set("kept", "before")
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const calls: ReadonlyArray<readonly [string, () => Promise<unknown>]> = [
          ["good set", () => state.set("a", 1)],
          ["InvalidValue set", () => state.set("kept", cyclic)],
          ["InvalidValue set", () => state.set("kept", 10n)],
          ["InvalidValue set", () => state.set("kept", undefined)],
          ["InvalidArgument set", () => state.set("kept", "after", -5)],
          ["InvalidArgument get", () => state.get(42 as never)],
          ["good append", () => state.appendToList("list", "x", { maxLength: 2 })],
          ["InvalidArgument appendToList", () => state.appendToList("list", "y", { maxLength: 2.5 })],
          ["InvalidArgument acquireLock", () => state.acquireLock("thread", 0)],
          ["InvalidArgument acquireLock", () => state.acquireLock("thread", Number.NaN)],
          ["good lock", () => state.acquireLock("thread", 5000)],
          ["InvalidArgument releaseLock", () => state.releaseLock(null as never)],
          ["InvalidArgument extendLock", () => state.extendLock({ threadId: "thread", token: "" } as never, 5000)],
          ["InvalidArgument enqueue", () => state.enqueue("thread", { message: {} } as never, 10)],
          ["InvalidArgument enqueue", () => state.enqueue("thread", entry("m", clock.now()), 0)],
          ["good enqueue", () => state.enqueue("thread", entry("m", clock.now()), 10)],
          ["InvalidArgument subscribe", () => state.subscribe(undefined as never)]
        ]
        const settled = await Promise.allSettled(calls.map(([, call]) => call()))
        const outcomes = settled.map((result) => (result.status === "fulfilled" ? "good" : reasonOf(result.reason)))
        expect(outcomes).toEqual(calls.map(([name]) => (name.startsWith("good") ? "good" : name)))
        for (const result of settled) if (result.status === "rejected") expect((result.reason as Error).message.length).toBeGreaterThan(20)
        expect(await state.get("kept")).toBe("before")
        expect(await state.get("a")).toBe(1)
        expect(await state.getList("list")).toEqual(["x"])
        expect(await state.queueDepth("thread")).toBe(1)
        expect(await state.acquireLock("thread", 5000)).toBeNull()
      })
    )

    it.scopedLive("disconnect() waits for the calls in flight: every write started before it lands, calls after it reject NotConnected, connect() again sees them", () =>
      withSubject(kind, async ({ state }) => {
        const writes = range(30).map((i) => state.set(`k${i}`, i))
        const closing = state.disconnect()
        const late = await state.get("k0").catch((error: unknown) => error)
        await Promise.all(writes)
        await closing
        expect(reasonOf(late)).toBe("NotConnected get")
        await state.connect()
        expect(await Promise.all(range(30).map((i) => state.get(`k${i}`)))).toEqual(range(30))
      })
    )
  })

for (const kind of ours) guarantees(kind)

describe("Chat SDK state: options", () => {
  const reject = (state: StateAdapter) => state.connect().then(() => "connected", reasonOf)

  it("a SQLite path under a file, an empty path, an empty pgUrl or a bad owner make connect() reject with what is wrong; members then reject NotConnected", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-chat-"))
    try {
      fs.writeFileSync(path.join(dir, "file"), "")
      const underFile = createChatState({ sqlitePath: path.join(dir, "file", "state.sqlite") })
      expect(await reject(underFile)).toBe("OpenFailed connect")
      expect(reasonOf(await underFile.get("k").catch((error: unknown) => error))).toBe("NotConnected get")
      expect(await reject(createChatState({ sqlitePath: "" }))).toBe("InvalidArgument connect")
      expect(await reject(createChatState({ pgUrl: "" }))).toBe("InvalidArgument connect")
      expect(await reject(createChatState({ sqlitePath: path.join(dir, "ok.sqlite"), owner: "Not An Owner!" }))).toBe("InvalidArgument connect")
      expect(await reject(createChatState(null as never))).toBe("InvalidArgument connect")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("two owners on one database share nothing: each sees only its own subscriptions, cache, locks, lists and queues", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-chat-"))
    const sqlitePath = path.join(dir, "shared.sqlite")
    const [a, b] = [createChatState({ sqlitePath, owner: "bot-a" }), createChatState({ sqlitePath, owner: "bot-b" })]
    try {
      await a.connect()
      await b.connect()
      await a.subscribe("t")
      await a.set("k", "a's")
      await a.appendToList("l", 1)
      await a.enqueue("t", entry("m", Date.now()), 10)
      expect(await a.acquireLock("t", 60_000)).not.toBeNull()
      expect([await b.isSubscribed("t"), await b.get("k"), await b.getList("l"), await b.queueDepth("t")]).toEqual([false, null, [], 0])
      expect(await b.acquireLock("t", 60_000)).not.toBeNull()
      expect([await a.isSubscribed("t"), await a.get("k"), await a.getList("l"), await a.queueDepth("t")]).toEqual([true, "a's", [1], 1])
    } finally {
      await a.disconnect()
      await b.disconnect()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("disconnect() while connect() is still opening: the opening and the calls made meanwhile complete, then it closes; connect() again sees them", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-chat-"))
    const state = createChatState({ sqlitePath: path.join(dir, "state.sqlite") })
    try {
      const opening = state.connect()
      const writes = range(10).map((i) => state.set(`k${i}`, i))
      await state.disconnect()
      await opening
      await Promise.all(writes)
      expect(reasonOf(await state.get("k0").catch((error: unknown) => error))).toBe("NotConnected get")
      await state.connect()
      expect(await Promise.all(range(10).map((i) => state.get(`k${i}`)))).toEqual(range(10))
      await state.disconnect()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("the store option takes a memory store for tests (a fresh one per connect) with a clock the test moves", async () => {
    const clock = manualClock()
    const state = createChatState({ store: MemoryStore.layer(), now: clock.now })
    await state.connect()
    expect(await state.setIfNotExists("k", 1, 1000)).toBe(true)
    expect(await state.setIfNotExists("k", 2, 1000)).toBe(false)
    clock.advance(1000)
    expect(await state.setIfNotExists("k", 3, 1000)).toBe(true)
    await state.disconnect()
    await state.connect()
    expect(await state.get("k")).toBeNull()
    await state.disconnect()
  })

  it("a PostgreSQL server that is not there (a closed port) makes connect() reject with Unavailable", async () => {
    expect(await reject(createChatState({ pgUrl: "postgres://postgres@127.0.0.1:1/none" }))).toBe("Unavailable connect")
  })
})
