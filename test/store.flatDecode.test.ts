/**
 * The flat-struct fast path of value decoding against the Schema's own decoder: on stored
 * JSON of every shape — right and wrong kinds, extra, missing and reordered properties,
 * integer-like names, `__proto__`, nulls, arrays — whenever the fast path takes parsed JSON
 * as it is, the Schema decodes that JSON to exactly the same value (same properties, same
 * order, same values), and it never takes what the Schema refuses. And through a real store:
 * a row written by another writer in another property order, or with a property this
 * version does not know, reads back as the Schema decodes it.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Either, ParseResult, Schema } from "effect"
import * as fc from "fast-check"
import { Participation } from "../src/channels/SlackThreadParticipation.js"
import { KeyedStore } from "../src/KeyedStore.js"
import { ClaimState } from "../src/layers/ClaimLedger.js"
import { compileFlatDecode } from "../src/layers/store/flatJson.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"

const scalar = fc.oneof(
  fc.string(),
  fc.constantFrom("claimed", "committed", "\uD800", "", "__proto__"),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 1.5, 1e21, 1712345678901),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.constant({})
)

/** JSON text of records that mostly fit (each field of its kind 4 times in 5), in any property order, sometimes with a stranger. */
const storedJson = (fields: Record<string, fc.Arbitrary<unknown>>) => {
  const shaped = Object.fromEntries(Object.entries(fields).map(([name, good]) => [name, fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: scalar })]))
  const record = fc.oneof(
    { weight: 8, arbitrary: fc.record(shaped, { requiredKeys: [] }) },
    { weight: 1, arbitrary: fc.record({ ...shaped, extra: scalar }, { requiredKeys: [] }) },
    { weight: 1, arbitrary: fc.record({ ...shaped, "7": scalar }, { requiredKeys: [] }) }
  )
  const ordered = fc.tuple(record, fc.boolean()).map(([value, reversed]) => {
    const entries = Object.entries(value)
    return JSON.stringify(Object.fromEntries(reversed ? entries.reverse() : entries))
  })
  return fc.oneof(
    { weight: 12, arbitrary: ordered },
    // `__proto__` as an own property, as JSON.parse makes it.
    { weight: 1, arbitrary: ordered.map((json) => (json === "{}" ? '{"__proto__":1}' : `{"__proto__":{"x":1},${json.slice(1)}`)) },
    { weight: 1, arbitrary: fc.oneof(fc.json(), fc.constantFrom("null", "[]", "[1]", '"text"', "1")) }
  )
}

/** Properties and their values in order: what a reader of the decoded value can tell apart. */
const shape = (value: unknown) => (typeof value === "object" && value !== null ? Object.entries(value).map(([k, v]) => [k, Object.is(v, -0) ? "-0" : v]) : value)

