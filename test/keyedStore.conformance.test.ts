/**
 * One conformance suite for the keyed store, written once as a function of a backend and
 * run on memory, SQLite and PostgreSQL.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Exit, Option, Schema, TestClock } from "effect"
import { type BoundedNamespaceOptions, KeyedStore, type NamespaceOptions } from "../src/KeyedStore.js"
import { SCHEMA_VERSION } from "../src/layers/store/migrations.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, backends, sqlBackends, type TestDatabase } from "./support/backends.js"
import { eventually } from "./support/eventually.js"

const Value = Schema.Struct({ n: Schema.Number, text: Schema.optional(Schema.String) })
type Value = typeof Value.Type

const options = (overrides: Partial<BoundedNamespaceOptions<Value, unknown>> = {}): NamespaceOptions<Value, unknown> => ({
  owner: "plugin-a",
  namespace: "things",
  schema: Value as Schema.Schema<Value, unknown>,
  maxEntries: 100,
  ...overrides
})

/** Runs `body` with a store on `db`. */
const withStore = <A, E>(db: TestDatabase, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) =>
  Effect.scoped(Effect.provide(body, db.store(settings)))

/** Runs `body` with a store on a fresh database of `backend`. */
const withFreshStore = <A, E>(backend: BackendFactory, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) =>
  Effect.flatMap(backend.fresh, (db) => withStore(db, body, settings))

const open = (overrides: Partial<BoundedNamespaceOptions<Value, unknown>> = {}) =>
  Effect.flatMap(KeyedStore, (store) => store.open(options(overrides)))

const failure = <A>(effect: Effect.Effect<A, StateStoreError, KeyedStore>) =>
  Effect.map(Effect.either(effect), (result) => {
    if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
    return result.left
  })

