/**
 * An attack on two fast paths, through the OpenClaw facade:
 *
 * A. `normalizeKey` returns a trimmed key of 1..170 UTF-16 units with no NUL and no surrogate
 *    at once. Every facade member that takes a key must accept, store and refuse exactly as the
 *    normalization before that change (copied here as the reference): the same stored key text,
 *    the same `PLUGIN_STATE_INVALID_INPUT` message and operation — for every whitespace kind
 *    `trim()` removes, keys at 170/171 units and 512/513 UTF-8 bytes, keys of only whitespace,
 *    NUL after trimming, surrogate pairs and lone surrogates at the edges, non-string keys.
 * B. `Schema.Unknown` namespaces (every facade namespace) take parsed JSON as it is: values read
 *    back — written through the facade or raw-inserted into the SQLite file — are what the Schema
 *    decoder gives for that JSON (every JSON kind, -0, 1e400, `__proto__`, integer-like names),
 *    each read a fresh value, and a row that is not JSON is still `Corrupt` and removed.
 */
import * as path from "node:path"
import Database from "better-sqlite3"
import { ParseResult, Schema } from "effect"
import * as fc from "fast-check"
import { afterEach, describe, expect, it } from "vitest"
import { MAX_KEY_BYTES, utf8Bytes } from "../src/layers/store/storeRules.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import { createOpenClawState, type OpenClawState, PluginStateStoreError, type PluginStateKeyedStore } from "../src/openclaw/index.js"
import { freshDir, removeTempDirs } from "./support/cliFixture.js"

// ---------------------------------------------------------------------------------------------
// The reference: normalizeKey as it was before the fast path (git show 1b3986b^:src/openclaw/keyedStore.ts).
// ---------------------------------------------------------------------------------------------
const LONE_SURROGATES = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

type Ref = { readonly ok: true; readonly key: string } | { readonly ok: false; readonly message: string }

const referenceKey = (key: unknown): Ref => {
  if (typeof key !== "string") return { ok: false, message: `plugin state entry key must be a string, got ${typeof key}` }
  const trimmed = key.trim().replace(LONE_SURROGATES, "\uFFFD")
  if (trimmed === "") return { ok: false, message: "plugin state entry key must not be empty" }
  if (trimmed.includes("\u0000")) return { ok: false, message: "plugin state entry key must not contain NUL characters (channel-state keeps keys portable to PostgreSQL)" }
  if (utf8Bytes(trimmed) > MAX_KEY_BYTES) return { ok: false, message: `plugin state entry key must be <= ${MAX_KEY_BYTES} bytes` }
  return { ok: true, key: trimmed }
}

/** Every character `String.prototype.trim` removes (WhiteSpace and LineTerminator). */
const TRIMMED = ["\t", "\n", "\v", "\f", "\r", " ", "\u00A0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200A", "\u2028", "\u2029", "\u202F", "\u205F", "\u3000", "\uFEFF"]
/** Look like whitespace, are not trimmed. */
const NOT_TRIMMED = ["\u0085", "\u180E", "\u200B", "\u200C", "\u2060", "\u0001", "\u001F"]
const HIGH = "\uD83D"
const LOW = "\uDE00"

const tempFile = () => path.join(freshDir(), "state.sqlite")
afterEach(removeTempDirs)

const rejectionOf = async (promise: Promise<unknown>): Promise<PluginStateStoreError | { resolved: unknown }> => {
  try {
    return { resolved: await promise }
  } catch (error) {
    expect(error).toBeInstanceOf(PluginStateStoreError)
    return error as PluginStateStoreError
  }
}

const expectRefused = async (promise: Promise<unknown>, message: string, operation: string, what: string) => {
  const outcome = await rejectionOf(promise)
  expect(outcome instanceof PluginStateStoreError ? { code: outcome.code, operation: outcome.operation, message: outcome.message } : outcome, what).toEqual({
    code: "PLUGIN_STATE_INVALID_INPUT",
    operation,
    message
  })
}

