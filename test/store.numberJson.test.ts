/**
 * The flat-JSON fast path's number printer: numbers at every boundary, written
 * through a flat Struct (fast path) and through Schema.Unknown (full path), by register and
 * by writeBatch; the stored value_json must be JSON.stringify of the value, byte for byte,
 * and read back equal.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, type Layer, Schema } from "effect"
import { type BatchOp, KeyedStore } from "../src/KeyedStore.js"
import { resolveNamespace } from "../src/layers/store/storeRules.js"
import { encodeValue } from "../src/layers/store/valueRules.js"
import { type BackendFactory, backends, type TestDatabase } from "./support/backends.js"

const NUMBERS: ReadonlyArray<number> = [
  0, -0, 1, -1, 0.5, -0.5, 1e-7, 1.5e-7, 5e-324, Number.MIN_VALUE, 123e-20,
  999_999_999, 1e9 - 0.5, 1e9, 1e9 + 0.5, 1e9 + 1, 1_000_000_001, 1_000_100_000, 1_000_000_010, 1_000_000_100, 1_000_001_000, 1_000_010_000,
  1_700_000_000_000, 1_700_000_000_001, 1_700_000_999_999, 1_700_001_000_000, 1_700_000_099_999, 1_700_000_009_999, 1_700_000_000_999, 1_700_000_000_099, 1_700_000_000_009,
  1_700_000_000_000.5, 1_700_000_000_000.25, -1_700_000_000_000, -1e9, -1e15, -(1e15 - 1),
  2 ** 30, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 49 + 0.5,
  1e15 - 1, 1e15 - 0.5, 1e15, 1e15 + 1, 1e15 + 0.125, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER,
  1e16, 1e20, 1e21, 1e21 + 2 ** 20, 1.5e21, 1e22, 1e300, Number.MAX_VALUE, -Number.MAX_VALUE,
  8_640_000_000_000_000, 0.1 + 0.2, 1 / 3, 2 / 3 * 1e12, Math.PI * 1e12
]

const Flat = Schema.Struct({ n: Schema.Number, m: Schema.optional(Schema.Number), s: Schema.optional(Schema.String) })
const Lit = Schema.Struct({ n: Schema.Union(Schema.Literal(1_700_000_000_000), Schema.Literal(1e15), Schema.Number) })

describe("numberJson through encodeValue: fast path vs full path vs JSON.stringify", () => {
  const ns = Effect.runSync(resolveNamespace({ owner: "o", namespace: "n", schema: Flat as Schema.Schema<unknown, unknown>, maxEntries: 10 }))
  it("the namespace has a fast path", () => expect(ns.flatJson).toBeDefined())
  for (const n of NUMBERS) {
    it(`n = ${Object.is(n, -0) ? "-0" : String(n)}`, () => {
      for (const value of [{ n }, { n, m: n }, { n: 1, m: n, s: "x" }, { n, s: String(n) }]) {
        const fast = encodeValue(ns, "test", "k", value)
        const full = encodeValue({ ...ns, flatJson: undefined }, "test", "k", value)
        expect(fast).toEqual(full)
        expect(fast._tag === "Right" ? fast.right : fast).toBe(JSON.stringify(value))
      }
    })
  }
  it("a literal-union field: every number the same as JSON.stringify", () => {
    const lit = Effect.runSync(resolveNamespace({ owner: "o", namespace: "n", schema: Lit as Schema.Schema<unknown, unknown>, maxEntries: 10 }))
    for (const n of NUMBERS) {
      const fast = encodeValue(lit, "test", "k", { n })
      expect(fast._tag === "Right" ? fast.right : fast).toBe(JSON.stringify({ n }))
    }
  })
  it("a fuzz of 200 000 integers in [1e9, 1e15) and around each power-of-ten-times-1e6 edge", () => {
    let seed = 12345
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31
    }
    const bad: Array<number> = []
    for (let i = 0; i < 200_000; i++) {
      const n = Math.floor(1e9 + rand() * (1e15 - 1e9))
      for (const m of [n, n - (n % 1e6), n - (n % 1e6) - 1, n - (n % 1e6) + 1e5, n - (n % 1e6) + 99_999]) {
        if (m < 1e9) continue
        const fast = encodeValue(ns, "test", "k", { n: m })
        if (fast._tag !== "Right" || fast.right !== JSON.stringify({ n: m })) bad.push(m)
      }
    }
    expect(bad.slice(0, 10)).toEqual([])
  })
})

const withSql = <A>(db: TestDatabase, f: (sql: SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.orDie(Effect.scoped(Effect.provide(Effect.flatMap(SqlClient, f), db.sql as Layer.Layer<SqlClient>)))

const stored = (db: TestDatabase, namespace: string) =>
  withSql(db, (sql) => sql<{ entry_key: string; value_json: string }>`SELECT entry_key, value_json FROM channel_state_entries WHERE namespace = ${namespace}`).pipe(
    Effect.map((rows) => new Map(rows.map((r) => [r.entry_key, r.value_json])))
  )

const endToEnd = (backend: BackendFactory) =>
  describe(`boundary numbers stored and read back: ${backend.name}`, () => {
    it.scopedLive("flat Struct and Schema.Unknown, by register and by writeBatch: value_json is JSON.stringify of the value; read back equal (through a reopen)", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const values = NUMBERS.map((n, i) => ({ key: `k${String(i).padStart(3, "0")}`, value: { n, m: -n, s: `${i}` } }))
        const expected = (v: { n: number; m: number; s: string }) => JSON.stringify(v)
        const t = Date.now()
        const write = Effect.gen(function* () {
          const store = yield* KeyedStore
          const flat = yield* store.open({ owner: "o", namespace: "flat", schema: Flat, maxEntries: 1000 })
          const flatB = yield* store.open({ owner: "o", namespace: "flat-batch", schema: Flat, maxEntries: 1000 })
          const unk = yield* store.open({ owner: "o", namespace: "unknown", schema: Schema.Unknown, maxEntries: 1000 })
          const unkB = yield* store.open({ owner: "o", namespace: "unknown-batch", schema: Schema.Unknown, maxEntries: 1000 })
          for (const { key, value } of values) {
            yield* flat.register(key, value)
            yield* unk.register(key, value)
          }
          const ops = values.map(({ key, value }): BatchOp<typeof value> => ({ _tag: "Register", key, value, createdAt: t, expiresAt: undefined }))
          expect((yield* flatB.writeBatch(ops)).refused).toEqual([])
          expect((yield* unkB.writeBatch(ops)).refused).toEqual([])
        })
        yield* Effect.scoped(Effect.provide(write, db.store()))
        const read = Effect.gen(function* () {
          const store = yield* KeyedStore
          for (const [namespace, schema] of [["flat", Flat], ["flat-batch", Flat], ["unknown", Schema.Unknown], ["unknown-batch", Schema.Unknown]] as const) {
            const h = yield* store.open({ owner: "o", namespace, schema: schema as Schema.Schema<unknown, unknown>, maxEntries: 1000 })
            for (const { key, value } of values) {
              const got = yield* h.lookup(key)
              expect({ namespace, key, got: got._tag === "Some" ? JSON.stringify(got.value) : "none" }).toEqual({ namespace, key, got: expected(value) })
            }
          }
        })
        if (db.sql !== undefined) {
          for (const namespace of ["flat", "flat-batch", "unknown", "unknown-batch"]) {
            const rows = yield* stored(db, namespace)
            for (const { key, value } of values) expect({ namespace, key, json: rows.get(key) }).toEqual({ namespace, key, json: expected(value) })
          }
          yield* Effect.scoped(Effect.provide(read, db.store()))
        }
      }),
      60_000
    )
  })

for (const backend of backends) endToEnd(backend)
