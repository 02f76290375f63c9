/**
 * Under attack: observe + compareAndSet (atomicity, conflicts, caps) and "no member ever fails with
 * a defect", on every backend.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema, TestClock } from "effect"
import { type CompareResult, KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import { type BackendFactory, backends } from "./support/backends.js"

const withFreshStore = <A, E>(backend: BackendFactory, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) =>
  Effect.flatMap(backend.fresh, (db) => Effect.scoped(Effect.provide(body, db.store(settings))))

const Value = Schema.Struct({ n: Schema.Number })
const open = (namespace = "cas", extra: { maxEntries?: number; overflow?: "evict-oldest" | "reject-new" } = {}) =>
  Effect.flatMap(KeyedStore, (store) => store.open({ owner: "attacker", namespace, schema: Value, maxEntries: extra.maxEntries ?? 100, overflow: extra.overflow }))
const tag = (r: CompareResult<unknown>) => r._tag

/** The exit of `effect`: a typed failure is fine, a defect is not. */
const noDefect = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(Effect.suspend(() => effect)), (exit): Array<string> => {
    if (Exit.isSuccess(exit)) return []
    const defects = [...Cause.defects(exit.cause)]
    if (defects.length > 0) return [`${name} died: ${defects.map(String).join("; ")}`]
    const failure = Option.getOrUndefined(Cause.failureOption(exit.cause)) as { _tag?: string; reason?: string } | undefined
    return failure?._tag === "StateStoreError" ? [] : [`${name} failed with ${String(failure)}`]
  })