/**
 * Runs every key-taking member of `store` on `key` and checks each against the reference: the
 * same refusal (message and operation) or, for an accepted key, the reference's key text as
 * the stored key, and every member finding the entry under `key` itself.
 */
const checkKeyEverywhere = async (store: PluginStateKeyedStore<unknown>, key: unknown, label: string) => {
  const ref = referenceKey(key)
  const k = key as string
  if (!ref.ok) {
    await expectRefused(store.register(k, 1), ref.message, "register", `register ${label}`)
    await expectRefused(store.registerIfAbsent(k, 1), ref.message, "register", `registerIfAbsent ${label}`)
    await expectRefused(store.lookup(k), ref.message, "lookup", `lookup ${label}`)
    await expectRefused(store.lookupMany(["fine", k]), ref.message, "lookup", `lookupMany ${label}`)
    await expectRefused(store.consume(k), ref.message, "consume", `consume ${label}`)
    await expectRefused(store.delete(k), ref.message, "delete", `delete ${label}`)
    await expectRefused(store.deleteIfEqual(k, 1), ref.message, "delete", `deleteIfEqual ${label}`)
    await expectRefused(store.observe(k), ref.message, "lookup", `observe ${label}`)
    await expectRefused(store.compareAndApply(k, "1:x:-", { operation: "update", action: "set", value: 1 }), ref.message, "register", `compareAndApply update ${label}`)
    await expectRefused(store.compareAndApply(k, "1:x:-", { operation: "delete", action: "delete" }), ref.message, "delete", `compareAndApply delete ${label}`)
    expect(await store.count(), label).toBe(0)
    return
  }
  const stored = ref.key
  await store.register(k, { n: 1 })
  expect((await store.entries()).map((e) => e.key), `register ${label}`).toEqual([stored])
  expect(await store.lookup(k), `lookup ${label}`).toEqual({ n: 1 })
  expect(await store.lookup(stored), `lookup of the stored text ${label}`).toEqual({ n: 1 })
  expect(await store.lookupMany([k, stored]), `lookupMany ${label}`).toEqual([
    { ok: true, value: { n: 1 } },
    { ok: true, value: { n: 1 } }
  ])
  const range = await store.entriesInKeyRange({ keyStartInclusive: stored, keyEndExclusive: `${stored}\u0001`, limit: 5 })
  expect(range.map((e) => e.key), `entriesInKeyRange ${label}`).toEqual([stored])
  const seen = await store.observe(k)
  expect(seen.value, `observe ${label}`).toEqual({ n: 1 })
  // The comparison names the stored key: the same comparison from the stored text is accepted for the raw key.
  expect((await store.observe(stored)).comparison, `observe comparison ${label}`).toBe(seen.comparison)
  expect(await store.compareAndApply(k, seen.comparison, { operation: "update", action: "set", value: 2 }), `compareAndApply ${label}`).toEqual({ status: "applied" })
  expect(await store.deleteIfEqual(k, 2), `deleteIfEqual ${label}`).toBe(true)
  expect(await store.registerIfAbsent(k, 3), `registerIfAbsent ${label}`).toBe(true)
  expect((await store.entries()).map((e) => e.key), `registerIfAbsent key ${label}`).toEqual([stored])
  expect(await store.consume(k), `consume ${label}`).toBe(3)
  await store.register(k, 4)
  const again = await store.observe(k)
  expect(await store.compareAndApply(k, again.comparison, { operation: "delete", action: "delete" }), `compareAndApply delete ${label}`).toEqual({ status: "applied" })
  await store.register(k, 5)
  expect(await store.delete(k), `delete ${label}`).toBe(true)
  expect(await store.count(), label).toBe(0)
}

const repeat = (s: string, n: number) => s.repeat(n)

