/**
 * Under attack: lookupMany / deleteMany by position, duplicates, corrupt rows, bad keys; on every
 * backend (a row is made "corrupt" on memory too, by a Schema whose decode refuses what its
 * encode wrote).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option, ParseResult, Schema, TestClock } from "effect"
import { KeyedStore, type WriteOptions } from "../src/KeyedStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, backends } from "./support/backends.js"

const withFreshStore = <A, E>(backend: BackendFactory, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) =>
  Effect.flatMap(backend.fresh, (db) => Effect.scoped(Effect.provide(body, db.store(settings))))

/** 13 encodes, but never decodes: a row holding it is a corrupt row. */
const Picky = Schema.transformOrFail(Schema.Number, Schema.Number, {
  strict: true,
  decode: (n, _, ast) => (n === 13 ? ParseResult.fail(new ParseResult.Type(ast, n, "thirteen")) : ParseResult.succeed(n)),
  encode: (n) => ParseResult.succeed(n)
})

const open = (namespace = "bulk", owner = "attacker") => Effect.flatMap(KeyedStore, (store) => store.open({ owner, namespace, schema: Picky, maxEntries: 100 }))

const shown = (results: ReadonlyArray<Either.Either<Option.Option<number>, StateStoreError>>) =>
  results.map((r) => (Either.isLeft(r) ? `error:${r.left.reason}` : Option.getOrUndefined(r.right)))

const suite = (backend: BackendFactory) =>
  describe(`KeyedStore many-key members, hostile input: ${backend.name}`, () => {
    it.scoped("lookupMany: a corrupt key named twice is Corrupt at both positions (as a key named twice is answered twice)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("good", 1)
          yield* h.register("bad", 13)
          expect(shown(yield* h.lookupMany(["bad", "good", "bad"]))).toEqual(["error:Corrupt", 1, "error:Corrupt"])
          // removed
          expect(yield* h.size).toBe(1)
        })
      )
    )

    it.scoped("lookupMany / deleteMany refuse a bad key anywhere in the list before reading or deleting anything", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("a", 1)
          yield* h.register("bad", 13)
          for (const bad of ["", "x\u0000", "\uD800", "k".repeat(513), 5 as unknown as string, undefined as unknown as string]) {
            const many = yield* Effect.either(h.lookupMany(["bad", bad]))
            expect(Either.isLeft(many) && many.left.reason).toBe("InvalidInput")
            const del = yield* Effect.either(h.deleteMany(["a", bad]))
            expect(Either.isLeft(del) && del.left.reason).toBe("InvalidInput")
          }
          // a sparse list has a hole: a bad key
          const sparse = yield* Effect.either(h.deleteMany(Object.assign(new Array<string>(3), { 0: "a", 2: "b" })))
          expect(Either.isLeft(sparse) && sparse.left.reason).toBe("InvalidInput")
          expect(yield* h.size).toBe(2)
          // the corrupt row was not read (and so not removed)
          expect(Either.isLeft(yield* Effect.either(h.lookup("bad")))).toBe(true)
        })
      )
    )

    it.scoped("deleteMany: duplicates true at the first position only; expired rows false; other owners and namespaces untouched", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const sibling = yield* open("sibling")
          const stranger = yield* open("bulk", "someone-else")
          yield* h.register("a", 1)
          yield* h.register("b", 2)
          yield* h.register("soon", 3, { ttl: "1 second" })
          yield* sibling.register("a", 1)
          yield* stranger.register("a", 1)
          yield* TestClock.adjust("2 seconds")
          expect(yield* h.deleteMany(["b", "a", "soon", "a", "missing", "b"])).toEqual([true, true, false, false, false, false])
          expect(yield* h.size).toBe(0)
          expect(yield* sibling.size).toBe(1)
          expect(yield* stranger.size).toBe(1)
          // the expired row is gone, and a new one can take its key
          expect(yield* h.registerIfAbsent("soon", 4)).toBe(true)
        })
      )
    )

    it.scoped("lookupMany and deleteMany take exactly 10 000 keys (all duplicates) and refuse 10 001", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("a", 1)
          const same = Array.from({ length: 10_000 }, () => "a")
          const looked = yield* h.lookupMany(same)
          expect(looked.length).toBe(10_000)
          expect(looked.every((r) => Either.isRight(r) && Option.getOrUndefined(r.right) === 1)).toBe(true)
          expect(Either.isLeft(yield* Effect.either(h.deleteMany([...same, "a"])))).toBe(true)
          const deleted = yield* h.deleteMany(same)
          expect(deleted.filter(Boolean).length).toBe(1)
          expect(deleted[0]).toBe(true)
        })
      )
    )

    it.scoped("a retained namespace and the bounded one of the same name: bulk members never cross", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const store = yield* KeyedStore
          const retained = yield* store.open({ owner: "attacker", namespace: "both", schema: Picky, retention: "retained" })
          const bounded = yield* open("both")
          yield* retained.register("k", 1)
          yield* bounded.register("k", 2)
          expect(shown(yield* bounded.lookupMany(["k"]))).toEqual([2])
          expect(yield* bounded.deleteMany(["k"])).toEqual([true])
          expect(shown(yield* retained.lookupMany(["k"]))).toEqual([1])
          expect((yield* retained.entriesInRange({ limit: 10 })).entries.map((e) => e.value)).toEqual([1])
        })
      )
    )

    it.scoped("a retained namespace takes no TTL on any write member, and is never evicted by an owner cap or a sibling", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const store = yield* KeyedStore
          const retained = yield* store.open({ owner: "attacker", namespace: "kept", schema: Picky, retention: "retained" })
          const sibling = yield* store.open({ owner: "attacker", namespace: "evicting", schema: Picky, maxEntries: 2 })
          yield* retained.register("k", 1)
          const seen = yield* retained.observe("k")
          for (const options of [{ ttl: 1 }, { ttl: "1 hour" }, { expiresAt: 8_000_000_000_000 }, { ttl: 0 }, { expiresAt: 0 }] as Array<WriteOptions>) {
            for (const attempt of [
              retained.register("t", 1, options),
              retained.registerIfAbsent("t", 1, options),
              retained.replaceIfEqual("k", 1, 2, options),
              retained.compareAndSet("k", seen.revision, { _tag: "Set", value: 2, options }),
              retained.compareAndSet("t", "-", { _tag: "Set", value: 2, options })
            ]) {
              const result = yield* Effect.either(attempt)
              expect(Either.isLeft(result) && result.left.reason, JSON.stringify(options)).toBe("InvalidInput")
            }
            const batch = yield* retained.writeBatch([{ _tag: "Register", key: "t", value: 1, createdAt: 0, expiresAt: (options as { expiresAt?: number }).expiresAt ?? 1 }])
            expect(batch.refused.map((r) => r.error.reason)).toEqual(["InvalidInput"])
          }
          for (let i = 0; i < 10; i++) yield* sibling.register(`s${i}`, i)
          yield* TestClock.adjust("3650 days")
          expect(shown(yield* retained.lookupMany(["k", "t"]))).toEqual([1, undefined])
        }),
        { ownerMaxEntries: 3, sweepInterval: "20 days" }
      )
    )
  })

for (const backend of backends) suite(backend)
