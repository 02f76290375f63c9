/**
 * OpenClaw's documented plugin-state behaviours, in our own words, each case named after the
 * behaviour, run through `channel-state/openclaw` on memory (the reference), SQLite and
 * PostgreSQL. Real time: TTL cases wait past a short TTL (they never assert how long anything
 * took).
 */
import * as vm from "node:vm"
import { describe, expect, it } from "@effect/vitest"
import type { PluginStateKeyedStore } from "../src/openclaw/index.js"
import { stateOn, withState } from "./support/openclawState.js"
import { type BackendFactory, backends } from "./support/backends.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const keysOf = (entries: ReadonlyArray<{ key: string }>) => entries.map((e) => e.key)
const rejection = (code: string, operation: string) => ({ name: "PluginStateStoreError", code: `PLUGIN_STATE_${code}`, operation })

const behaviours = (backend: BackendFactory) =>
  describe(`OpenClaw plugin-state behaviours: ${backend.name}`, () => {
    it.scopedLive("an entry is read back; registering again replaces its value and moves it last; an entry without TTL has no expiresAt", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<{ version: number }>({ namespace: "sessions", maxEntries: 10 })
        await store.register("b", { version: 1 })
        await sleep(5)
        await store.register("a", { version: 1 })
        await sleep(5)
        await store.register("b", { version: 2 })
        expect(await store.lookup("b")).toEqual({ version: 2 })
        const entries = await store.entries()
        expect(entries.map((e) => [e.key, e.value])).toEqual([
          ["a", { version: 1 }],
          ["b", { version: 2 }]
        ])
        expect(entries[0]!.createdAt).toBeLessThan(entries[1]!.createdAt)
        expect("expiresAt" in entries[0]!).toBe(false)
        expect(await store.lookup("missing")).toBeUndefined()
        expect(await store.count()).toBe(2)
      })
    )

    it.scopedLive("registering refreshes the TTL; an entry past its TTL is gone from every read; registering without a TTL clears it", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<number>({ namespace: "ttl", maxEntries: 10, defaultTtlMs: 400 })
        await store.register("session", 1)
        await store.register("override", 2, { ttlMs: 60_000 })
        const session = (await store.entries()).find((e) => e.key === "session")
        expect(session!.expiresAt! - session!.createdAt).toBe(400)
        await sleep(600)
        expect(await store.lookup("session")).toBeUndefined()
        expect(await store.consume("session")).toBeUndefined()
        expect(keysOf(await store.entries())).toEqual(["override"])
        expect(await store.count()).toBe(1)
        const plain = state.openKeyedStore<number>({ namespace: "plain", maxEntries: 10 })
        await plain.register("k", 1, { ttlMs: 60_000 })
        await plain.register("k", 2)
        expect((await plain.entries())[0]).not.toHaveProperty("expiresAt")
      })
    )

    it.scopedLive("registerIfAbsent is true only for the first live writer and leaves that entry as it was; an expired entry counts as absent", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<{ version: number }>({ namespace: "claims", maxEntries: 10 })
        // A TTL a busy machine cannot outlast between the claim and the next call; the sleep outlasts it.
        expect(await store.registerIfAbsent("claim", { version: 1 }, { ttlMs: 3000 })).toBe(true)
        const [before] = await store.entries()
        expect(await store.registerIfAbsent("claim", { version: 2 }, { ttlMs: 5000 })).toBe(false)
        expect(await store.entries()).toEqual([before])
        await sleep(3500)
        expect(await store.registerIfAbsent("claim", { version: 3 })).toBe(true)
        expect(await store.lookup("claim")).toEqual({ version: 3 })
      })
    )

    it.scopedLive("of 25 concurrent registerIfAbsent calls exactly one is true, and its value is the one stored", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<{ claimant: number }>({ namespace: "race", maxEntries: 10 })
        const results = await Promise.all(Array.from({ length: 25 }, (_, i) => store.registerIfAbsent("claim", { claimant: i })))
        const winners = results.flatMap((won, i) => (won ? [i] : []))
        expect(winners.length).toBe(1)
        expect(await store.lookup("claim")).toEqual({ claimant: winners[0] })
      })
    )

    it.scopedLive("of two concurrent consumes exactly one gets the value; a value is captured when register is called", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<{ count: number }>({ namespace: "once", maxEntries: 10 })
        const value = { count: 1 }
        const written = store.register("once", value)
        value.count = 99
        await written
        const taken = await Promise.all([store.consume("once"), store.consume("once")])
        expect(taken.filter((t) => t !== undefined)).toEqual([{ count: 1 }])
        expect(await store.lookup("once")).toBeUndefined()
      })
    )

    it.scopedLive("evict-oldest drops the oldest entries to stay at maxEntries; reject-new refuses a new key with LIMIT_EXCEEDED and changes nothing", () =>
      withState(backend, async (state) => {
        const evicting = state.openKeyedStore<number>({ namespace: "evicting", maxEntries: 2 })
        for (const key of ["a", "b", "c"]) {
          await evicting.register(key, 1)
          await sleep(3)
        }
        expect(keysOf(await evicting.entries())).toEqual(["b", "c"])
        const rejecting = state.openKeyedStore<number>({ namespace: "rejecting", maxEntries: 2, overflowPolicy: "reject-new" })
        await rejecting.register("first", 1)
        await rejecting.register("second", 2)
        await expect(rejecting.register("third", 3)).rejects.toMatchObject(rejection("LIMIT_EXCEEDED", "register"))
        await expect(rejecting.registerIfAbsent("third", 3)).rejects.toMatchObject(rejection("LIMIT_EXCEEDED", "register"))
        expect(await rejecting.registerIfAbsent("first", 99)).toBe(false)
        await rejecting.register("first", 10)
        expect((await rejecting.entries()).map((e) => [e.key, e.value])).toEqual([
          ["second", 2],
          ["first", 10]
        ])
      })
    )

    it.scopedLive("keys are trimmed; an empty or over-long key is refused with the calling member's operation", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<number>({ namespace: "keys", maxEntries: 10 })
        await store.register(" padded ", 1)
        expect(await store.lookup("padded")).toBe(1)
        expect(keysOf(await store.entries())).toEqual(["padded"])
        await expect(store.lookup(" ")).rejects.toMatchObject(rejection("INVALID_INPUT", "lookup"))
        await expect(store.delete("")).rejects.toMatchObject(rejection("INVALID_INPUT", "delete"))
        await expect(store.consume("\t")).rejects.toMatchObject(rejection("INVALID_INPUT", "consume"))
        await expect(store.register("k".repeat(513), 1)).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
        await store.register("k".repeat(512), 2)
        expect(await store.lookup("k".repeat(512))).toBe(2)
      })
    )

    it.scopedLive("a value JSON would change is refused INVALID_INPUT without calling its getters; too deep or over 1 MiB is LIMIT_EXCEEDED; the previous value stays", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<unknown>({ namespace: "values", maxEntries: 10 })
        await store.register("k", "original")
        let getterCalls = 0
        const sandbox = vm.runInNewContext("({ nested: [{ count: 1, labels: ['retained', null] }] })")
        const refused: Array<unknown> = [
          undefined,
          Number.POSITIVE_INFINITY,
          new Date(),
          new Map([[1, 2]]),
          Object.create(null),
          Object.defineProperty({}, "hidden", { value: 1, enumerable: false }),
          {
            get value() {
              getterCalls++
              return 1
            }
          },
          { nested: [{ [Symbol("s")]: 1 }] },
          new Array(2),
          (() => {
            const cycle: Record<string, unknown> = {}
            cycle.self = cycle
            return cycle
          })()
        ]
        for (const [i, value] of refused.entries()) await expect(store.register("k", value), `refused value ${i}`).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
        expect(getterCalls).toBe(0)
        let deep: unknown = { leaf: true }
        for (let i = 0; i < 65; i++) deep = { nested: deep }
        await expect(store.register("k", deep)).rejects.toMatchObject(rejection("LIMIT_EXCEEDED", "register"))
        const boundary = "é".repeat(524_287)
        await store.register("big", boundary)
        await expect(store.register("k", `${boundary}x`)).rejects.toMatchObject(rejection("LIMIT_EXCEEDED", "register"))
        expect(await store.lookup("k")).toBe("original")
        expect(await store.lookup("big")).toBe(boundary)
        // A plain object made in another realm is plain JSON too.
        await store.register("realm", sandbox)
        expect(await store.lookup("realm")).toEqual({ nested: [{ count: 1, labels: ["retained", null] }] })
      })
    )

    it.scopedLive("ttlMs must be a positive safe integer whose expiry fits a Date", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<number>({ namespace: "ttls", maxEntries: 10 })
        for (const ttlMs of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_VALUE, 8.64e15]) {
          await expect(store.register("k", 1, { ttlMs }), String(ttlMs)).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
        }
        expect(await store.count()).toBe(0)
      })
    )

    it.scopedLive("a bad option, or a namespace reopened with other options, makes every member reject INVALID_INPUT (operation open)", () =>
      withState(backend, async (state) => {
        const bad = [
          { namespace: "../bad", maxEntries: 10 },
          { namespace: "a".repeat(129), maxEntries: 10 },
          { namespace: "fine", maxEntries: 0 },
          { namespace: "fine", maxEntries: 10, overflowPolicy: "drop" as "reject-new" },
          { namespace: "fine", maxEntries: 10, defaultTtlMs: 1.5 },
          { namespace: "@retained.history", maxEntries: 10 },
          { namespace: "history", retention: "retained" as const, maxEntries: 10 as never }
        ]
        for (const options of bad) {
          const store = state.openKeyedStore<number>(options)
          await expect(store.lookup("k"), JSON.stringify(options)).rejects.toMatchObject({ code: "PLUGIN_STATE_INVALID_INPUT" })
          await expect(store.register("k", 1), JSON.stringify(options)).rejects.toMatchObject({ code: "PLUGIN_STATE_INVALID_INPUT" })
        }
        const first = state.openKeyedStore<number>({ namespace: "same", maxEntries: 10 })
        await first.register("k", 1)
        const reopened = state.openKeyedStore<number>({ namespace: "same", maxEntries: 11 })
        await expect(reopened.lookup("k")).rejects.toMatchObject(rejection("INVALID_INPUT", "open"))
        // The same options again are fine; upper case is allowed.
        expect(await state.openKeyedStore<number>({ namespace: "same", maxEntries: 10 }).lookup("k")).toBe(1)
        await state.openKeyedStore<number>({ namespace: "Mixed.Case", maxEntries: 1 }).register("k", 2)
      })
    )

    it.scopedLive("lookupMany answers by position: trimmed keys, undefined for missing and expired, distinct objects for a key asked twice, at most 10 000 keys", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<{ index: number }>({ namespace: "bulk", maxEntries: 20_000 })
        const keys = ["ten:10", "two:2", "literal\\u0000", "lone\ud800", "__proto__"]
        for (const [index, key] of keys.entries()) await store.register(key, { index })
        await store.register("expired", { index: -1 }, { ttlMs: 1 })
        await sleep(20)
        const results = await store.lookupMany([keys[3]!, "missing", keys[0]!, "expired", " two:2 ", keys[0]!])
        expect(results).toEqual([
          { ok: true, value: { index: 3 } },
          { ok: true, value: undefined },
          { ok: true, value: { index: 0 } },
          { ok: true, value: undefined },
          { ok: true, value: { index: 1 } },
          { ok: true, value: { index: 0 } }
        ])
        expect(results[2]).not.toBe(results[5])
        expect((results[2] as { value: object }).value).not.toBe((results[5] as { value: object }).value)
        // A lone surrogate is the same key as its replacement character, as in a SQLite TEXT column.
        expect(await store.lookup("lone\uFFFD")).toEqual({ index: 3 })
        expect(await store.lookupMany([])).toEqual([])
        await expect(store.lookupMany(["key", " "])).rejects.toMatchObject(rejection("INVALID_INPUT", "lookup"))
        await expect(store.lookupMany(Array.from({ length: 10_001 }, () => "key"))).rejects.toMatchObject(rejection("INVALID_INPUT", "lookup"))
        const many = await store.lookupMany(Array.from({ length: 10_000 }, () => "ten:10"))
        expect(many.length).toBe(10_000)
        expect(many.every((r) => r.ok && r.value?.index === 0)).toBe(true)
      })
    )

    it.scopedLive("deleteIfEqual deletes only a live entry strictly equal to a JSON scalar", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<unknown>({ namespace: "scalars", maxEntries: 10 })
        await store.register("entry", 1)
        expect(await store.deleteIfEqual("entry", "1")).toBe(false)
        expect(await store.deleteIfEqual("entry", 2)).toBe(false)
        expect(await store.deleteIfEqual("entry", 1)).toBe(true)
        expect(await store.lookup("entry")).toBeUndefined()
        await store.register("nothing", null)
        expect(await store.deleteIfEqual("nothing", null)).toBe(true)
        await store.register("object", { a: 1 })
        await expect(store.deleteIfEqual("object", { a: 1 } as never)).rejects.toMatchObject(rejection("INVALID_INPUT", "delete"))
        await expect(store.deleteIfEqual("object", Number.NaN)).rejects.toMatchObject(rejection("INVALID_INPUT", "delete"))
      })
    )

    it.scopedLive("entriesInKeyRange reads a key range in byte order, either way, up to its limit; the range and limit are checked", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<{ count: number }>({ namespace: "events", maxEntries: 100 })
        await store.register("workspace:event:0001", { count: 1 })
        await store.register("workspace:event:0002", { count: 2 })
        await store.register("workspace:other:0003", { count: 3 })
        const last = await store.entriesInKeyRange({ keyStartInclusive: "workspace:event:", keyEndExclusive: "workspace:event;", limit: 1, order: "desc" })
        expect(last.map((e) => [e.key, e.value])).toEqual([["workspace:event:0002", { count: 2 }]])
        const all = await store.entriesInKeyRange({ keyStartInclusive: "workspace:", keyEndExclusive: "workspace;", limit: 10 })
        expect(keysOf(all)).toEqual(["workspace:event:0001", "workspace:event:0002", "workspace:other:0003"])
        for (const range of [
          { keyStartInclusive: "b", keyEndExclusive: "a", limit: 1 },
          { keyStartInclusive: "a", keyEndExclusive: "a", limit: 1 },
          { keyStartInclusive: "a", keyEndExclusive: "b", limit: 0 },
          { keyStartInclusive: "a", keyEndExclusive: "b", limit: 1, order: "sideways" as "asc" }
        ]) {
          await expect(store.entriesInKeyRange(range), JSON.stringify(range)).rejects.toMatchObject(rejection("INVALID_INPUT", "entries"))
        }
      })
    )

    it.scopedLive("a retained store keeps entries without bound or TTL, refuses TTLs, and is apart from the bounded store of the same name", () =>
      withState(backend, async (state) => {
        const retained = state.openKeyedStore<number>({ namespace: "history", retention: "retained" })
        const bounded = state.openKeyedStore<number>({ namespace: "history", maxEntries: 1 })
        const key = (n: number) => String(n).padStart(10, "0")
        for (const n of [9, 10, 99, 100]) await retained.register(key(n), n)
        await bounded.register("a", 1)
        await bounded.register("b", 2)
        expect(await retained.count()).toBe(4)
        expect(await bounded.count()).toBe(1)
        expect(keysOf(await retained.entriesInKeyRange({ keyStartInclusive: key(9), keyEndExclusive: key(101), limit: 2 }))).toEqual([key(9), key(10)])
        expect(keysOf(await retained.entriesInKeyRange({ keyStartInclusive: key(9), keyEndExclusive: key(101), limit: 2, order: "desc" }))).toEqual([key(100), key(99)])
        expect(keysOf(await retained.entriesInKeyRange({ keyStartInclusive: key(11), keyEndExclusive: key(101), limit: 2 }))).toEqual([key(99), key(100)])
        await expect(retained.register("ttl", 1, { ttlMs: 1000 })).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
        await expect(retained.registerIfAbsent("ttl", 1, { ttlMs: 1000 })).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
        const absent = await retained.observe("ttl")
        await expect(retained.compareAndApply("ttl", absent.comparison, { operation: "update", action: "set", value: 1, ttlMs: 5 })).rejects.toMatchObject(
          rejection("INVALID_INPUT", "register")
        )
        expect(await bounded.lookup(key(9))).toBeUndefined()
      })
    )

    it.scopedLive("observe + compareAndApply: applied while the entry is as observed, a conflict carrying the current observation once it changed", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<string>({ namespace: "cas", maxEntries: 10, overflowPolicy: "reject-new" })
        const absent = await store.observe("k")
        expect(absent.value).toBeUndefined()
        expect(await store.compareAndApply("k", absent.comparison, { operation: "update", action: "set", value: "first" })).toEqual({ status: "applied" })
        const stale = await store.compareAndApply("k", absent.comparison, { operation: "update", action: "set", value: "second" })
        const now = await store.observe("k")
        expect(stale).toEqual({ status: "conflict", current: now })
        expect(now.value).toBe("first")
        expect(await store.compareAndApply("k", now.comparison, { operation: "update", action: "keep" })).toEqual({ status: "unchanged" })
        expect(await store.compareAndApply("k", now.comparison, { operation: "delete", action: "delete" })).toEqual({ status: "applied" })
        const gone = await store.observe("k")
        expect(await store.compareAndApply("k", gone.comparison, { operation: "delete", action: "delete" })).toEqual({ status: "unchanged" })
        // A comparison of another key, a made-up one, a bad intent and conditions are refused.
        await store.register("other", "x")
        const other = await store.observe("other")
        await expect(store.compareAndApply("k", other.comparison, { operation: "delete", action: "delete" })).rejects.toMatchObject(rejection("INVALID_INPUT", "delete"))
        await expect(store.compareAndApply("k", "1:abc:-", { operation: "update", action: "keep" })).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
        await expect(store.compareAndApply("k", gone.comparison, { operation: "upsert" } as never)).rejects.toMatchObject({ code: "PLUGIN_STATE_INVALID_INPUT" })
        await expect(
          store.compareAndApply("k", gone.comparison, { operation: "update", action: "set", value: "v" }, { conditions: [{ namespace: "cas", key: "other", comparison: other.comparison }] })
        ).rejects.toMatchObject({ code: "PLUGIN_STATE_INVALID_INPUT" })
        // Of concurrent appliers holding one comparison, exactly one applies.
        const seen = await store.observe("other")
        const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => store.compareAndApply("other", seen.comparison, { operation: "update", action: "set", value: `v${i}` })))
        expect(outcomes.filter((o) => o.status === "applied").length).toBe(1)
      })
    )

    it.scopedLive("two plugins on one database never see each other's entries; clear empties only its own namespace", () =>
      withState(backend, async (discordState, db) => {
        const telegramState = db.backend === "memory" ? undefined : stateOn(db, "telegram")
        try {
          const discord = discordState.openKeyedStore<string>({ namespace: "shared", maxEntries: 10 })
          const sibling = discordState.openKeyedStore<string>({ namespace: "sibling", maxEntries: 10 })
          await discord.register("k", "discord")
          await sibling.register("k", "sibling")
          if (telegramState !== undefined) {
            const telegram = telegramState.openKeyedStore<string>({ namespace: "shared", maxEntries: 10 })
            expect(await telegram.lookup("k")).toBeUndefined()
            await telegram.register("k", "telegram")
            await telegram.clear()
          }
          const other = discordState.openKeyedStore<string>({ namespace: "shared", maxEntries: 10 })
          expect(await other.lookup("k")).toBe("discord")
          await discord.clear()
          expect(await discord.entries()).toEqual([])
          expect(await sibling.lookup("k")).toBe("sibling")
        } finally {
          await telegramState?.close()
        }
      })
    )
  })

for (const backend of backends) behaviours(backend)

const durable = (backend: BackendFactory) =>
  describe(`OpenClaw plugin-state across restarts: ${backend.name}`, () => {
    it.scopedLive("entries survive closing and reopening the state; a consumed entry stays consumed", () =>
      withState(backend, async (state, db) => {
        const first = state.openKeyedStore<{ nested: Array<unknown> }>({ namespace: "durable", maxEntries: 10 })
        await first.register("kept", { nested: [{ count: 1 }] })
        await first.register("once", { nested: [] })
        expect(await first.consume("once")).toEqual({ nested: [] })
        await state.close()
        const reopened = stateOn(db)
        try {
          const again = reopened.openKeyedStore<{ nested: Array<unknown> }>({ namespace: "durable", maxEntries: 10 })
          expect(await again.lookup("kept")).toEqual({ nested: [{ count: 1 }] })
          expect(await again.consume("once")).toBeUndefined()
        } finally {
          await reopened.close()
        }
      })
    )
  })

for (const backend of backends.filter((b) => b.name !== "memory")) durable(backend)

// Types: a plugin's own store variable typed as OpenClaw's keyed store.
export type StoreOfPlugin = PluginStateKeyedStore<{ readonly channel: string }>
