/**
 * Under attack: channel-state/openclaw. Never a synchronous throw (every error a Promise rejection
 * with PluginStateStoreError of the right code/operation), comparison scoping, values captured
 * at call time, per-position errors of lookupMany.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import { createOpenClawState, type OpenClawState, PluginStateStoreError } from "../src/openclaw/index.js"
import { stateOn, withState } from "./support/openclawState.js"
import { type BackendFactory, backends, sqlBackends, type TestDatabase } from "./support/backends.js"

const rejection = (code: string, operation: string) => ({ name: "PluginStateStoreError", code: `PLUGIN_STATE_${code}`, operation })

const hostile = <T extends object>(base: T, name: string): T =>
  Object.defineProperty({ ...base }, name, {
    enumerable: true,
    get() {
      throw new Error(`hostile ${name}`)
    }
  })

/** Calls `f`; a synchronous throw is reported as such, a returned Promise is awaited for its rejection. */
const outcome = async (f: () => unknown): Promise<string> => {
  let returned: unknown
  try {
    returned = f()
  } catch (error) {
    return `threw synchronously: ${String(error)}`
  }
  if (!(returned instanceof Promise)) return `returned a ${typeof returned}`
  try {
    await returned
    return "resolved"
  } catch (error) {
    return error instanceof PluginStateStoreError ? `rejected ${error.code} ${error.operation}` : `rejected with a non-PluginStateStoreError: ${String(error)}`
  }
}

