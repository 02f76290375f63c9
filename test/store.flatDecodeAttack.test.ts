/**
 * Attacks on the flat-struct fast path of value decoding (flatJson.ts `compileFlatDecode`,
 * valueRules.ts `decodeValue`): whatever it takes must be indistinguishable from what the
 * Schema decoder builds (own properties, order, values, -0, prototype), it must never take
 * what the Schema refuses, it must only be compiled for flat structs, and the same must hold
 * through a real SQLite store for rows another writer stored with odd JSON.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Either, Option, Schema } from "effect"
import * as fc from "fast-check"
import { KeyedStore } from "../src/KeyedStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { compileFlatDecode } from "../src/layers/store/flatJson.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { resolveNamespace } from "../src/layers/store/storeRules.js"
import { decodeValue } from "../src/layers/store/valueRules.js"

const resolved = <A, I>(schema: Schema.Schema<A, I>) => Effect.runSync(resolveNamespace({ owner: "o", namespace: "n", schema, maxEntries: 10 }))

/** `decodeValue` as shipped (fast path on) and as before (fast path off). */
const decoders = <A, I>(schema: Schema.Schema<A, I>) => {
  const ns = resolved(schema)
  expect(ns.flatDecode).toBeDefined()
  const slow = { ...ns, flatDecode: undefined }
  return {
    fast: (json: string) => decodeValue(ns, "lookup", "k", json),
    full: (json: string) => decodeValue(slow, "lookup", "k", json),
    taken: (json: string) => ns.flatDecode!(JSON.parse(json))
  }
}

const tag = (v: unknown): unknown => (Object.is(v, -0) ? "-0" : typeof v === "number" && !Number.isFinite(v) ? String(v) : v)

/** Everything a reader can tell apart: prototype, own keys in order, own values (-0 apart), and what each declared name reads. */
const view = (value: unknown, names: ReadonlyArray<string> = []): unknown => {
  if (typeof value !== "object" || value === null) return tag(value)
  const record = value as Record<string, unknown>
  return {
    plain: Object.getPrototypeOf(value) === Object.prototype,
    own: Reflect.ownKeys(value).map((k) => [String(k), tag(Object.getOwnPropertyDescriptor(value, k)?.value)]),
    reads: names.map((name) => [name, tag(record[name])])
  }
}

const outcome = (result: Either.Either<unknown, StateStoreError>, names: ReadonlyArray<string> = []) =>
  Either.isRight(result) ? { ok: view(result.right, names) } : { error: result.left.reason, detail: result.left.detail }

/** A flat struct using every kind the fast path knows: literal unions, NullOr, Literal(0), optional and exact optional. */
const Odd = Schema.Struct({
  kind: Schema.Literal("a", "b", 0, null, true),
  n: Schema.NullOr(Schema.Number),
  s: Schema.optional(Schema.String),
  e: Schema.optionalWith(Schema.Boolean, { exact: true }),
  z: Schema.Literal(0)
})
const ODD_NAMES = ["kind", "n", "s", "e", "z"]