const suite = (backend: BackendFactory) =>
  describe(`KeyedStore compareAndSet and typed failures, hostile input: ${backend.name}`, () => {
    it.scoped("a Set that adds a row respects the owner cap: LimitExceeded, nothing changed (evict-oldest and reject-new)", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const full = yield* open("full")
          const evicting = yield* open("evicting", { maxEntries: 10 })
          const rejecting = yield* open("rejecting", { maxEntries: 10, overflow: "reject-new" })
          yield* full.register("a", { n: 1 })
          yield* full.register("b", { n: 2 })
          for (const h of [evicting, rejecting]) {
            const seen = yield* h.observe("x")
            const result = yield* Effect.either(h.compareAndSet("x", seen.revision, { _tag: "Set", value: { n: 3 } }))
            expect(result._tag === "Left" && result.left.reason, h.namespace).toBe("LimitExceeded")
            expect(yield* h.size).toBe(0)
          }
          expect(yield* full.size).toBe(2)
          // Replacing an existing row of a full owner adds none: applied.
          const seenA = yield* full.observe("a")
          expect(tag(yield* full.compareAndSet("a", seenA.revision, { _tag: "Set", value: { n: 9 } }))).toBe("Applied")
        }),
        { ownerMaxEntries: 2 }
      )
    )

    it.scoped("a reject-new namespace full of live rows (an expired row of the key swept): a Set from the absent revision is LimitExceeded", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open("tight", { maxEntries: 2, overflow: "reject-new" })
          yield* h.register("a", { n: 1 })
          yield* h.register("x", { n: 0 }, { ttl: "1 second" })
          yield* TestClock.adjust("2 seconds")
          yield* h.register("b", { n: 2 })
          const seen = yield* h.observe("x")
          expect(seen.revision).toBe("-")
          expect(Option.isNone(seen.entry)).toBe(true)
          const result = yield* Effect.either(h.compareAndSet("x", seen.revision, { _tag: "Set", value: { n: 3 } }))
          expect(result._tag === "Left" && result.left.reason).toBe("LimitExceeded")
          expect((yield* h.entries).map((e) => e.key).sort()).toEqual(["a", "b"])
        })
      )
    )

    it.scoped("deleted and recreated (another value, or the same value later) between observe and compareAndSet: Conflict", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("k", { n: 1 })
          const seen = yield* h.observe("k")
          yield* h.delete("k")
          yield* TestClock.adjust(1)
          yield* h.register("k", { n: 1 })
          const result = yield* h.compareAndSet("k", seen.revision, { _tag: "Set", value: { n: 2 } })
          expect(tag(result)).toBe("Conflict")
          // the conflict's observation is current: it applies
          if (result._tag === "Conflict") expect(tag(yield* h.compareAndSet("k", result.current.revision, { _tag: "Delete" }))).toBe("Applied")
          // observed absent, then created and deleted again: absent again, same revision, applies
          const absent = yield* h.observe("k")
          yield* h.register("k", { n: 5 })
          expect(tag(yield* h.compareAndSet("k", absent.revision, { _tag: "Keep" }))).toBe("Conflict")
          yield* h.delete("k")
          expect(tag(yield* h.compareAndSet("k", absent.revision, { _tag: "Set", value: { n: 6 } }))).toBe("Applied")
          // a TTL change alone is a change
          const before = yield* h.observe("k")
          yield* h.writeBatch([{ _tag: "Register", key: "k", value: { n: 6 }, createdAt: Option.getOrThrow(before.entry).createdAt, expiresAt: 9e12 }])
          expect(tag(yield* h.compareAndSet("k", before.revision, { _tag: "Delete" }))).toBe("Conflict")
        })
      )
    )

    it.scoped("20 concurrent Sets from the absent revision, and 20 concurrent Deletes of one revision: exactly one applies each", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          for (let round = 0; round < 3; round++) {
            const key = `k${round}`
            const sets = yield* Effect.forEach(
              Array.from({ length: 20 }, (_, i) => i),
              (i) => h.compareAndSet(key, "-", { _tag: "Set", value: { n: i } }),
              { concurrency: "unbounded" }
            )
            expect(sets.filter((r) => r._tag === "Applied").length).toBe(1)
            const seen = yield* h.observe(key)
            const deletes = yield* Effect.forEach(Array.from({ length: 20 }), () => h.compareAndSet(key, seen.revision, { _tag: "Delete" }), { concurrency: "unbounded" })
            expect(deletes.filter((r) => r._tag === "Applied").length).toBe(1)
            expect(deletes.filter((r) => r._tag === "Conflict").length).toBe(19)
          }
        })
      )
    )

    it.scoped("concurrent Sets of a new key into a reject-new namespace with room for one: exactly one lands, the rest LimitExceeded or Conflict", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open("one-left", { maxEntries: 2, overflow: "reject-new" })
          yield* h.register("a", { n: 1 })
          const results = yield* Effect.forEach(
            Array.from({ length: 10 }, (_, i) => i),
            (i) => Effect.either(h.compareAndSet(`new${i}`, "-", { _tag: "Set", value: { n: i } })),
            { concurrency: "unbounded" }
          )
          expect(results.filter((r) => r._tag === "Right" && r.right._tag === "Applied").length).toBe(1)
          expect(results.filter((r) => r._tag === "Left").every((r) => r._tag === "Left" && r.left.reason === "LimitExceeded")).toBe(true)
          expect(yield* h.size).toBe(2)
        })
      )
    )

    it.scoped("no member dies on malformed arguments: every failure is a StateStoreError", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = (yield* open()) as NamespaceHandle<unknown>
          yield* h.register("k", { n: 1 })
          const hostileOptions = Object.defineProperty({}, "ttl", {
            get() {
              throw new Error("hostile getter")
            }
          })
          const cases: Array<[string, () => Effect.Effect<unknown, unknown>]> = [
            ["writeBatch(null)", () => h.writeBatch(null as never)],
            ["writeBatch([null])", () => h.writeBatch([null] as never)],
            ["writeBatch([{}])", () => h.writeBatch([{}] as never)],
            ["writeBatch('ab')", () => h.writeBatch("ab" as never)],
            ["lookupMany(null)", () => h.lookupMany(null as never)],
            ["lookupMany('ab')", () => h.lookupMany("ab" as never)],
            ["deleteMany(undefined)", () => h.deleteMany(undefined as never)],
            ["entriesInRange(undefined)", () => h.entriesInRange(undefined as never)],
            ["entriesInRange({limit: 1, order: {}})", () => h.entriesInRange({ limit: 1, order: {} as never })],
            ["entriesInRange({limit: 1, from: Symbol()})", () => h.entriesInRange({ limit: 1, from: Symbol() as never })],
            ["compareAndSet(k, -, null)", () => h.compareAndSet("k", "-", null as never)],
            ["compareAndSet(k, -, Set without value)", () => h.compareAndSet("k", "-", { _tag: "Set" } as never)],
            ["compareAndSet(k, -, Set options 5)", () => h.compareAndSet("k", "-", { _tag: "Set", value: { n: 1 }, options: 5 as never })],
            ["compareAndSet(k, Symbol, Keep)", () => h.compareAndSet("k", Symbol() as never, { _tag: "Keep" })],
            ["observe(Symbol)", () => h.observe(Symbol() as never)],
            ["register(k, v, {ttl: {}})", () => h.register("k", { n: 1 }, { ttl: {} as never })],
            ["register(k, v, {ttl: '1 fortnight'})", () => h.register("k", { n: 1 }, { ttl: "1 fortnight" as never })],
            ["register(k, v, {ttl: Symbol()})", () => h.register("k", { n: 1 }, { ttl: Symbol() as never })],
            ["register(k, v, {ttl: 10n})", () => h.register("k", { n: 1 }, { ttl: 10n as never })],
            ["register(k, v, {createdAt: 10n})", () => h.register("k", { n: 1 }, { createdAt: 10n as never })],
            ["register(k, v, hostile options)", () => h.register("k", { n: 1 }, hostileOptions)],
            ["compareAndSet(k, -, hostile change)", () => h.compareAndSet("k", "-", hostileOptions as never)]
          ]
          const problems: Array<string> = []
          for (const [name, make] of cases) {
            let effect: Effect.Effect<unknown, unknown>
            try {
              effect = make()
            } catch (thrown) {
              problems.push(`${name} threw synchronously: ${String(thrown)}`)
              continue
            }
            problems.push(...(yield* noDefect(name, effect)))
          }
          expect(problems).toEqual([])
        })
      )
    )
  })

for (const backend of backends) suite(backend)
