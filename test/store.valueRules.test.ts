/**
 * The value rules under attack: "a value the JSON encoding would change is refused
 * (InvalidInput) rather than stored altered", on every backend — toJSON on an array, on a
 * proxy, inherited from another realm's prototype; named array properties; getters at an
 * index (never called); Array subclasses; -0 (the one documented exception).
 */
import * as vm from "node:vm"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, backends } from "./support/backends.js"

const withFreshStore = <A, E>(backend: BackendFactory, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) =>
  Effect.flatMap(backend.fresh, (db) => Effect.scoped(Effect.provide(body, db.store(settings))))

const openRaw = (namespace = "raw") =>
  Effect.flatMap(KeyedStore, (store) => store.open({ owner: "attacker", namespace, schema: Schema.Unknown, maxEntries: 100 }))

/** Either the write is refused InvalidInput, or what reads back is exactly what was written (by Object.is on leaves). */
const refusedOrExact = (value: unknown, exact: (read: unknown) => boolean) =>
  Effect.gen(function* () {
    const h = yield* openRaw()
    const written = yield* Effect.either(h.register("k", value))
    if (Either.isLeft(written)) {
      expect(written.left.reason).toBe("InvalidInput")
      return "refused"
    }
    const read = Option.getOrUndefined(yield* h.lookup("k"))
    expect(exact(read), `read back ${JSON.stringify(read)}`).toBe(true)
    return "stored"
  })

