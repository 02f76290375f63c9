/**
 * What the write-behind throughput changes must not break: SQLite's multi-row upsert as
 * `INSERT … SELECT ?, ?, column1… FROM (VALUES …) WHERE true ON CONFLICT …`, the flat-JSON
 * number printer, and lastStepPerKey's strictly-increasing shortcut.
 * Every case runs on memory, SQLite and (with the URL) PostgreSQL, and compares the stored
 * rows with plain SQL.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Schema } from "effect"
import { type BatchOp, KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import { type BackendFactory, backends, type TestDatabase } from "./support/backends.js"

const Flat = Schema.Struct({ n: Schema.Number, text: Schema.optional(Schema.String) })
type Flat = typeof Flat.Type

interface RawRow {
  readonly namespace: string
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
  readonly ct?: string
  readonly et?: string | null
}

const withSql = <A>(db: TestDatabase, f: (sql: SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.orDie(Effect.scoped(Effect.provide(Effect.flatMap(SqlClient, f), db.sql as Layer.Layer<SqlClient>)))

/** Every row of the owner, with SQLite's storage classes of the two timestamps. */
const rawRows = (db: TestDatabase, owner: string) =>
  withSql(db, (sql) =>
    db.backend === "sqlite"
      ? sql<RawRow>`SELECT namespace, entry_key, value_json, created_at, expires_at, typeof(created_at) AS ct, typeof(expires_at) AS et FROM channel_state_entries WHERE owner = ${owner} ORDER BY namespace, entry_key`
      : sql<RawRow>`SELECT namespace, entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE owner = ${owner} ORDER BY namespace, entry_key`
  )

/** [counter table's row_count, real count(*)] per namespace of the owner. */
const counts = (db: TestDatabase, owner: string) =>
  withSql(db, (sql) =>
    Effect.gen(function* () {
      const counted = yield* sql<{ namespace: string; row_count: number | string }>`SELECT namespace, row_count FROM channel_state_counts WHERE owner = ${owner}`
      const real = yield* sql<{ namespace: string; n: number | string }>`SELECT namespace, count(*) AS n FROM channel_state_entries WHERE owner = ${owner} GROUP BY namespace`
      const out: Record<string, { counted: number; real: number }> = {}
      for (const r of counted) out[r.namespace] = { counted: Number(r.row_count), real: 0 }
      for (const r of real) out[r.namespace] = { counted: out[r.namespace]?.counted ?? 0, real: Number(r.n) }
      return out
    })
  )

const build = (db: TestDatabase, settings?: Partial<StoreSettings>) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(db.store(settings))
    return Effect.runSync(Effect.provide(KeyedStore, context))
  })

const reg = <A>(key: string, value: A, createdAt: number, expiresAt: number | undefined = undefined): BatchOp<A> => ({ _tag: "Register", key, value, createdAt, expiresAt })

const entriesOf = <A>(h: NamespaceHandle<A>) => Effect.map(h.entries, (es) => [...es].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)))