describe("the flat-struct fast path of value decoding", () => {
  const time = fc.oneof(fc.integer({ min: 0, max: 8.64e15 }), fc.double({ noNaN: true, noDefaultInfinity: true }))
  for (const [name, schema, fields] of [
    ["Participation", Participation, { agentId: fc.string(), repliedAt: time }],
    ["ClaimState", ClaimState, { status: fc.constantFrom("claimed", "committed"), at: time, token: fc.uuid() }]
  ] as const) {
    it(`${name}: whatever the fast path takes is what the Schema decodes, and it takes nothing the Schema refuses`, () => {
      const fast = compileFlatDecode(schema.ast)
      expect(fast).toBeDefined()
      const decode = ParseResult.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
      let taken = 0
      let declined = 0
      fc.assert(
        fc.property(storedJson(fields), (json) => {
          const parsed: unknown = JSON.parse(json)
          const full = decode(JSON.parse(json))
          if (!fast!(parsed)) {
            declined++
            return
          }
          taken++
          expect(Either.isRight(full), `the Schema refuses ${json}`).toBe(true)
          expect(shape(parsed)).toEqual(shape(Either.getOrThrow(full)))
        }),
        { numRuns: 4000 }
      )
      // Neither side is vacuous: many values took the fast path, and many were left to the Schema.
      expect(taken).toBeGreaterThan(200)
      expect(declined).toBeGreaterThan(200)
    })
  }

  it("declines JSON the Schema would change or refuse: another order, a stranger, a missing or wrong field", () => {
    const fast = compileFlatDecode(ClaimState.ast)!
    expect(fast(JSON.parse('{"status":"claimed","at":1,"token":"t"}'))).toBe(true)
    expect(fast(JSON.parse('{"status":"claimed","at":1}'))).toBe(true)
    for (const json of [
      '{"at":1,"status":"claimed"}',
      '{"status":"claimed","at":1,"other":2}',
      '{"status":"claimed"}',
      '{"status":"done","at":1}',
      '{"status":"claimed","at":"1"}',
      '{"status":"claimed","at":1,"token":null}',
      '{"__proto__":{},"status":"claimed","at":1}',
      "[]",
      "null"
    ]) {
      expect(fast(JSON.parse(json)), json).toBe(false)
    }
  })

  it("declines a property inherited from a patched Object.prototype", () => {
    const fast = compileFlatDecode(Participation.ast)!
    const parsed: unknown = JSON.parse('{"repliedAt":1}')
    Object.defineProperty(Object.prototype, "agentId", { value: "from the prototype", enumerable: true, configurable: true, writable: true })
    let whilePatched: boolean
    try {
      whilePatched = fast(parsed)
    } finally {
      delete (Object.prototype as Record<string, unknown>).agentId
    }
    expect(whilePatched).toBe(false)
    expect(fast(parsed)).toBe(true)
  })

  it("takes any parsed value as it is for a Schema of any value (Schema.Unknown, Schema.Any), as their decoders do", () => {
    for (const schema of [Schema.Unknown, Schema.Any]) {
      const fast = compileFlatDecode(schema.ast)
      expect(fast).toBeDefined()
      const decode = ParseResult.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
      fc.assert(
        fc.property(fc.json(), (json) => {
          const parsed: unknown = JSON.parse(json)
          expect(fast!(parsed)).toBe(true)
          expect(Either.getOrThrow(decode(parsed))).toBe(parsed)
        }),
        { numRuns: 300 }
      )
    }
  })

  it("a row another writer stored in another order, or with a property this version does not know, reads back as the Schema decodes it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-flat-decode-"))
    const filename = path.join(dir, "state.sqlite")
    try {
      const read = (keys: ReadonlyArray<string>) =>
        Effect.runPromise(
          Effect.scoped(
            Effect.gen(function* () {
              const store = yield* KeyedStore
              const handle = yield* store.open({ owner: "o", namespace: "n", schema: ClaimState, maxEntries: 10 })
              yield* handle.register("written", { status: "claimed", at: 1, token: "t" })
              const one = yield* handle.lookup(keys[0]!)
              const many = yield* handle.lookupMany(keys)
              return { one, many }
            })
          ).pipe(Effect.provide(SqliteStore.layer({ filename })))
        )
      await read(["written"])
      const db = new Database(filename)
      const insert = db.prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ('o', 'n', ?, ?, 1, NULL)")
      insert.run("reordered", '{"token":"t","at":2,"status":"committed"}')
      insert.run("stranger", '{"status":"claimed","at":3,"addedLater":true}')
      db.close()
      for (const key of ["reordered", "stranger"]) {
        const { one, many } = await read([key])
        const json = key === "reordered" ? '{"token":"t","at":2,"status":"committed"}' : '{"status":"claimed","at":3,"addedLater":true}'
        const expected = shape(Either.getOrThrow(ParseResult.decodeUnknownEither(ClaimState)(JSON.parse(json))))
        expect(one._tag).toBe("Some")
        expect(shape(one._tag === "Some" ? one.value : undefined)).toEqual(expected)
        const first = many[0]!
        expect(Either.isRight(first) && first.right._tag === "Some" ? shape(first.right.value) : first).toEqual(expected)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
