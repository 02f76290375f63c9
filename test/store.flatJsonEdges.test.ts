/**
 * Attacks on "the flat-struct fast path writes exactly what the full path (Schema encode +
 * plain-JSON check + JSON.stringify) writes, and refuses exactly what it refuses".
 * Each case compares `encodeValue` with the namespace's compiled fast path against the same
 * namespace with the fast path switched off; the end-to-end cases go through a real store.
 */
import * as path from "node:path"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { resolveNamespace } from "../src/layers/store/storeRules.js"
import { encodeValue } from "../src/layers/store/valueRules.js"
import { tempDir } from "./support/backends.js"

const show = (result: Either.Either<string, { reason: string; detail: string }>) =>
  Either.isRight(result) ? result.right : `refused ${result.left.reason}: ${result.left.detail}`

/** [what the namespace (with its fast path) writes, what the full path writes]. */
const bothPaths = (schema: Schema.Schema<unknown, unknown>, value: unknown) => {
  const ns = Effect.runSync(resolveNamespace({ owner: "o", namespace: "n", schema, maxEntries: 10 }))
  return {
    compiled: ns.flatJson !== undefined,
    fast: show(encodeValue(ns, "test", "k", value)),
    full: show(encodeValue({ ...ns, flatJson: undefined }, "test", "k", value))
  }
}

describe("flat JSON fast path vs the full path", () => {
  it("an exact optional property present with the value undefined: the full path refuses it (InvalidInput), the fast path must too", () => {
    const schema = Schema.Struct({ agentId: Schema.optionalWith(Schema.String, { exact: true }), repliedAt: Schema.Number })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, { agentId: undefined, repliedAt: 1 })
    expect(r.full).toMatch(/^refused InvalidInput/)
    expect(r.fast).toBe(r.full)
  })

  it("a property named __proto__ (own data property, as JSON.parse makes it): same JSON as the full path", () => {
    const schema = Schema.Struct({ ["__proto__"]: Schema.String, b: Schema.Number })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, JSON.parse('{"__proto__":"x","b":1}'))
    expect(r.fast).toBe(r.full)
  })

  it("a struct built with Schema.extend whose later property is an integer-like name: same property order as the full path", () => {
    const schema = Schema.Struct({ b: Schema.String }).pipe(Schema.extend(Schema.Struct({ "1": Schema.String })))
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, { b: "x", "1": "y" })
    expect(r.fast).toBe(r.full)
  })

  it("a Proxy answering an optional property it does not own: same JSON as the full path (which reads own properties only)", () => {
    const schema = Schema.Struct({ agentId: Schema.optional(Schema.String), repliedAt: Schema.Number })
    const value = new Proxy({ repliedAt: 1 }, { get: (target, name) => (name === "agentId" ? "ghost" : Reflect.get(target, name)) })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, value)
    expect(r.fast).toBe(r.full)
  })

  it("a Proxy whose getPrototypeOf trap throws: the full path accepts it, the fast path must not refuse it", () => {
    const schema = Schema.Struct({ agentId: Schema.optional(Schema.String), repliedAt: Schema.Number })
    const value = new Proxy(
      { repliedAt: 1 },
      {
        getPrototypeOf: () => {
          throw new Error("no prototype for you")
        }
      }
    )
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, value)
    expect(r.fast).toBe(r.full)
  })

  it("numbers around the epoch-millisecond shortcut (whole numbers from 1e9 to below 1e15, zeros in the last six digits): the full path's text", () => {
    const schema = Schema.Struct({ repliedAt: Schema.Number }) as Schema.Schema<unknown, unknown>
    const edges = [1e9 - 1, 1e9, 1e9 + 0.5, 1712345000000, 1712345000001, 1712345000010, 1712345000100, 1712345001000, 1712345010000, 1712345100000, 1712345999999]
    const around = [1e15 - 1, 1e15 - 0.5, 1e15, 2 ** 53, -1712345678901, -0, 0, 8640000000000000, 1.5e-7]
    const random = Array.from({ length: 2000 }, (_, i) => Math.floor(10 ** (9 + (i % 600) / 100) + ((i * 7919) % 1_000_000)))
    for (const repliedAt of [...edges, ...around, ...random]) {
      const r = bothPaths(schema, { repliedAt })
      expect(r.compiled).toBe(true)
      expect(r.fast, String(repliedAt)).toBe(r.full)
    }
  })

  it.scoped("end to end (memory store): register of an exact-optional property set to undefined is refused with InvalidInput, as the full path refuses it", () =>
    Effect.gen(function* () {
      const store = yield* Effect.provide(KeyedStore, MemoryStore.layer())
      const schema = Schema.Struct({ agentId: Schema.optionalWith(Schema.String, { exact: true }), repliedAt: Schema.Number })
      const ns = yield* store.open({ owner: "p", namespace: "n", schema, maxEntries: 10 })
      const outcome = yield* Effect.either(ns.register("k", { agentId: undefined, repliedAt: 1 } as never))
      expect(Either.isLeft(outcome) ? outcome.left.reason : "accepted").toBe("InvalidInput")
    })
  )

  it.scopedLive("end to end (sqlite): the stored text of a Schema.extend struct with an integer-like property is the full path's JSON", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "s.sqlite")
      const context = yield* Layer.build(SqliteStore.layer({ filename }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const schema = Schema.Struct({ b: Schema.String }).pipe(Schema.extend(Schema.Struct({ "1": Schema.String })))
      const ns = yield* store.open({ owner: "p", namespace: "n", schema, maxEntries: 10 })
      yield* ns.register("k", { b: "x", "1": "y" })
      const full = JSON.stringify(Schema.encodeSync(schema)({ b: "x", "1": "y" }))
      const rows = yield* Effect.provide(
        Effect.flatMap(SqlClient, (sql) => sql<{ value_json: string }>`SELECT value_json FROM channel_state_entries WHERE entry_key = 'k'`),
        SqliteClient.layer({ filename })
      )
      expect(rows[0]?.value_json).toBe(full)
    })
  )
})