/** Hand-picked edges: each is named; the reference decides what each must do. */
const EDGES: ReadonlyArray<readonly [string, unknown]> = [
  ["170 ASCII", repeat("a", 170)],
  ["171 ASCII", repeat("a", 171)],
  ["512 ASCII", repeat("a", 512)],
  ["513 ASCII", repeat("a", 513)],
  ["170 three-byte (510 bytes)", repeat("€", 170)],
  ["171 three-byte (513 bytes)", repeat("€", 171)],
  ["169 three-byte + 1 two-byte (509 bytes)", `${repeat("€", 169)}é`],
  ["170 three-byte + 1 ASCII (511 bytes, 171 units)", `${repeat("€", 170)}a`],
  ["170 three-byte + 2 ASCII (512 bytes)", `${repeat("€", 170)}ab`],
  ["170 three-byte + 3 ASCII (513 bytes)", `${repeat("€", 170)}abc`],
  ["256 two-byte (512 bytes)", repeat("é", 256)],
  ["257 two-byte (514 bytes)", repeat("é", 257)],
  ["170 U+FFFF (510 bytes)", repeat("\uFFFF", 170)],
  ["171 U+FFFD (513 bytes)", repeat("\uFFFD", 171)],
  ["128 pairs (512 bytes)", repeat("😀", 128)],
  ["129 pairs (516 bytes)", repeat("😀", 129)],
  ["85 pairs (170 units, 340 bytes)", repeat("😀", 85)],
  ["170 ASCII in 600 trimmed U+3000 each side", `${repeat("\u3000", 600)}${repeat("a", 170)}${repeat("\u3000", 600)}`],
  ["170 three-byte in BOMs", `\uFEFF${repeat("€", 170)}\uFEFF`],
  ["171 three-byte in BOMs", `\uFEFF${repeat("€", 171)}\uFEFF`],
  ["every trimmed kind around a key", `${TRIMMED.join("")}k${TRIMMED.join("")}`],
  ["every trimmed kind inside a key", `k${TRIMMED.join("")}k`],
  ["only every trimmed kind", TRIMMED.join("")],
  ["empty", ""],
  ["NBSP only", "\u00A0"],
  ["U+2028 only", "\u2028"],
  ["untrimmed look-alikes", NOT_TRIMMED.join("")],
  ["U+0085 around a key", "\u0085k\u0085"],
  ["NUL alone", "\u0000"],
  ["NUL after trimming", " \u0000 "],
  ["NUL inside", "a\u0000b"],
  ["NUL at 171 units", `${repeat("a", 170)}\u0000`],
  ["NUL and lone surrogate", `\u0000${HIGH}`],
  ["lone high", HIGH],
  ["lone low", LOW],
  ["lone high at the end, then whitespace", `k${HIGH}\u3000`],
  ["lone low at the start, after whitespace", `\uFEFF${LOW}k`],
  ["reversed pair", `${LOW}${HIGH}`],
  ["pair in whitespace", `\u2028😀\u2029`],
  ["169 ASCII + lone high (170 units)", `${repeat("a", 169)}${HIGH}`],
  ["170 three-byte + lone low (171 units, 513 bytes)", `${repeat("€", 170)}${LOW}`],
  ["169 three-byte + lone low (510 bytes as U+FFFD)", `${repeat("€", 169)}${LOW}`],
  ["a key that is U+FFFD already", "\uFFFD"],
  ["number", 42],
  ["null", null],
  ["undefined", undefined],
  ["boolean", true],
  ["bigint", 1n],
  ["symbol", Symbol("k")],
  ["String object", new String("k")],
  ["array", ["k"]],
  ["object with toString", { toString: () => "k" }]
]