const suite = (backend: BackendFactory) =>
  describe(`OpenClaw adapter, hostile input: ${backend.name}`, () => {
    it.scopedLive("no member and not openKeyedStore throws synchronously on hostile arguments (getters that throw, proxies)", () =>
      withState(backend, async (state) => {
        const store = state.openKeyedStore<unknown>({ namespace: "hostile", maxEntries: 10 })
        const trap = new Proxy([], {
          get() {
            throw new Error("hostile proxy")
          }
        })
        const cases: Record<string, () => unknown> = {
          "openKeyedStore(hostile options)": () => state.openKeyedStore(hostile({ namespace: "x", maxEntries: 10 }, "maxEntries")).lookup("k"),
          "openKeyedStore(proxy)": () => state.openKeyedStore(trap as never).lookup("k"),
          "register(k, v, hostile opts)": () => store.register("k", 1, hostile({}, "ttlMs")),
          "registerIfAbsent(k, v, hostile opts)": () => store.registerIfAbsent("k", 1, hostile({}, "ttlMs")),
          "compareAndApply(k, c, hostile intent)": () => store.compareAndApply("k", "1:x:-", hostile({ operation: "update", action: "set", value: 1 }, "operation") as never),
          "compareAndApply(k, c, intent, hostile options)": () =>
            store.compareAndApply("k", `1:${"0".repeat(64)}:-`, { operation: "delete", action: "delete" }, hostile({ conditions: [] }, "conditions") as never),
          "lookupMany(hostile array)": () => store.lookupMany(Object.defineProperty(["a"], 0, { get: () => { throw new Error("hostile index") } })),
          "lookupMany(proxy array)": () => store.lookupMany(new Proxy(["a"], { get: (t, p) => (p === "length" ? 1 : p === Symbol.iterator ? () => { throw new Error("hostile iterator") } : Reflect.get(t, p)) })),
          "entriesInKeyRange(hostile range)": () => store.entriesInKeyRange(hostile({ keyStartInclusive: "a", keyEndExclusive: "b", limit: 1 }, "limit")),
          "entriesInKeyRange(null)": () => store.entriesInKeyRange(null as never),
          "lookup(String object)": () => store.lookup(new String("k") as never),
          "deleteIfEqual(k, Symbol)": () => store.deleteIfEqual("k", Symbol() as never),
          "observe(undefined)": () => store.observe(undefined as never)
        }
        const problems: Array<string> = []
        for (const [name, f] of Object.entries(cases)) {
          const result = await outcome(f)
          if (!result.startsWith("rejected PLUGIN_STATE_")) problems.push(`${name}: ${result}`)
        }
        expect(problems).toEqual([])
      })
    )

    it.scopedLive("a bad defaultTtlMs is an open problem: every member rejects INVALID_INPUT with operation open", () =>
      withState(backend, async (state) => {
        for (const defaultTtlMs of [1.5, -1, 0, Number.NaN]) {
          const store = state.openKeyedStore<number>({ namespace: "ttl", maxEntries: 10, defaultTtlMs })
          await expect(store.lookup("k"), String(defaultTtlMs)).rejects.toMatchObject(rejection("INVALID_INPUT", "open"))
          await expect(store.count(), String(defaultTtlMs)).rejects.toMatchObject(rejection("INVALID_INPUT", "open"))
        }
      })
    )

    it.scopedLive("a comparison names its key, namespace, plugin: refused elsewhere; trimmed keys are the same key", () =>
      withState(backend, async (state, db) => {
        const store = state.openKeyedStore<number>({ namespace: "cmp", maxEntries: 10 })
        const sibling = state.openKeyedStore<number>({ namespace: "cmp2", maxEntries: 10 })
        const retained = state.openKeyedStore<number>({ namespace: "cmp", retention: "retained" })
        const other = stateOn(db, "slack")
        try {
          const stranger = other.openKeyedStore<number>({ namespace: "cmp", maxEntries: 10 })
          const seen = await store.observe("  k\t")
          const set = { operation: "update", action: "set", value: 1 } as const
          for (const [name, attempt] of [
            ["other key", () => store.compareAndApply("j", seen.comparison, set)],
            ["other namespace", () => sibling.compareAndApply("k", seen.comparison, set)],
            ["retained twin", () => retained.compareAndApply("k", seen.comparison, set)],
            ["other plugin", () => stranger.compareAndApply("k", seen.comparison, set)]
          ] as const) {
            await expect(attempt(), name).rejects.toMatchObject(rejection("INVALID_INPUT", "register"))
          }
          expect(await store.compareAndApply("k", seen.comparison, set)).toEqual({ status: "applied" })
          expect(await store.lookup(" k ")).toBe(1)
        } finally {
          await other.close()
        }
      })
    )

    it.scopedLive("values are captured at call time (register and compareAndApply), and members after close reject, never throw", () =>
      withState(backend, async (state, db) => {
        const store = state.openKeyedStore<{ list: Array<number> }>({ namespace: "capture", maxEntries: 10 })
        const value = { list: [1] }
        const writing = store.register("k", value)
        value.list.push(2)
        await writing
        expect(await store.lookup("k")).toEqual({ list: [1] })
        const seen = await store.observe("k")
        const intent = { operation: "update" as const, action: "set" as const, value: { list: [3] } }
        const applying = store.compareAndApply("k", seen.comparison, intent)
        intent.value.list.push(4)
        expect(await applying).toEqual({ status: "applied" })
        expect(await store.lookup("k")).toEqual({ list: [3] })
        const closing = stateOn(db)
        const late = closing.openKeyedStore<number>({ namespace: "capture", maxEntries: 10 })
        await late.count()
        await closing.close()
        expect(await outcome(() => late.lookup("k"))).toMatch(/^rejected PLUGIN_STATE_READ_FAILED lookup$/)
        expect(await outcome(() => late.register("k", 1))).toMatch(/^rejected PLUGIN_STATE_WRITE_FAILED register$/)
      })
    )
  })

for (const backend of backends) suite(backend)

describe("OpenClaw adapter: two stores of your own", () => {
  it.scopedLive("a comparison from another database is refused — also across two memory stores (store option)", () =>
    Effect.promise(async () => {
      const a = createOpenClawState({ pluginId: "discord", store: MemoryStore.layer() })
      const b = createOpenClawState({ pluginId: "discord", store: MemoryStore.layer() })
      try {
        const seen = await a.openKeyedStore<number>({ namespace: "cmp", maxEntries: 10 }).observe("k")
        await expect(b.openKeyedStore<number>({ namespace: "cmp", maxEntries: 10 }).compareAndApply("k", seen.comparison, { operation: "update", action: "set", value: 1 })).rejects.toMatchObject(
          rejection("INVALID_INPUT", "register")
        )
      } finally {
        await a.close()
        await b.close()
      }
    })
  )
})