const suite = (backend: BackendFactory) =>
  describe(`writeBatch sizes, orders, caps and stored types: ${backend.name}`, () => {
    for (const size of [1, 2, 499, 500, 501, 999, 1000, 1001, 1501]) {
      for (const order of ["increasing", "decreasing", "shuffled"] as const) {
        it.scopedLive(`a batch of ${size} new rows (${order} keys): every row lands byte-exact, integer timestamps, counts match`, () =>
          Effect.gen(function* () {
            const db = yield* backend.fresh
            const store = yield* build(db)
            const h = yield* store.open({ owner: "o", namespace: "n", schema: Flat, maxEntries: 5000 })
            const base = Date.now()
            let keys = Array.from({ length: size }, (_, i) => `k${String(i).padStart(5, "0")}`)
            if (order === "decreasing") keys = keys.reverse()
            if (order === "shuffled") keys = keys.map((k, i) => [k, (i * 7919) % size] as const).sort((a, b) => a[1] - b[1]).map(([k]) => k)
            const ops = keys.map((key, i) => reg<Flat>(key, { n: base + i, text: `v${i}` }, base - i, i % 3 === 0 ? undefined : base + 3_600_000 + i))
            const result = yield* h.writeBatch(ops)
            expect(result.refused).toEqual([])
            expect(yield* h.size).toBe(size)
            const got = yield* entriesOf(h)
            const want = ops
              .map((op) => (op as Extract<BatchOp<Flat>, { _tag: "Register" }>))
              .map((op) => ({ key: op.key, value: op.value, createdAt: op.createdAt, expiresAt: op.expiresAt }))
              .sort((a, b) => (a.key < b.key ? -1 : 1))
            expect(got).toEqual(want)
            if (db.sql === undefined) return
            const rows = yield* rawRows(db, "o")
            expect(rows.length).toBe(size)
            const byKey = new Map(want.map((w) => [w.key, w]))
            for (const row of rows) {
              const w = byKey.get(row.entry_key)!
              expect(row.namespace).toBe("n")
              expect(row.value_json).toBe(JSON.stringify(w.value))
              expect(Number(row.created_at)).toBe(w.createdAt)
              expect(row.expires_at === null ? undefined : Number(row.expires_at)).toBe(w.expiresAt)
              if (db.backend === "sqlite") {
                expect(row.ct).toBe("integer")
                expect(row.et).toBe(w.expiresAt === undefined ? "null" : "integer")
              }
            }
            expect(yield* counts(db, "o")).toEqual({ n: { counted: size, real: size } })
          }),
          60_000
        )
      }
    }

    it.scopedLive("upserting 700 rows over 600 existing ones (200 of them expired but not swept): 100 new rows, counts follow the real rows, timestamps stay integers like register's", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Flat, maxEntries: 5000 })
        const other = yield* store.open({ owner: "o", namespace: "other", schema: Flat, maxEntries: 5000 })
        const now = Date.now()
        const key = (i: number) => `k${String(i).padStart(4, "0")}`
        const first = Array.from({ length: 600 }, (_, i) => reg<Flat>(key(i), { n: i }, now - 10_000 - i, i < 200 ? now - 5_000 : now + 3_600_000))
        expect((yield* h.writeBatch(first)).refused).toEqual([])
        yield* other.register("r", { n: 1 }, { ttl: "1 hour" })
        yield* h.register("reg", { n: 2 }, { ttl: "1 hour" })
        expect(yield* h.size).toBe(401)
        const second = Array.from({ length: 700 }, (_, i) => reg<Flat>(key(i), { n: 1_700_000_000_000 + i, text: "again" }, now - i, i % 2 === 0 ? undefined : now + 7_200_000))
        expect((yield* h.writeBatch(second)).refused).toEqual([])
        expect(yield* h.size).toBe(701)
        for (const op of second.filter((_, i) => i % 97 === 0)) {
          const o = op as Extract<BatchOp<Flat>, { _tag: "Register" }>
          const e = yield* h.lookupEntry(o.key)
          expect(e._tag === "Some" ? e.value : undefined).toEqual({ key: o.key, value: o.value, createdAt: o.createdAt, expiresAt: o.expiresAt })
        }
        if (db.sql === undefined) return
        const c = yield* counts(db, "o")
        expect(c.n!.counted).toBe(c.n!.real)
        expect(c.other).toEqual({ counted: 1, real: 1 })
        const rows = yield* rawRows(db, "o")
        const written = rows.find((r) => r.entry_key === "reg")!
        for (const row of rows.filter((r) => r.namespace === "n" && r.entry_key !== "reg")) {
          const i = Number(row.entry_key.slice(1))
          expect(row.value_json).toBe(JSON.stringify({ n: 1_700_000_000_000 + i, text: "again" }))
          if (db.backend === "sqlite") {
            expect({ key: row.entry_key, ct: row.ct }).toEqual({ key: row.entry_key, ct: written.ct })
            expect({ key: row.entry_key, et: row.et }).toEqual({ key: row.entry_key, et: i % 2 === 0 ? "null" : written.et })
          }
        }
      }),
      60_000
    )

    it.scopedLive("duplicate keys in every order (not strictly increasing): the last step per key wins, deletes first", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 100 })
        const t = Date.now()
        yield* h.register("d", "old-d")
        yield* h.register("z", "old-z")
        const ops: Array<BatchOp<string>> = [
          reg("a", "a1", t),
          reg("b", "b1", t),
          reg("c", "c1", t),
          reg("b", "b2", t + 1), // strictly increasing up to here, then a repeat
          { _tag: "Delete", key: "d" },
          reg("d", "d-after-delete", t + 2),
          reg("z", "z1", t),
          { _tag: "Delete", key: "z" },
          reg("\u{10000}", "astral", t), // UTF-16 D800… < FFFF, UTF-8 F0… > EF…
          reg("\uFFFF", "bmp-last", t),
          reg("\u{10000}", "astral2", t + 3),
          reg("a", "a2", t + 4)
        ]
        const result = yield* h.writeBatch(ops)
        expect(result.refused).toEqual([])
        const got = Object.fromEntries((yield* h.entries).map((e) => [e.key, e.value]))
        expect(got).toEqual({ a: "a2", b: "b2", c: "c1", d: "d-after-delete", "\u{10000}": "astral2", "\uFFFF": "bmp-last" })
        if (db.sql === undefined) return
        expect(yield* counts(db, "o")).toEqual({ n: { counted: 6, real: 6 } })
      }),
      60_000
    )

    it.scopedLive("strictly increasing UTF-16 keys out of UTF-8 order, and 1000 strictly increasing keys sharing long prefixes: all land", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 5000 })
        const t = Date.now()
        const trap = ["\u{10000}", "\u{10001}", "\uE000", "\uFFFD", "\uFFFF"]
        const long = Array.from({ length: 1000 }, (_, i) => `${"p".repeat(200)}${String(i).padStart(4, "0")}`)
        for (const keys of [trap, long]) {
          const r = yield* h.writeBatch(keys.map((k, i) => reg(k, `v${i}`, t + i)))
          expect(r.refused).toEqual([])
        }
        expect(yield* h.size).toBe(1005)
        if (db.sql === undefined) return
        expect(yield* counts(db, "o")).toEqual({ n: { counted: 1005, real: 1005 } })
      }),
      60_000
    )

    it.scopedLive("a non-string key (and a refused key) in an otherwise increasing batch: refused alone, the rest lands", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 100 })
        const t = Date.now()
        const ops = [reg("a", "a", t), { ...reg("b", "b", t), key: 5 as unknown as string }, reg("c", "c", t), reg("d", "d", t), reg("", "empty", t)]
        const result = yield* Effect.either(h.writeBatch(ops))
        const keys = (yield* h.entries).map((e) => e.key).sort()
        expect({ refused: Either.isRight(result) ? result.right.refused.map((r) => r.key).sort() : result.left.reason, keys }).toEqual({ refused: ["", "5"], keys: ["a", "c", "d"] })
      }),
      60_000
    )

    it.scopedLive("reject-new maxEntries 5 holding 3: a 600-row batch of 3 existing + 597 new keys takes exactly 2 new, refuses 595 alone, updates the 3", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 5, overflow: "reject-new" })
        const t = Date.now()
        for (const k of ["k0100", "k0300", "k0500"]) yield* h.register(k, "old")
        const keys = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, "0")}`)
        const result = yield* h.writeBatch(keys.map((k) => reg(k, "new", t)))
        const entries = yield* entriesOf(h)
        expect(result.refused.length).toBe(595)
        expect(entries.length).toBe(5)
        for (const k of ["k0100", "k0300", "k0500"]) expect(entries.find((e) => e.key === k)?.value).toBe("new")
        const refused = new Set(result.refused.map((r) => r.key))
        for (const e of entries) expect(refused.has(e.key)).toBe(false)
        expect(refused.size + entries.length).toBe(600)
        if (db.sql === undefined) return
        expect(yield* counts(db, "o")).toEqual({ n: { counted: 5, real: 5 } })
      }),
      60_000
    )

    it.scopedLive("ownerMaxEntries 10, 4 rows elsewhere, 2 existing: a batch of 2 existing + 1200 new rows lands the 2 updates and 4 new rows (the same as memory)", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db, { ownerMaxEntries: 10 })
        const other = yield* store.open({ owner: "o", namespace: "other", schema: Schema.String, maxEntries: 100 })
        for (const k of ["o1", "o2", "o3", "o4"]) yield* other.register(k, k)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 100, overflow: "reject-new" })
        yield* h.register("k0001", "old")
        yield* h.register("k1199", "old")
        const t = Date.now()
        const keys = Array.from({ length: 1200 }, (_, i) => `k${String(i).padStart(4, "0")}`)
        const result = yield* h.writeBatch(keys.map((k) => reg(k, "new", t)))
        const entries = yield* entriesOf(h)
        expect(entries.length).toBe(6)
        expect(result.refused.length).toBe(1194)
        expect(entries.filter((e) => e.value === "new").length).toBe(6)
        if (db.sql === undefined) return
        expect(yield* counts(db, "o")).toEqual({ n: { counted: 6, real: 6 }, other: { counted: 4, real: 4 } })
      }),
      60_000
    )

    it.scopedLive("evict-oldest maxEntries 700: a 1000-row batch over 300 older rows keeps the 700 newest, counts exact", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* build(db)
        const h = yield* store.open({ owner: "o", namespace: "n", schema: Schema.String, maxEntries: 700 })
        const t = Date.now() - 100_000
        const key = (i: number) => `k${String(i).padStart(4, "0")}`
        expect((yield* h.writeBatch(Array.from({ length: 300 }, (_, i) => reg(key(i * 3), "old", t + i)))).refused).toEqual([])
        const result = yield* h.writeBatch(Array.from({ length: 1000 }, (_, i) => reg(key(i), `new${i}`, t + 1000 + i)))
        expect(result.refused).toEqual([])
        const entries = yield* entriesOf(h)
        expect(entries.length).toBe(700)
        expect(entries[0]!.key).toBe(key(300))
        expect(entries.every((e) => e.value === `new${Number(e.key.slice(1))}`)).toBe(true)
        if (db.sql === undefined) return
        expect(yield* counts(db, "o")).toEqual({ n: { counted: 700, real: 700 } })
      }),
      60_000
    )
  })

for (const backend of backends) suite(backend)