/** JSON text JSON.stringify never writes: -0, 1e400, 1e-400, duplicated keys, `__proto__`, integer-like names. */
const anyPairs = fc.array(
  fc.tuple(
    fc.constantFrom("kind", "n", "s", "e", "z", "kind", "n", "z", "extra", "0", "__proto__"),
    fc.constantFrom('"a"', '"b"', "0", "-0", "0.0", "-0.0", "1e400", "-1e400", "1e-400", "null", "true", "false", '"x"', "1.5", "[]", "{}", '""')
  ),
  { maxLength: 7 }
)
/** Mostly the declared fields in order with odd but fitting texts, sometimes a wrong one, a duplicate or a stranger spliced in. */
const goodValues: Record<string, ReadonlyArray<string>> = {
  kind: ['"a"', '"b"', "0", "-0", "0.0", "null", "true"],
  n: ["-0", "1e400", "-1e400", "1e-400", "null", "1.5", "0.0", "12345678901234567890"],
  s: ['"x"', '""', '"\\u0000"'],
  e: ["true", "false"],
  z: ["0", "-0", "0.0", "-0e5", "1e-400"]
}
const fittingPairs = fc
  .tuple(
    fc.tuple(
      ...ODD_NAMES.map((name) =>
      fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(...goodValues[name]!).map((v) => [[name, v]]) },
        { weight: 1, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.constantFrom('"c"', "false", "1", "[]", "{}", '"0"').map((v) => [[name, v]]) },
        { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...goodValues[name]!), fc.constantFrom(...goodValues[name]!)).map(([v, w]) => [[name, v], [name, w]]) }
      )
      )
    ),
    fc.option(fc.tuple(fc.nat(5), fc.constantFrom("extra", "0", "__proto__", "kind"), fc.constantFrom("1", "null", '"a"', "{}")), { freq: 4 })
  )
  .map(([fields, stranger]) => {
    const pairs = (fields as ReadonlyArray<ReadonlyArray<[string, string]>>).flat()
    if (stranger !== null) pairs.splice(stranger[0], 0, [stranger[1], stranger[2]])
    return pairs
  })