const suite = (backend: BackendFactory) =>
  describe(`Value rules, hostile values: ${backend.name}`, () => {
    it.scoped("-0 is taken and reads back as 0, as documented (JSON has no negative zero; Math.round(-0.4) makes one)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* openRaw("zero")
          yield* h.register("k", { a: [-0], b: -0 })
          const read = Option.getOrThrow(yield* h.lookup("k")) as { a: Array<number>; b: number }
          expect(Object.is(read.b, 0) && Object.is(read.a[0], 0)).toBe(true)
        })
      )
    )

    it.scoped("an array carrying an own toJSON is refused or stored as the array (JSON.stringify calls toJSON)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const array: Array<number> & { toJSON?: () => unknown } = [1, 2, 3]
          array.toJSON = () => "hijacked"
          yield* refusedOrExact(array, (read) => Array.isArray(read) && read.length === 3)
        }).pipe(Effect.asVoid)
      )
    )

    it.scoped("an array carrying extra named own properties is refused (JSON drops them)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const array: Array<number> & { extra?: string } = [1]
          array.extra = "dropped"
          yield* refusedOrExact(array, (read) => (read as { extra?: string }).extra === "dropped")
        }).pipe(Effect.asVoid)
      )
    )

    it.scoped("an array with a getter at an index: the getter is never called (as for objects)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* openRaw()
          let calls = 0
          const array: Array<number> = []
          Object.defineProperty(array, 0, { enumerable: true, configurable: true, get: () => ++calls })
          const result = yield* Effect.either(h.register("k", array))
          expect(calls, `getter called ${calls} times; write ${Either.isLeft(result) ? "refused" : `stored ${JSON.stringify(Option.getOrUndefined(yield* h.lookup("k")))}`}`).toBe(0)
        })
      )
    )

    it.scoped("a Proxy whose get trap answers toJSON: refused or stored as what its own properties say", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const value = new Proxy({ a: 1 }, { get: (target, name) => (name === "toJSON" ? () => "hijacked" : Reflect.get(target, name)) })
          yield* refusedOrExact(value, (read) => typeof read === "object" && read !== null && (read as { a?: number }).a === 1)
        }).pipe(Effect.asVoid)
      )
    )

    it.scoped("a plain object from a vm realm whose Object.prototype has a toJSON: refused or stored as its own properties", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const value = vm.runInNewContext("Object.prototype.toJSON = function () { return 'hijacked' }; ({ a: 1 })")
          yield* refusedOrExact(value, (read) => typeof read === "object" && read !== null && (read as { a?: number }).a === 1)
        }).pipe(Effect.asVoid)
      )
    )

    it.scoped("an Array subclass instance reads back as the same kind or is refused", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          class Tagged extends Array<number> {}
          const value = Tagged.from([1, 2])
          yield* refusedOrExact(value, (read) => read instanceof Tagged)
        }).pipe(Effect.asVoid)
      )
    )

    it.scoped("these values read back exactly: lone surrogates, large numbers, __proto__ own keys, nested empties, vm values", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* openRaw()
          const values: Array<unknown> = [
            "\uD800",
            "a\uDFFFb",
            "\u0000nul",
            "\u2028\u2029",
            1e308,
            5e-324,
            2 ** 53 + 2,
            -1e-7,
            123456789.12345678,
            JSON.parse('{"__proto__": {"polluted": true}, "x": 1}'),
            { a: {}, b: [], c: [[], [{}]], d: [null] },
            vm.runInNewContext("({ a: [1, { b: 'x' }], c: null })"),
            { "1": 1, b: 2, "0": 3 }
          ]
          for (const [i, value] of values.entries()) {
            yield* h.register(`k${i}`, value)
            const read = Option.getOrUndefined(yield* h.lookup(`k${i}`))
            expect(read, `value ${i}`).toStrictEqual(JSON.parse(JSON.stringify(value)))
            expect(JSON.stringify(read), `value ${i}`).toBe(JSON.stringify(value))
            if (i === 9) expect(Object.getOwnPropertyNames(read)).toContain("__proto__")
          }
        })
      )
    )

    it.scoped("depth: a leaf at depth 64 is stored, at 65 LimitExceeded (arrays, objects, empty containers)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* openRaw()
          const arrays = (depth: number, leaf: unknown): unknown => (depth === 0 ? leaf : [arrays(depth - 1, leaf)])
          const objects = (depth: number, leaf: unknown): unknown => (depth === 0 ? leaf : { n: objects(depth - 1, leaf) })
          for (const make of [arrays, objects]) {
            for (const leaf of [1, [], {}, "s", null]) {
              yield* h.register("ok", make(64, leaf))
              const deep = (yield* Effect.either(h.register("deep", make(65, leaf)))) as Either.Either<void, StateStoreError>
              expect(Either.isLeft(deep) && deep.left.reason).toBe("LimitExceeded")
            }
          }
        })
      )
    )

    it.scoped("size: exactly maxValueBytes in UTF-8 is stored, one byte more is LimitExceeded (2-, 3- and 4-byte characters, escapes)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* openRaw()
          // The limit is 120 bytes; a string's JSON is its quotes plus its UTF-8.
          for (const [char, bytes] of [
            ["é", 2],
            ["€", 3],
            ["😀", 4],
            ["\u0001", 6],
            ['"', 2]
          ] as const) {
            const fill = (118 - (118 % bytes)) / bytes
            const pad = "x".repeat(118 - fill * bytes)
            const exact = pad + char.repeat(fill)
            expect(Buffer.byteLength(JSON.stringify(exact))).toBe(120)
            yield* h.register("exact", exact)
            expect(Option.getOrUndefined(yield* h.lookup("exact"))).toBe(exact)
            const over = (yield* Effect.either(h.register("over", `${exact}x`))) as Either.Either<void, StateStoreError>
            expect(Either.isLeft(over) && over.left.reason, char).toBe("LimitExceeded")
          }
        }),
        { maxValueBytes: 120 }
      )
    )

    it.scoped("the flat-struct fast path at the size limit agrees with the full path", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* Effect.flatMap(KeyedStore, (store) => store.open({ owner: "attacker", namespace: "flat", schema: Schema.Struct({ s: Schema.String }), maxEntries: 10 }))
          // {"s":"…"} is 8 bytes + content
          const exact = "😀".repeat(28) // 112 bytes
          expect(Buffer.byteLength(JSON.stringify({ s: exact }))).toBe(120)
          yield* h.register("exact", { s: exact })
          const over = yield* Effect.either(h.register("over", { s: `${exact}x` }))
          expect(Either.isLeft(over) && over.left.reason).toBe("LimitExceeded")
        }),
        { maxValueBytes: 120 }
      )
    )
  })

for (const backend of backends) suite(backend)