// Schemas whose own parse options (the `parseOptions` annotation, which the full path's encode
// honours) change what the full path writes or refuses.
describe("flat JSON fast path vs a Schema's own parse options", () => {
  it("propertyOrder: \"original\" — the full path writes the value's own key order", () => {
    const schema = Schema.Struct({ a: Schema.String, b: Schema.Number }).annotations({ parseOptions: { propertyOrder: "original" } })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, { b: 1, a: "x" })
    expect(r.full).toBe('{"b":1,"a":"x"}')
    expect(r.fast).toBe(r.full)
  })

  it("onExcessProperty: \"error\" — a symbol-keyed extra property is refused by the full path", () => {
    const schema = Schema.Struct({ a: Schema.String }).annotations({ parseOptions: { onExcessProperty: "error" } })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, { a: "x", [Symbol("extra")]: 1 })
    expect(r.full).toMatch(/^refused InvalidInput/)
    expect(r.fast).toBe(r.full)
  })

  it("onExcessProperty: \"error\" — a non-enumerable extra property is refused by the full path", () => {
    const schema = Schema.Struct({ a: Schema.String }).annotations({ parseOptions: { onExcessProperty: "error" } })
    const value = Object.defineProperty({ a: "x" }, "hidden", { value: 1, enumerable: false })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, value)
    expect(r.full).toMatch(/^refused InvalidInput/)
    expect(r.fast).toBe(r.full)
  })

  it("onExcessProperty: \"preserve\" — a non-enumerable extra property is written by the full path", () => {
    const schema = Schema.Struct({ a: Schema.String }).annotations({ parseOptions: { onExcessProperty: "preserve" } })
    const value = Object.defineProperty({ a: "x" }, "hidden", { value: 1, enumerable: false })
    const r = bothPaths(schema as Schema.Schema<unknown, unknown>, value)
    expect(r.full).toBe('{"hidden":1,"a":"x"}')
    expect(r.fast).toBe(r.full)
  })

  it("exact: true (parse option) — a required property inherited, not owned, is refused by the full path", () => {
    const schema = Schema.Struct({ a: Schema.String }).annotations({ parseOptions: { exact: true } })
    // null-prototype objects have nothing to inherit; a plain object inherits from Object.prototype only
    const proto = Object.prototype as Record<string, unknown>
    proto.a = "inherited"
    try {
      const r = bothPaths(schema as Schema.Schema<unknown, unknown>, {})
      expect(r.full).toMatch(/^refused InvalidInput/)
      expect(r.fast).toBe(r.full)
    } finally {
      delete proto.a
    }
  })

  it("an optional property inherited from a polluted Object.prototype: the full path reads own properties only", () => {
    const schema = Schema.Struct({ agentId: Schema.optional(Schema.String), repliedAt: Schema.Number })
    const proto = Object.prototype as Record<string, unknown>
    proto.agentId = "ghost"
    try {
      const r = bothPaths(schema as Schema.Schema<unknown, unknown>, { repliedAt: 1 })
      expect(r.full).toBe('{"repliedAt":1}')
      expect(r.fast).toBe(r.full)
    } finally {
      delete proto.agentId
    }
  })
})