const oddJson = fc
  .oneof({ weight: 4, arbitrary: fittingPairs }, { weight: 1, arbitrary: anyPairs })
  .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`)

describe("attacking the flat-struct fast path of value decoding", () => {
  it("odd JSON text (-0, 1e400, duplicate keys, __proto__, integer-like names): the fast path's answer is the Schema's, Corrupt included", () => {
    const { fast, full, taken } = decoders(Odd)
    let took = 0
    fc.assert(
      fc.property(oddJson, (json) => {
        if (taken(json)) took++
        expect(outcome(fast(json), ODD_NAMES), json).toEqual(outcome(full(json), ODD_NAMES))
      }),
      { numRuns: 5000 }
    )
    expect(took).toBeGreaterThan(20)
    for (const json of ['{"kind":0,"n":-0,"z":-0}', '{"kind":null,"n":1e400,"z":0}', '{"kind":"a","kind":"b","n":null,"z":0}', '{"kind":true,"n":1,"z":0,"e":false}']) {
      expect(outcome(fast(json), ODD_NAMES), json).toEqual(outcome(full(json), ODD_NAMES))
    }
    // -0 survives as -0, as the Schema leaves it.
    expect(view(Either.getOrThrow(fast('{"kind":0,"n":-0,"z":-0}')))).toEqual(view(Either.getOrThrow(full('{"kind":0,"n":-0,"z":-0}'))))
    expect(Either.isRight(fast('{"kind":0,"n":1e400,"z":0}')) && Either.getOrThrow(fast('{"kind":0,"n":1e400,"z":0}')).n).toBe(Number.POSITIVE_INFINITY)
  })

  it("a required property inherited (enumerable) from a patched Object.prototype: the Schema copies it to an own property, the fast path must not hand back the parsed object without it", () => {
    const Pair = Schema.Struct({ a: Schema.String, b: Schema.Number })
    const { fast, full } = decoders(Pair)
    const json = '{"a":"x"}'
    Object.defineProperty(Object.prototype, "b", { value: 1, enumerable: true, configurable: true, writable: true })
    let fastView: unknown
    let fullView: unknown
    try {
      fastView = outcome(fast(json))
      fullView = outcome(full(json))
    } finally {
      delete (Object.prototype as Record<string, unknown>).b
    }
    // The Schema decodes to { a: "x", b: 1 } with b its own; the parsed object has only a.
    expect(fullView).toEqual({ ok: { plain: true, own: [["a", "x"], ["b", 1]], reads: [] } })
    expect(fastView).toEqual(fullView)
  })

  it("through a real SQLite store: with a required property inherited (enumerable) from a patched Object.prototype, lookup returns what the Schema decodes", async () => {
    const Pair = Schema.Struct({ a: Schema.String, b: Schema.Number })
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-flat-decode-attack-"))
    const filename = path.join(dir, "state.sqlite")
    const { full } = decoders(Pair)
    try {
      const { got, expected } = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const store = yield* KeyedStore
            const handle = yield* store.open({ owner: "o", namespace: "n", schema: Pair, maxEntries: 10 })
            yield* handle.register("seed", { a: "s", b: 0 })
            const db = new Database(filename)
            db.prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ('o', 'n', 'k', ?, 1, NULL)").run('{"a":"x"}')
            db.close()
            return yield* Effect.acquireUseRelease(
              Effect.sync(() => Object.defineProperty(Object.prototype, "b", { value: 1, enumerable: true, configurable: true, writable: true })),
              () => Effect.map(handle.lookup("k"), (found) => ({ got: Option.map(found, (v) => view(v)), expected: outcome(full('{"a":"x"}')) })),
              () => Effect.sync(() => delete (Object.prototype as Record<string, unknown>).b)
            )
          })
        ).pipe(Effect.provide(SqliteStore.layer({ filename })))
      )
      expect(expected).toEqual({ ok: { plain: true, own: [["a", "x"], ["b", 1]], reads: [] } })
      // The Schema (the read before this change) gives b as an own property; the fast path hands back the parsed { a: "x" }.
      expect(got).toEqual(Option.some((expected as { ok: unknown }).ok))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a declared name that Object.prototype makes an accessor: the Schema's assignment goes through it, JSON.parse's own property does not", () => {
    const One = Schema.Struct({ a: Schema.String })
    const { fast, full } = decoders(One)
    const json = '{"a":"x"}'
    let stored: unknown = "from the setter"
    Object.defineProperty(Object.prototype, "a", {
      get: () => stored,
      set: (v: unknown) => {
        stored = `set ${String(v)}`
      },
      enumerable: false,
      configurable: true
    })
    let fastView: unknown
    let fullView: unknown
    try {
      fullView = outcome(full(json), ["a"])
      stored = "from the setter"
      fastView = outcome(fast(json), ["a"])
    } finally {
      delete (Object.prototype as Record<string, unknown>).a
    }
    // The Schema's output has no own `a` (the inherited setter took it); the parsed object has one.
    expect(fullView).toEqual({ ok: { plain: true, own: [], reads: [["a", "set x"]] } })
    expect(fastView).toEqual(fullView)
  })

  it("is compiled for flat structs only: transformations, refinements, parse options, index signatures, odd keys get none", () => {
    const sym = Symbol.for("flatDecodeAttack")
    const none: ReadonlyArray<[string, Schema.Schema.Any]> = [
      ["optionalWith default", Schema.Struct({ a: Schema.optionalWith(Schema.String, { default: () => "d" }) })],
      ["optionalWith nullable", Schema.Struct({ a: Schema.optionalWith(Schema.String, { nullable: true }) })],
      ["optionalWith as Option", Schema.Struct({ a: Schema.optionalWith(Schema.String, { as: "Option" }) })],
      ["fromKey rename", Schema.Struct({ a: Schema.propertySignature(Schema.String).pipe(Schema.fromKey("x")) })],
      ["attachPropertySignature", Schema.Struct({ a: Schema.String }).pipe(Schema.attachPropertySignature("kind", "k"))],
      ["parseOptions", Schema.Struct({ a: Schema.String }).annotations({ parseOptions: { onExcessProperty: "preserve" } })],
      ["parseOptions exact", Schema.Struct({ a: Schema.String }).annotations({ parseOptions: { exact: true } })],
      ["integer-like key", Schema.Struct({ "1": Schema.String, a: Schema.String })],
      ["__proto__ key", Schema.Struct({ ["__proto__"]: Schema.String })],
      ["symbol key", Schema.Struct({ [sym]: Schema.String })],
      ["index signature", Schema.Struct({ a: Schema.String }, Schema.Record({ key: Schema.String, value: Schema.String }))],
      ["Class", Schema.Class<{ readonly a: string }>("C")({ a: Schema.String }) as unknown as Schema.Schema.Any],
      ["Data", Schema.Data(Schema.Struct({ a: Schema.String }))],
      ["filter on struct", Schema.Struct({ a: Schema.Number }).pipe(Schema.filter((v) => v.a > 0))],
      ["Int", Schema.Struct({ a: Schema.Int })],
      ["bigint literal", Schema.Struct({ a: Schema.Literal(1n) })],
      ["Enums", Schema.Struct({ a: Schema.Enums({ A: "a" }) })],
      ["TemplateLiteral", Schema.Struct({ a: Schema.TemplateLiteral("a", Schema.String) })],
      ["required UndefinedOr", Schema.Struct({ a: Schema.UndefinedOr(Schema.String) })],
      ["Unknown", Schema.Struct({ a: Schema.Unknown })],
      ["nested struct", Schema.Struct({ a: Schema.Struct({ b: Schema.String }) })],
      ["Trim", Schema.Struct({ a: Schema.Trim })],
      ["Union of structs", Schema.Union(Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.String }))],
      ["suspend", Schema.Struct({ a: Schema.suspend(() => Schema.String) })]
    ]
    for (const [name, schema] of none) expect(compileFlatDecode(schema.ast), name).toBeUndefined()
    const some: ReadonlyArray<[string, Schema.Schema.Any]> = [
      ["optional", Schema.Struct({ a: Schema.optional(Schema.String) })],
      ["optionalWith exact", Schema.Struct({ a: Schema.optionalWith(Schema.String, { exact: true }) })],
      ["NullOr", Schema.Struct({ a: Schema.NullOr(Schema.Number) })],
      ["Literal(null)", Schema.Struct({ a: Schema.Literal(null) })],
      ["Union of literals", Schema.Struct({ a: Schema.Literal("x", 1, true) })],
      ["TaggedStruct", Schema.TaggedStruct("T", { a: Schema.String })],
      ["extend", Schema.extend(Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.Number }))],
      // A brand is an annotation only (no refinement at run time): the Schema decodes as without it.
      ["brand on struct", Schema.Struct({ a: Schema.String }).pipe(Schema.brand("B"))],
      ["brand on field", Schema.Struct({ a: Schema.String.pipe(Schema.brand("B")) })]
    ]
    for (const [name, schema] of some) expect(compileFlatDecode(schema.ast), name).toBeDefined()
  })

  it("schemas it is compiled for (TaggedStruct, extend, brand, optional vs exact): the fast path's answer is the Schema's", () => {
    const Tagged = Schema.TaggedStruct("T", { a: Schema.optional(Schema.String), b: Schema.optionalWith(Schema.Number, { exact: true }) })
    const Extended = Schema.extend(Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.NullOr(Schema.Number) }))
    for (const [schema, jsons] of [
      [Tagged, ['{"_tag":"T"}', '{"_tag":"T","a":"x","b":-0}', '{"_tag":"U"}', '{"a":"x","_tag":"T"}', '{"_tag":"T","b":null}', '{"_tag":"T","b":1e400}']],
      [Extended, ['{"a":"x","b":null}', '{"a":"x"}', '{"b":1,"a":"x"}', '{"a":"x","b":-0}', '{"a":"x","b":-1e999}']],
      [Schema.Struct({ a: Schema.String, b: Schema.Number.pipe(Schema.brand("B")) }).pipe(Schema.brand("S")), ['{"a":"x","b":-0}', '{"a":"x","b":1e400}', '{"b":1,"a":"x"}', '{"a":1,"b":1}']]
    ] as const) {
      const { fast, full } = decoders(schema as Schema.Schema<unknown, unknown>)
      for (const json of jsons) expect(outcome(fast(json)), json).toEqual(outcome(full(json)))
    }
  })

  it("through a real SQLite store: rows another writer stored with odd JSON read back as the Schema decodes them, or Corrupt and removed, in every read", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-flat-decode-attack-"))
    const filename = path.join(dir, "state.sqlite")
    const { full } = decoders(Odd)
    const jsons = [
      '{"kind":0,"n":-0,"z":-0}',
      '{"kind":null,"n":1e400,"z":0}',
      '{"kind":"a","kind":"b","n":null,"z":0.0}',
      '{"kind":true,"n":1,"z":0,"e":false,"s":"x"}',
      '{"z":0,"n":1,"kind":"a"}',
      '{"kind":"a","n":1,"z":0,"0":1}',
      '{"__proto__":{"e":true},"kind":"a","n":1,"z":0}',
      '{"kind":"a","n":1,"z":0,"extra":[]}',
      '{"kind":"c","n":1,"z":0}',
      '{"kind":"a","n":"1","z":0}',
      '{"kind":"a","n":1}',
      '{"kind":"a","n":1,"z":0,"e":null}',
      "[]",
      "null",
      "not json"
    ]
    type Op = "lookup" | "lookupEntry" | "lookupMany" | "consume" | "entries" | "entriesInRange" | "observe"
    const ops: ReadonlyArray<Op> = ["lookup", "lookupEntry", "lookupMany", "consume", "entries", "entriesInRange", "observe"]
    try {
      const seen = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const store = yield* KeyedStore
            const handle = yield* store.open({ owner: "o", namespace: "n", schema: Odd, maxEntries: 100 })
            yield* handle.register("seed", { kind: "a", n: 1, z: 0 })
            yield* handle.delete("seed")
            const db = new Database(filename)
            const insert = db.prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ('o', 'n', 'k', ?, 1, NULL)")
            const count = db.prepare("SELECT count(*) AS c FROM channel_state_entries WHERE owner = 'o' AND namespace = 'n'")
            const rows: Array<{ op: Op; json: string; got: unknown; left: number }> = []
            try {
              for (const op of ops) {
                for (const json of jsons) {
                  db.prepare("DELETE FROM channel_state_entries WHERE owner = 'o' AND namespace = 'n'").run()
                  insert.run(json)
                  const value: Effect.Effect<Option.Option<unknown>, StateStoreError> =
                    op === "lookup"
                      ? handle.lookup("k")
                      : op === "lookupEntry"
                        ? Effect.map(handle.lookupEntry("k"), Option.map((e) => e.value))
                        : op === "lookupMany"
                          ? Effect.flatMap(handle.lookupMany(["k"]), ([r]) => r!)
                          : op === "consume"
                            ? handle.consume("k")
                            : op === "entries"
                              ? Effect.map(handle.entries, (es) => Option.fromNullable(es[0]?.value))
                              : op === "entriesInRange"
                                ? Effect.map(handle.entriesInRange({ limit: 10 }), (page) => Option.fromNullable(page.entries[0]?.value))
                                : Effect.map(handle.observe("k"), (o) => Option.map(o.entry, (e) => e.value))
                  const result = yield* Effect.either(value)
                  const got = Either.isRight(result)
                    ? Option.match(result.right, { onNone: () => ({ none: true }), onSome: (v) => ({ ok: view(v, ODD_NAMES) }) })
                    : { error: result.left.reason }
                  rows.push({ op, json, got, left: (count.get() as { c: number }).c })
                }
              }
            } finally {
              db.close()
            }
            return rows
          })
        ).pipe(Effect.provide(SqliteStore.layer({ filename })))
      )
      for (const { op, json, got, left } of seen) {
        const expected = full(json)
        const where = `${op} ${json}`
        if (Either.isLeft(expected)) {
          expect(got, where).toEqual({ error: "Corrupt" })
          expect(left, `${where}: the corrupt row is removed`).toBe(0)
        } else {
          expect(got, where).toEqual({ ok: view(expected.right, ODD_NAMES) })
          expect(left, where).toBe(op === "consume" ? 0 : 1)
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