/** The store's own SQL, to corrupt a row. */
const corrupt = (db: TestDatabase, key: string) =>
  Effect.runPromise(
    Effect.provide(
      Effect.flatMap(SqlClient, (sql) => sql`UPDATE channel_state_entries SET value_json = ${"{nope"} WHERE entry_key = ${key}`),
      db.sql!
    )
  )

for (const backend of sqlBackends) {
  describe(`OpenClaw adapter, corrupt rows: ${backend.name}`, () => {
    it.scopedLive("lookupMany: a corrupt row is that position's PLUGIN_STATE_CORRUPT (operation lookup), at each position naming it; the others answer", () =>
      withState(backend, async (state, db) => {
        const store = state.openKeyedStore<number>({ namespace: "rot", maxEntries: 10 })
        await store.register("a", 1)
        await store.register("bad", 2)
        await corrupt(db, "bad")
        const results = await store.lookupMany(["bad", " a", "missing", "bad "])
        expect(results.map((r) => (r.ok ? r.value : `${r.error.code}/${r.error.operation}`))).toEqual([
          "PLUGIN_STATE_CORRUPT/lookup",
          1,
          undefined,
          "PLUGIN_STATE_CORRUPT/lookup"
        ])
        expect(await store.count()).toBe(1)
        await store.register("bad", 3)
        await corrupt(db, "bad")
        await expect(store.observe("bad")).rejects.toMatchObject(rejection("CORRUPT", "lookup"))
        await store.register("bad", 4)
        await corrupt(db, "bad")
        await expect(store.entriesInKeyRange({ keyStartInclusive: "a", keyEndExclusive: "z", limit: 10 })).rejects.toMatchObject(rejection("CORRUPT", "entries"))
      })
    )
  })
}

describe("OpenClaw adapter: createOpenClawState", () => {
  it.scopedLive("createOpenClawState never throws on a bad location: its members reject instead", () =>
    Effect.promise(async () => {
      const problems: Array<string> = []
      for (const [name, options] of [
        ["sqlitePath 42", { pluginId: "discord", sqlitePath: 42 }],
        ["pgUrl not a URL", { pluginId: "discord", pgUrl: "::::" }],
        ["pluginId Upper", { pluginId: "Discord", sqlitePath: "/nonexistent-dir-zz/x.sqlite" }],
        ["options undefined", undefined]
      ] as const) {
        let state: OpenClawState | undefined
        try {
          state = createOpenClawState(options as never)
        } catch (error) {
          problems.push(`${name}: threw synchronously: ${String(error)}`)
          continue
        }
        const result = await outcome(() => state!.openKeyedStore({ namespace: "x", maxEntries: 1 }).count())
        if (!result.startsWith("rejected PLUGIN_STATE_")) problems.push(`${name}: ${result}`)
        await state.close()
      }
      expect(problems).toEqual([])
    })
  )

  it.scopedLive("entriesInKeyRange past 10 000 entries: pages without duplicates or skips, in byte order", () =>
    Effect.promise(async () => {
      const state = createOpenClawState({ pluginId: "discord", store: MemoryStore.layer() })
      try {
        const store = state.openKeyedStore<number>({ namespace: "many", maxEntries: 20_000 })
        const keys = Array.from({ length: 10_010 }, (_, i) => `k${String(i).padStart(5, "0")}`)
        for (const [i, key] of keys.entries()) await store.register(key, i)
        const asc = await store.entriesInKeyRange({ keyStartInclusive: "k", keyEndExclusive: "l", limit: 10_005 })
        expect(asc.map((e) => e.key)).toEqual(keys.slice(0, 10_005))
        const desc = await store.entriesInKeyRange({ keyStartInclusive: "k", keyEndExclusive: "l", limit: 20_000, order: "desc" })
        expect(desc.map((e) => e.key)).toEqual([...keys].reverse())
      } finally {
        await state.close()
      }
    })
  )
})
