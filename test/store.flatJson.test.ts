/**
 * The flat-struct fast path of value encoding against the full path (Schema encode, the
 * plain-JSON check, JSON.stringify): on random values — right and wrong shapes, extra and
 * missing properties, NaN, -0, odd strings, other key orders — whenever the fast path
 * answers, it answers exactly the JSON the full path writes, and never accepts a value the
 * full path refuses.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import * as fc from "fast-check"
import { Participation } from "../src/channels/SlackThreadParticipation.js"
import { ClaimState } from "../src/layers/ClaimLedger.js"
import { compileFlatDecode, compileFlatJson } from "../src/layers/store/flatJson.js"
import { resolveNamespace } from "../src/layers/store/storeRules.js"
import { encodeValue } from "../src/layers/store/valueRules.js"

const resolved = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.runSync(resolveNamespace({ owner: "o", namespace: "n", schema, maxEntries: 10 }))

/** The full path, with the fast path switched off. */
const fullJson = <A, I>(schema: Schema.Schema<A, I>) => {
  const ns = { ...resolved(schema), flatJson: undefined }
  return (value: unknown) => encodeValue(ns, "test", "k", value as A)
}

const scalar = fc.oneof(
  fc.string(),
  fc.constantFrom("claimed", "committed", "\uD800", "é😀", "\u0000", ""),
  fc.double(),
  fc.constantFrom(0, -0, Number.NaN, Number.POSITIVE_INFINITY, 1.5, 1e21),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined)
)
/** Mostly well-formed records (each field of its kind 4 times in 5), sometimes with an extra property, sometimes not a record. */
const recordsOf = (fields: Record<string, fc.Arbitrary<unknown>>) => {
  const shaped = Object.fromEntries(Object.entries(fields).map(([name, good]) => [name, fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: scalar })]))
  return fc.oneof(
    { weight: 8, arbitrary: fc.record(shaped, { requiredKeys: [] }) },
    { weight: 1, arbitrary: fc.record({ ...shaped, extra: scalar }) },
    { weight: 1, arbitrary: fc.oneof(fc.array(scalar, { maxLength: 3 }), scalar) }
  )
}

describe("the flat-struct fast path of value encoding", () => {
  const time = fc.oneof(fc.integer({ min: 0, max: 8.64e15 }), fc.double())
  for (const [name, schema, fields] of [
    ["Participation", Participation, { agentId: fc.string(), repliedAt: time }],
    ["ClaimState", ClaimState, { status: fc.constantFrom("claimed", "committed"), at: time, token: fc.uuid() }]
  ] as const) {
    it(`${name}: whatever the fast path answers is what the full path writes`, () => {
      const fast = compileFlatJson(schema.ast)
      expect(fast).toBeDefined()
      const full = fullJson(schema as Schema.Schema<unknown, unknown>)
      let answered = 0
      fc.assert(
        fc.property(recordsOf(fields), (value) => {
          const quick = fast!(value)
          if (quick === undefined) return
          answered++
          const slow = full(value)
          expect(Either.isRight(slow) ? slow.right : `refused: ${slow.left.detail}`).toBe(quick)
        }),
        { numRuns: 3000 }
      )
      // The property is not vacuous: a good share of the values took the fast path.
      expect(answered).toBeGreaterThan(50)
    })
  }

  it("declines what it does not know: arrays, refinements, transformations, records (and so does the decoding fast path)", () => {
    for (const schema of [
      Schema.Struct({ a: Schema.Array(Schema.String) }),
      Schema.Struct({ a: Schema.Finite }),
      Schema.Struct({ a: Schema.NumberFromString }),
      Schema.Record({ key: Schema.String, value: Schema.String }),
      Schema.String
    ]) {
      expect(compileFlatJson(schema.ast)).toBeUndefined()
      expect(compileFlatDecode(schema.ast)).toBeUndefined()
    }
  })
})
