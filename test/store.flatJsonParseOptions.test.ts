/**
 * Attack on fd63d24: "the fast path writes exactly the JSON the full path writes and refuses
 * exactly what it refuses" — Schemas whose own parse options (the `parseOptions` annotation,
 * which the full path's encode honours) change what the full path writes or refuses.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { encodeValue, resolveNamespace } from "../src/layers/store/storeRules.js"

const show = (result: Either.Either<string, { reason: string; detail: string }>) =>
  Either.isRight(result) ? result.right : `refused ${result.left.reason}: ${result.left.detail}`

const bothPaths = (schema: Schema.Schema<unknown, unknown>, value: unknown) => {
  const ns = Effect.runSync(resolveNamespace({ owner: "o", namespace: "n", schema, maxEntries: 10 }))
  return {
    compiled: ns.flatJson !== undefined,
    fast: show(encodeValue(ns, "test", "k", value)),
    full: show(encodeValue({ ...ns, flatJson: undefined }, "test", "k", value))
  }
}

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