const conformance = (backend: BackendFactory) =>
  describe(`KeyedStore conformance: ${backend.name}`, () => {
    it.scoped("register, lookup, lookupEntry and upsert", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ ttl: "1 hour" })
          expect(yield* h.lookup("k")).toEqual(Option.none())
          yield* h.register("k", { n: 1 })
          expect(yield* h.lookup("k")).toEqual(Option.some({ n: 1 }))
          yield* TestClock.adjust("1 second")
          yield* h.register("k", { n: 2, text: "two" })
          const entry = yield* h.lookupEntry("k")
          expect(Option.getOrThrow(entry)).toEqual({ key: "k", value: { n: 2, text: "two" }, createdAt: 1000, expiresAt: 1000 + 3_600_000 })
          expect(yield* h.size).toBe(1)
        })
      )
    )

    it.scoped("registerIfAbsent is true only for the first live writer; an expired row counts as absent", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          expect(yield* h.registerIfAbsent("claim", { n: 1 }, { ttl: "10 seconds" })).toBe(true)
          expect(yield* h.registerIfAbsent("claim", { n: 2 })).toBe(false)
          expect(yield* h.lookup("claim")).toEqual(Option.some({ n: 1 }))
          yield* TestClock.adjust("10 seconds")
          expect(yield* h.registerIfAbsent("claim", { n: 3 })).toBe(true)
          expect(yield* h.lookup("claim")).toEqual(Option.some({ n: 3 }))
        })
      )
    )

    it.scoped("consume is a one-shot get-and-delete; delete says whether a live row went", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("once", { n: 7 })
          expect(yield* h.consume("once")).toEqual(Option.some({ n: 7 }))
          expect(yield* h.consume("once")).toEqual(Option.none())
          expect(yield* h.lookup("once")).toEqual(Option.none())
          yield* h.register("d", { n: 1 })
          expect(yield* h.delete("d")).toBe(true)
          expect(yield* h.delete("d")).toBe(false)
          yield* h.register("gone", { n: 1 }, { ttl: "1 second" })
          yield* TestClock.adjust("2 seconds")
          expect(yield* h.delete("gone")).toBe(false)
          expect(yield* h.consume("gone")).toEqual(Option.none())
        })
      )
    )

    it.scoped("entries, size and clear are scoped to one namespace of one owner", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const a = yield* open()
          const sibling = yield* open({ namespace: "other" })
          const otherOwner = yield* open({ owner: "plugin-b" })
          yield* a.register("x", { n: 1 })
          yield* TestClock.adjust("1 millis")
          yield* a.register("y", { n: 2 })
          yield* sibling.register("x", { n: 10 })
          yield* otherOwner.register("x", { n: 20 })
          expect((yield* a.entries).map((e) => [e.key, e.value.n])).toEqual([
            ["x", 1],
            ["y", 2]
          ])
          expect(yield* a.clear).toBe(2)
          expect(yield* a.size).toBe(0)
          expect(yield* sibling.lookup("x")).toEqual(Option.some({ n: 10 }))
          expect(yield* otherOwner.lookup("x")).toEqual(Option.some({ n: 20 }))
        })
      )
    )

    it.scoped("expired rows are invisible to every read; a per-write ttl overrides the namespace default", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ ttl: "1 minute" })
          yield* h.register("short", { n: 1 }, { ttl: "5 seconds" })
          yield* h.register("default", { n: 2 })
          yield* h.register("absolute", { n: 3 }, { expiresAt: 30_000 })
          yield* TestClock.adjust("5 seconds")
          expect(yield* h.lookup("short")).toEqual(Option.none())
          expect(yield* h.lookup("default")).toEqual(Option.some({ n: 2 }))
          expect(yield* h.size).toBe(2)
          yield* TestClock.adjust("25 seconds")
          expect((yield* h.entries).map((e) => e.key)).toEqual(["default"])
          yield* TestClock.adjust("30 seconds")
          expect(yield* h.entries).toEqual([])
          expect(yield* h.size).toBe(0)
        })
      )
    )

    it.scoped("evict-oldest drops expired rows first, then the oldest live rows", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ maxEntries: 3 })
          yield* h.register("expiring", { n: 0 }, { ttl: "1 second" })
          for (const key of ["a", "b", "c"]) {
            yield* TestClock.adjust("1 second")
            yield* h.register(key, { n: 1 })
          }
          yield* TestClock.adjust("1 second")
          yield* h.register("d", { n: 1 })
          expect((yield* h.entries).map((e) => e.key)).toEqual(["b", "c", "d"])
          yield* h.register("b", { n: 2 })
          expect(yield* h.size).toBe(3)
        })
      )
    )

    it.scoped("reject-new refuses a new key when full and leaves stored rows alone", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ maxEntries: 2, overflow: "reject-new" })
          yield* h.register("a", { n: 1 })
          yield* h.register("b", { n: 2 })
          const error = yield* failure(h.register("c", { n: 3 }))
          expect(error.reason).toBe("LimitExceeded")
          expect(error.message).toContain("namespace is full")
          expect(yield* failure(h.registerIfAbsent("c", { n: 3 }))).toMatchObject({ reason: "LimitExceeded" })
          yield* h.register("a", { n: 10 })
          expect((yield* h.entries).map((e) => [e.key, e.value.n])).toEqual([
            ["a", 10],
            ["b", 2]
          ])
        })
      )
    )

    it.scoped("an owner cap, when set, rejects new rows alone and never evicts a sibling namespace", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const one = yield* open({ namespace: "one" })
          const two = yield* open({ namespace: "two" })
          const stranger = yield* open({ owner: "plugin-b" })
          for (const key of ["a", "b", "c"]) yield* one.register(key, { n: 1 })
          yield* two.register("a", { n: 2 })
          yield* two.register("b", { n: 2 })
          const error = yield* failure(two.register("c", { n: 2 }))
          expect(error).toMatchObject({ reason: "LimitExceeded", owner: "plugin-a", namespace: "two" })
          const batch = yield* two.writeBatch([
            { _tag: "Register", key: "z", value: { n: 1 }, createdAt: 0, expiresAt: undefined },
            { _tag: "Register", key: "a", value: { n: 21 }, createdAt: 0, expiresAt: undefined }
          ])
          expect(batch.refused.map((r) => [r.key, r.error.reason])).toEqual([["z", "LimitExceeded"]])
          expect(yield* two.lookup("a")).toEqual(Option.some({ n: 21 }))
          expect(yield* one.size).toBe(3)
          expect(yield* two.size).toBe(2)
          yield* stranger.register("c", { n: 3 })
          yield* two.register("a", { n: 20 })
          expect(yield* two.lookup("a")).toEqual(Option.some({ n: 20 }))
          // Room comes back when the owner's rows expire or go.
          yield* one.delete("a")
          yield* two.register("c", { n: 2 })
          expect(yield* two.size).toBe(3)
        }),
        { ownerMaxEntries: 5 }
      )
    )

    it.scoped("without an owner cap (the default) an owner's namespaces are bounded only by their own maxEntries", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const one = yield* open({ namespace: "one", maxEntries: 30 })
          const two = yield* open({ namespace: "two", maxEntries: 30 })
          const rows = (prefix: string) =>
            Array.from({ length: 40 }, (_, i) => ({ _tag: "Register" as const, key: `${prefix}${i}`, value: { n: i }, createdAt: i, expiresAt: undefined }))
          expect((yield* one.writeBatch(rows("x"))).refused).toEqual([])
          expect((yield* two.writeBatch(rows("y"))).refused).toEqual([])
          expect([yield* one.size, yield* two.size]).toEqual([30, 30])
        })
      )
    )

    it.scoped("a reject-new batch writes as many new keys as fit and refuses the rest alone", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ maxEntries: 3, overflow: "reject-new" })
          yield* h.register("a", { n: 1 })
          yield* h.register("gone", { n: 0 }, { ttl: "1 second" })
          yield* TestClock.adjust("2 seconds")
          const result = yield* h.writeBatch(
            ["e", "d", "c", "b", "a"].map((key) => ({ _tag: "Register" as const, key, value: { n: 9 }, createdAt: 5, expiresAt: undefined }))
          )
          // "a" exists (an update always fits); two of the new keys fit, in key order.
          expect(result.refused.map((r) => [r.key, r.error.reason])).toEqual([
            ["d", "LimitExceeded"],
            ["e", "LimitExceeded"]
          ])
          expect((yield* h.entries).map((e) => e.key).sort()).toEqual(["a", "b", "c"])
        })
      )
    )

    it.scoped("bad input is a typed InvalidInput (too large or too deep: LimitExceeded) naming the problem; nothing stored changes", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const store = yield* KeyedStore
          const h = yield* open()
          const anything = yield* store.open({ owner: "plugin-a", namespace: "raw", schema: Schema.Unknown, maxEntries: 10 })
          yield* h.register("keep", { n: 1 })
          yield* anything.register("keep", { quote: "'\"%_😀\u0000" })

          const symbolKeyed = { ok: 1, [Symbol("hidden")]: 2 }
          const hiddenProperty = Object.defineProperty({ ok: 1 }, "hidden", { value: 2, enumerable: false })
          const withGetter = Object.defineProperty({}, "computed", { get: () => 1, enumerable: true })
          const cases: Array<[Effect.Effect<unknown, StateStoreError, KeyedStore>, string, string?]> = [
            [store.open(options({ namespace: "Bad Name" })), "namespace"],
            [store.open(options({ namespace: "a".repeat(129) })), "128"],
            [store.open(options({ owner: "" })), "owner"],
            [store.open(options({ maxEntries: 0 })), "maxEntries"],
            [store.open(options({ ttl: -5 })), "ttl"],
            [h.register("", { n: 1 }), "empty"],
            [h.register("a".repeat(513), { n: 1 }), "513 bytes"],
            [h.register("nul\u0000key", { n: 1 }), "NUL"],
            [h.register("lone\uD800", { n: 1 }), "lone surrogate"],
            [h.register("\uDC00", { n: 1 }), "lone surrogate"],
            [h.register("keep", { n: "one" } as unknown as Value), "schema"],
            [anything.register("big", "x".repeat(1024 * 1024 - 1)), "bytes of JSON", "LimitExceeded"],
            [anything.register("nan", Number.NaN), "non-finite"],
            [anything.register("date", new Date(0)), "Date"],
            [anything.register("map", new Map()), "Map"],
            [anything.register("fn", () => 1), "function"],
            [anything.register("deep", deep(66)), "deeper than 64", "LimitExceeded"],
            [anything.register("cycle", cyclic()), "circular"],
            [anything.register("null-proto", Object.create(null)), "null-prototype"],
            [anything.register("symbol", symbolKeyed), "symbol keys"],
            [anything.register("hidden", hiddenProperty), "non-enumerable"],
            [anything.register("getter", withGetter), "accessor"],
            [anything.register("sparse", new Array(3).fill(1, 0, 1)), "sparse"],
            [anything.register("hole", [1, undefined]), "undefined array element"]
          ]
          for (const [effect, mentions, reason = "InvalidInput"] of cases) {
            const error = yield* failure(effect)
            expect(error.reason).toBe(reason)
            expect(error.message).toContain(mentions)
          }
          yield* h.register("a".repeat(512), { n: 512 })
          yield* anything.register("edge", "x".repeat(1024 * 1024 - 2))
          // The root is at depth 0: a leaf at depth 64 is the deepest a value may reach.
          yield* anything.register("deep-ok", deep(65))
          expect(yield* h.lookup("keep")).toEqual(Option.some({ n: 1 }))
          expect(yield* anything.lookup("keep")).toEqual(Option.some({ quote: "'\"%_😀\u0000" }))
          expect(yield* anything.lookup("edge")).toEqual(Option.some("x".repeat(1024 * 1024 - 2)))
        })
      )
    )

    it.scoped("reopening a namespace with different options is an error; the same options are fine", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          yield* open({ maxEntries: 5 })
          yield* open({ maxEntries: 5 })
          const error = yield* failure(open({ maxEntries: 6 }))
          expect(error.reason).toBe("InvalidInput")
          expect(error.message).toContain("different options")
          expect(yield* failure(open({ maxEntries: 5, schema: Schema.String as unknown as Schema.Schema<Value, unknown> }))).toMatchObject({
            reason: "InvalidInput"
          })
        })
      )
    )

    it.scoped("writeBatch applies the last step per key with explicit timestamps", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("old", { n: 0 })
          yield* TestClock.adjust("1 minute")
          const result = yield* h.writeBatch([
            { _tag: "Register", key: "a", value: { n: 1 }, createdAt: 5, expiresAt: 120_000 },
            { _tag: "Register", key: "b", value: { n: 2 }, createdAt: 6, expiresAt: undefined },
            { _tag: "Delete", key: "old" },
            { _tag: "Register", key: "a", value: { n: 11 }, createdAt: 7, expiresAt: 120_000 },
            { _tag: "Register", key: "c", value: { n: 3 }, createdAt: 8, expiresAt: undefined },
            { _tag: "Delete", key: "c" }
          ])
          expect(result.refused).toEqual([])
          expect(yield* h.entries).toEqual([
            { key: "b", value: { n: 2 }, createdAt: 6, expiresAt: undefined },
            { key: "a", value: { n: 11 }, createdAt: 7, expiresAt: 120_000 }
          ])
        })
      )
    )

    it.scoped("a step the store refuses is refused alone: the rest of its batch, deletes first of all, lands", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          for (const key of ["x", "y"]) yield* h.register(key, { n: 0 })
          const result = yield* h.writeBatch([
            { _tag: "Register", key: "good-1", value: { n: 1 }, createdAt: 1, expiresAt: undefined },
            { _tag: "Register", key: "k".repeat(513), value: { n: 1 }, createdAt: 1, expiresAt: undefined },
            { _tag: "Delete", key: "x" },
            { _tag: "Register", key: "bad-value", value: { n: "one" } as unknown as Value, createdAt: 1, expiresAt: undefined },
            { _tag: "Register", key: "too-late", value: { n: 1 }, createdAt: 1, expiresAt: 9e15 },
            { _tag: "Register", key: "fraction", value: { n: 1 }, createdAt: 1.4, expiresAt: 1_000_000.6 },
            { _tag: "Delete", key: "" },
            { _tag: "Delete", key: "y" },
            { _tag: "Register", key: "good-2", value: { n: 2 }, createdAt: 2, expiresAt: undefined }
          ])
          expect(result.refused.map((r) => [r.key.slice(0, 8), r.error.reason])).toEqual([
            ["kkkkkkkk", "InvalidInput"],
            ["bad-valu", "InvalidInput"],
            ["too-late", "InvalidInput"],
            ["", "InvalidInput"]
          ])
          expect((yield* h.entries).map((e) => [e.key, e.createdAt, e.expiresAt])).toEqual([
            ["fraction", 1, 1_000_001],
            ["good-1", 1, undefined],
            ["good-2", 2, undefined]
          ])
        })
      )
    )

    it.scoped("replaceIfEqual and deleteIfEqual act only while the live value is the one expected", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("lease", { n: 1, text: "token-a" }, { ttl: "10 seconds" })
          expect(yield* h.replaceIfEqual("lease", { n: 1, text: "token-b" }, { n: 2 })).toBe(false)
          expect(yield* h.deleteIfEqual("lease", { n: 1 })).toBe(false)
          expect(yield* h.lookup("lease")).toEqual(Option.some({ n: 1, text: "token-a" }))
          expect(yield* h.replaceIfEqual("lease", { n: 1, text: "token-a" }, { n: 2, text: "token-c" }, { ttl: "10 seconds" })).toBe(true)
          expect(yield* h.deleteIfEqual("lease", { n: 1, text: "token-a" })).toBe(false)
          expect(yield* h.lookup("lease")).toEqual(Option.some({ n: 2, text: "token-c" }))
          yield* TestClock.adjust("10 seconds")
          // Expired: equal, but no longer live.
          expect(yield* h.replaceIfEqual("lease", { n: 2, text: "token-c" }, { n: 3 })).toBe(false)
          expect(yield* h.deleteIfEqual("lease", { n: 2, text: "token-c" })).toBe(false)
          yield* h.register("gone", { n: 5 })
          expect(yield* h.deleteIfEqual("gone", { n: 5 })).toBe(true)
          expect(yield* h.lookup("gone")).toEqual(Option.none())
          expect(yield* h.replaceIfEqual("missing", { n: 1 }, { n: 2 })).toBe(false)
          expect(yield* h.lookup("missing")).toEqual(Option.none())
        })
      )
    )

    it.scoped("conditional batch steps: ifAbsentOr writes over nothing or the expected value, ifEqual deletes only that", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("mine", { n: 1, text: "me" })
          yield* h.register("theirs", { n: 1, text: "them" })
          yield* h.register("del-mine", { n: 1, text: "me" })
          yield* h.register("del-theirs", { n: 1, text: "them" })
          const me = { n: 1, text: "me" }
          const result = yield* h.writeBatch([
            { _tag: "Register", key: "mine", value: { n: 2 }, createdAt: 1, expiresAt: undefined, ifAbsentOr: me },
            { _tag: "Register", key: "theirs", value: { n: 2 }, createdAt: 1, expiresAt: undefined, ifAbsentOr: me },
            { _tag: "Register", key: "absent", value: { n: 2 }, createdAt: 1, expiresAt: undefined, ifAbsentOr: me },
            { _tag: "Delete", key: "del-mine", ifEqual: me },
            { _tag: "Delete", key: "del-theirs", ifEqual: me }
          ])
          expect(result.refused).toEqual([])
          expect((yield* h.entries).map((e) => [e.key, e.value]).sort()).toEqual([
            ["absent", { n: 2 }],
            ["del-theirs", { n: 1, text: "them" }],
            ["mine", { n: 2 }],
            ["theirs", { n: 1, text: "them" }]
          ])
        })
      )
    )

    it.scoped("timestamps are whole epoch ms within the largest Date on every backend; fractions round the same way", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const refused: Array<[string, Effect.Effect<unknown, StateStoreError, KeyedStore>]> = [
            ["1e12 days", h.register("a", { n: 1 }, { ttl: Duration.days(1e12) })],
            ["MAX_VALUE ms", h.register("a", { n: 1 }, { ttl: Number.MAX_VALUE })],
            ["infinite", h.register("a", { n: 1 }, { ttl: Duration.infinity })],
            ["under 1 ms", h.register("a", { n: 1 }, { ttl: "0.4 millis" })],
            ["expiresAt past the largest Date", h.register("a", { n: 1 }, { expiresAt: 8.64e15 + 1 })],
            ["expiresAt NaN", h.register("a", { n: 1 }, { expiresAt: Number.NaN })],
            ["createdAt negative", h.register("a", { n: 1 }, { createdAt: -1 })],
            ["claim with 1e12 days", h.registerIfAbsent("a", { n: 1 }, { ttl: Duration.days(1e12) })],
            ["createdAt + ttl past the largest Date", h.register("a", { n: 1 }, { createdAt: 8.64e15 - 10, ttl: "1 second" })]
          ]
          for (const [label, effect] of refused) {
            const error = yield* failure(effect)
            expect([label, error.reason]).toEqual([label, "InvalidInput"])
          }
          expect(yield* h.size).toBe(0)
          yield* h.register("third", { n: 1 }, { ttl: Duration.seconds(1000 / 3) })
          yield* h.register("edge", { n: 1 }, { createdAt: 0, expiresAt: 8.64e15 })
          yield* h.register("half", { n: 1 }, { createdAt: 2.5, expiresAt: 10.5 })
          expect(yield* h.registerIfAbsent("rounded-claim", { n: 1 }, { ttl: "1.5 millis" })).toBe(true)
          const entry = (key: string) => Effect.map(h.lookupEntry(key), (e) => Option.map(e, (x) => [x.createdAt, x.expiresAt]))
          expect(yield* entry("third")).toEqual(Option.some([0, 333_333]))
          expect(yield* entry("edge")).toEqual(Option.some([0, 8.64e15]))
          expect(yield* entry("half")).toEqual(Option.some([3, 11]))
          expect(yield* entry("rounded-claim")).toEqual(Option.some([0, 2]))
        })
      )
    )

    it.scoped("20 concurrent writers never leave a reject-new namespace over its bound", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ maxEntries: 3, overflow: "reject-new" })
          const results = yield* Effect.all(
            Array.from({ length: 20 }, (_, i) => Effect.either(h.register(`w${i}`, { n: i }))),
            { concurrency: "unbounded" }
          )
          expect(results.filter(Either.isRight)).toHaveLength(3)
          expect(results.filter(Either.isLeft).map((r) => (Either.isLeft(r) ? r.left.reason : ""))).toEqual(Array(17).fill("LimitExceeded"))
          expect(yield* h.size).toBe(3)
        })
      )
    )

    it.scoped("50 concurrent registerIfAbsent of one key: exactly one wins; 50 concurrent consumes: one value", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const claims = yield* Effect.all(
            Array.from({ length: 50 }, (_, i) => h.registerIfAbsent("race", { n: i })),
            { concurrency: "unbounded" }
          )
          expect(claims.filter(Boolean)).toHaveLength(1)
          const consumed = yield* Effect.all(
            Array.from({ length: 50 }, () => h.consume("race")),
            { concurrency: "unbounded" }
          )
          expect(consumed.filter(Option.isSome)).toHaveLength(1)
        })
      )
    )
  })