const keyArbitrary = (): fc.Arbitrary<string> => {
  const ws = fc.constantFrom(...TRIMMED)
  const char = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom("a", "Z", "0", ":", "/", "é", "€", "\uFFFF", "\uFFFD", "ß") },
    { weight: 2, arbitrary: ws },
    { weight: 1, arbitrary: fc.constantFrom(...NOT_TRIMMED) },
    { weight: 1, arbitrary: fc.constantFrom("\u0000", HIGH, LOW, "😀", `${LOW}${HIGH}`) }
  )
  const filler = fc.constantFrom("a", "é", "€", "😀")
  const body = fc.oneof(
    fc.array(char, { maxLength: 24 }).map((cs) => cs.join("")),
    // Near the 170-unit and 512-byte edges, with something odd at either end.
    fc
      .tuple(filler, fc.constantFrom(84, 85, 127, 128, 129, 168, 169, 170, 171, 255, 256, 257, 510, 511, 512, 513), fc.array(char, { maxLength: 3 }), fc.array(char, { maxLength: 3 }))
      .map(([f, n, before, after]) => `${before.join("")}${f.repeat(n)}${after.join("")}`)
  )
  return fc.tuple(fc.array(ws, { maxLength: 4 }), body, fc.array(ws, { maxLength: 4 })).map(([a, b, c]) => `${a.join("")}${b}${c.join("")}`)
}

const memoryState = (): OpenClawState => createOpenClawState({ pluginId: "attack", store: MemoryStore.layer() })
const sqliteState = (file: string): OpenClawState => createOpenClawState({ pluginId: "attack", sqlitePath: file })

describe("A. the key fast path: every member normalizes and refuses keys exactly as before", () => {
  it("the reference itself tells the edges apart (so the cases below are not vacuous)", () => {
    expect(referenceKey(repeat("€", 170))).toEqual({ ok: true, key: repeat("€", 170) })
    expect(referenceKey(repeat("€", 171))).toMatchObject({ ok: false })
    expect(referenceKey(repeat("a", 512))).toMatchObject({ ok: true })
    expect(referenceKey(repeat("a", 513))).toMatchObject({ ok: false })
    expect(referenceKey(`\uFEFF${HIGH}\u3000`)).toEqual({ ok: true, key: "\uFFFD" })
    expect(referenceKey(TRIMMED.join(""))).toEqual({ ok: false, message: "plugin state entry key must not be empty" })
  })

  for (const [label, key] of EDGES) {
    it(`memory: ${label}`, async () => {
      const state = memoryState()
      try {
        await checkKeyEverywhere(state.openKeyedStore({ namespace: "keys", maxEntries: 10 }), key, label)
      } finally {
        await state.close()
      }
    })
  }

  it("SQLite file: every edge, and the key text in the file is the reference's", async () => {
    const file = tempFile()
    const state = sqliteState(file)
    try {
      const store = state.openKeyedStore({ namespace: "keys", maxEntries: 100 })
      for (const [label, key] of EDGES) await checkKeyEverywhere(store, key, label)
      const accepted = EDGES.map(([, key]) => referenceKey(key)).flatMap((ref) => (ref.ok ? [ref.key] : []))
      for (const [i, key] of accepted.entries()) await store.register(key, i)
      const db = new Database(file, { readonly: true })
      try {
        const keys = (db.prepare("SELECT entry_key FROM channel_state_entries WHERE owner = 'attack' AND namespace = 'keys'").all() as Array<{ entry_key: string }>).map((r) => r.entry_key)
        expect(new Set(keys)).toEqual(new Set(accepted))
      } finally {
        db.close()
      }
    } finally {
      await state.close()
    }
  })

  it("retained namespace: the same edges, the same answers", async () => {
    const state = memoryState()
    try {
      const store = state.openKeyedStore({ namespace: "kept", retention: "retained" })
      for (const [label, key] of EDGES) await checkKeyEverywhere(store, key, label)
    } finally {
      await state.close()
    }
  })

  it("property: any key near the edges, on memory, against the reference", async () => {
    const state = memoryState()
    let accepted = 0
    let refused = 0
    try {
      const store = state.openKeyedStore({ namespace: "prop", maxEntries: 10 })
      await fc.assert(
        fc.asyncProperty(keyArbitrary(), async (key) => {
          if (referenceKey(key).ok) accepted++
          else refused++
          await store.clear()
          await checkKeyEverywhere(store, key, JSON.stringify(key))
        }),
        { numRuns: 600 }
      )
    } finally {
      await state.close()
    }
    expect(accepted).toBeGreaterThan(60)
    expect(refused).toBeGreaterThan(60)
  })

  it("property: lookupMany of many mixed keys refuses with the first refused key's message, or reads each under its reference text", async () => {
    const state = memoryState()
    try {
      const store = state.openKeyedStore({ namespace: "many", maxEntries: 1000 })
      await fc.assert(
        fc.asyncProperty(fc.array(keyArbitrary(), { minLength: 1, maxLength: 12 }), async (keys) => {
          await store.clear()
          const refs = keys.map(referenceKey)
          const firstRefused = refs.find((r) => !r.ok)
          if (firstRefused !== undefined && !firstRefused.ok) {
            await expectRefused(store.lookupMany(keys), firstRefused.message, "lookup", JSON.stringify(keys))
            return
          }
          const texts = refs.map((r) => (r.ok ? r.key : ""))
          for (const [i, text] of texts.entries()) await store.register(text, i)
          const last = new Map(texts.map((text, i) => [text, i]))
          expect(await store.lookupMany(keys)).toEqual(texts.map((text) => ({ ok: true, value: last.get(text) })))
        }),
        { numRuns: 300 }
      )
    } finally {
      await state.close()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// B. Schema.Unknown values read back are what the Schema decoder gives.
// ---------------------------------------------------------------------------------------------

/** What a reader can tell apart: kinds, -0, prototypes, own property names in order, array holes. */
const shape = (value: unknown): unknown => {
  if (typeof value === "number") return Object.is(value, -0) ? "number:-0" : `number:${value}`
  if (typeof value !== "object" || value === null) return value === null ? "null" : `${typeof value}:${String(value)}`
  const proto = Object.getPrototypeOf(value) === Object.prototype ? "Object" : Object.getPrototypeOf(value) === Array.prototype ? "Array" : "other"
  return { proto, frozen: Object.isFrozen(value), own: Reflect.ownKeys(value).map((k) => [String(k), shape((value as Record<PropertyKey, unknown>)[k])]) }
}

const decodeUnknown = ParseResult.decodeUnknownSync(Schema.Unknown)

const RAW_JSON: ReadonlyArray<string> = [
  "null",
  "true",
  "false",
  "0",
  "-0",
  "1e400",
  "-1e400",
  "5e-324",
  "1.7976931348623157e308",
  "9007199254740993",
  '""',
  '"\\ud800"',
  '"\\u0000"',
  '"😀"',
  "[]",
  "[null,[[]],{}]",
  "{}",
  '{"b":1,"a":2,"1":3,"0":4}',
  '{"a":1,"a":2}',
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  '{"toString":1,"hasOwnProperty":2,"valueOf":null}',
  '{"nested":{"__proto__":[1]}}',
  '  {"spaced" : [ 1 , 2 ] }  '
]

const readAllWays = async (store: PluginStateKeyedStore<unknown>, key: string) => {
  const lookup = await store.lookup(key)
  const many = await store.lookupMany([key, key])
  const observed = (await store.observe(key)).value
  const entry = (await store.entries()).find((e) => e.key === key)?.value
  const ranged = (await store.entriesInKeyRange({ keyStartInclusive: key, keyEndExclusive: `${key}\u0001`, limit: 1 }))[0]?.value
  return { lookup, many, observed, entry, ranged }
}

describe("B. Schema.Unknown namespaces: values read back are the decoder's", () => {
  it("SQLite: raw rows of every JSON kind read back, by every read, as the decoder gives them; not JSON is Corrupt and removed", async () => {
    const file = tempFile()
    const state = sqliteState(file)
    try {
      const store = state.openKeyedStore({ namespace: "raw", maxEntries: 100 })
      await store.register("seed", 1)
      const db = new Database(file)
      try {
        const insert = db.prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ('attack', 'raw', ?, ?, 1, NULL)")
        for (const [i, json] of RAW_JSON.entries()) insert.run(`k${String(i).padStart(2, "0")}`, json)
        insert.run("broken", "{")
        insert.run("empty", "")
      } finally {
        db.close()
      }
      for (const key of ["broken", "empty"]) {
        const outcome = await rejectionOf(store.lookup(key))
        expect(outcome instanceof PluginStateStoreError ? [outcome.code, outcome.operation] : outcome, key).toEqual(["PLUGIN_STATE_CORRUPT", "lookup"])
        expect(await store.lookup(key), key).toBeUndefined()
      }
      for (const [i, json] of RAW_JSON.entries()) {
        const key = `k${String(i).padStart(2, "0")}`
        const expected = shape(decodeUnknown(JSON.parse(json)))
        const { lookup, many, observed, entry, ranged } = await readAllWays(store, key)
        expect(shape(lookup), json).toEqual(expected)
        expect(many.map((m) => (m.ok ? shape(m.value) : m)), json).toEqual([expected, expected])
        expect(shape(observed), json).toEqual(expected)
        expect(shape(entry), json).toEqual(expected)
        expect(shape(ranged), json).toEqual(expected)
        // Two positions of one key are two values; a later read is fresh.
        if (typeof lookup === "object" && lookup !== null) {
          const [a, b] = many
          expect(a!.ok && b!.ok && a!.value !== b!.value, json).toBe(true)
          ;(lookup as Record<string, unknown>).mutated = true
          expect(shape(await store.lookup(key)), json).toEqual(expected)
        }
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect(await store.count()).toBe(RAW_JSON.length + 1)
    } finally {
      await state.close()
    }
  })

  it("SQLite: lookupMany reports a row that is not JSON as its own Corrupt and removes it, the others read", async () => {
    const file = tempFile()
    const state = sqliteState(file)
    try {
      const store = state.openKeyedStore({ namespace: "raw", maxEntries: 100 })
      await store.register("good", [1, { a: null }])
      const db = new Database(file)
      try {
        db.prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ('attack', 'raw', 'bad', 'undefined', 1, NULL)").run()
      } finally {
        db.close()
      }
      const results = await store.lookupMany(["good", "bad", "missing"])
      expect(results[0]).toEqual({ ok: true, value: [1, { a: null }] })
      expect(results[1]!.ok).toBe(false)
      expect(results[1]!.ok ? undefined : [results[1]!.error.code, results[1]!.error.operation]).toEqual(["PLUGIN_STATE_CORRUPT", "lookup"])
      expect(results[2]).toEqual({ ok: true, value: undefined })
      expect(await store.lookupMany(["bad"])).toEqual([{ ok: true, value: undefined }])
      expect(await store.count()).toBe(1)
    } finally {
      await state.close()
    }
  })

  for (const backend of ["memory", "sqlite"] as const) {
    it(`${backend}: property: any JSON value written through the facade reads back, by every read, as the decoder gives its JSON, fresh each time`, async () => {
      const state = backend === "memory" ? memoryState() : sqliteState(tempFile())
      try {
        const store = state.openKeyedStore({ namespace: "values", maxEntries: 1000 })
        let i = 0
        await fc.assert(
          fc.asyncProperty(fc.oneof(fc.jsonValue(), fc.constantFrom<unknown>(-0, [-0], JSON.parse('{"__proto__":{"x":1},"7":1,"b":2}'))), async (value) => {
            const key = `v${i++}`
            await store.register(key, value)
            const expected = shape(decodeUnknown(JSON.parse(JSON.stringify(value))))
            const { lookup, many, observed, entry, ranged } = await readAllWays(store, key)
            expect(shape(lookup)).toEqual(expected)
            expect(many.map((m) => (m.ok ? shape(m.value) : m))).toEqual([expected, expected])
            expect(shape(observed)).toEqual(expected)
            expect(shape(entry)).toEqual(expected)
            expect(shape(ranged)).toEqual(expected)
            if (typeof lookup === "object" && lookup !== null) {
              expect(lookup).not.toBe(value)
              ;(lookup as Record<string, unknown>).mutated = true
              expect(shape(await store.lookup(key))).toEqual(expected)
              expect(shape(await store.consume(key))).toEqual(expected)
            }
          }),
          { numRuns: backend === "memory" ? 300 : 150 }
        )
      } finally {
        await state.close()
      }
    })
  }
})