/** `depth` levels of nested arrays. */
const deep = (depth: number): unknown => {
  let value: unknown = 0
  for (let i = 1; i < depth; i++) value = [value]
  return value
}
const cyclic = () => {
  const node: Record<string, unknown> = {}
  node.self = node
  return node
}

for (const backend of backends) conformance(backend)

/** How many rows the entries table holds (every owner, expired ones too), read with plain SQL. */
const countEntries = (db: TestDatabase) =>
  Effect.provide(
    Effect.flatMap(SqlClient, (sql) => sql<{ n: number | string }>`SELECT count(*) AS n FROM channel_state_entries`),
    db.sql!
  ).pipe(Effect.map((rows) => Number(rows[0]?.n)))

/** What only a database that outlives the store can show. */
const durability = (backend: BackendFactory) =>
  describe(`KeyedStore durability: ${backend.name}`, () => {
    it.scoped("data survives closing and reopening the store on the same database", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open({ ttl: "1 hour" })
            yield* h.register("kept", { n: 42, text: "é😀" })
            yield* h.register("consumed", { n: 1 })
            yield* h.consume("consumed")
          })
        )
        const after = yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open({ ttl: "1 hour" })
            return [yield* h.lookupEntry("kept"), yield* h.lookup("consumed")] as const
          })
        )
        expect(Option.getOrThrow(after[0])).toEqual({ key: "kept", value: { n: 42, text: "é😀" }, createdAt: 0, expiresAt: 3_600_000 })
        expect(after[1]).toEqual(Option.none())
      })
    )

    it.scoped("a row that no longer decodes is a Corrupt error for that key, and is removed", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open()
            yield* h.register("bad-json", { n: 1 })
            yield* h.register("bad-shape", { n: 2 })
            yield* h.register("good", { n: 3 })
          })
        )
        yield* Effect.provide(
          Effect.gen(function* () {
            const sql = yield* SqlClient
            yield* sql`UPDATE channel_state_entries SET value_json = ${"{not json"} WHERE entry_key = ${"bad-json"}`
            yield* sql`UPDATE channel_state_entries SET value_json = ${'{"n":"secret-user-text"}'} WHERE entry_key = ${"bad-shape"}`
          }),
          db.sql!
        )
        yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open()
            const first = yield* failure(h.lookup("bad-json"))
            expect(first).toMatchObject({ reason: "Corrupt", key: "bad-json" })
            const second = yield* failure(h.consume("bad-shape"))
            expect(second).toMatchObject({ reason: "Corrupt", key: "bad-shape" })
            expect(second.message).not.toContain("secret-user-text")
            expect(yield* h.lookup("bad-json")).toEqual(Option.none())
            expect((yield* h.entries).map((e) => e.key)).toEqual(["good"])
          })
        )
      })
    )

    it.scoped("a database stamped with a newer schema version is refused and left untouched", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* withStore(db, Effect.flatMap(open(), (h) => h.register("k", { n: 1 })))
        const future = SCHEMA_VERSION + 1
        yield* Effect.provide(
          Effect.flatMap(SqlClient, (sql) => sql`INSERT INTO channel_state_migrations (migration_id, name) VALUES (${future}, ${"from_the_future"})`),
          db.sql!
        )
        const exit = yield* Effect.exit(withStore(db, open()))
        expect(Exit.isFailure(exit)).toBe(true)
        const error = Exit.isFailure(exit) ? exit.cause : undefined
        expect(String(error)).toContain("SchemaUnsupported")
        expect(String(error)).toContain(`schema version ${future}`)
        expect(yield* countEntries(db)).toBe(1)
      })
    )

    it.scoped("the sweeper deletes expired rows in bounded batches on its interval (TestClock)", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const countAll = countEntries(db)
        yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open({ maxEntries: 1000 })
            yield* h.writeBatch(
              Array.from({ length: 25 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: { n: i }, createdAt: 0, expiresAt: i < 20 ? 1000 : undefined }))
            )
            expect(yield* countAll).toBe(25)
            yield* TestClock.adjust("9 seconds")
            expect(yield* countAll).toBe(25)
            yield* TestClock.adjust("1 second")
            expect(yield* eventually(countAll, (n) => n === 5)).toBe(5)
          }),
          { sweepInterval: Duration.seconds(10), sweepBatchSize: 3 }
        )
      })
    )
  })

for (const backend of sqlBackends) durability(backend)

