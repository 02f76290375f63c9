/**
 * The keyed store's many-key, range, compare-and-set and retained-namespace members, written
 * once and run on memory, SQLite and PostgreSQL: each guarantee with a case that tries to
 * break it (duplicates, expired rows, other namespaces, a page read while rows are inserted,
 * a row that expires or changes between observe and write, concurrent writers).
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Option, Schema, TestClock } from "effect"
import { type BoundedNamespaceOptions, type CompareResult, KeyedStore, MAX_KEYS_PER_CALL, type StoredEntry } from "../src/KeyedStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, backends, sqlBackends, type TestDatabase } from "./support/backends.js"

const Value = Schema.Struct({ n: Schema.Number })
type Value = typeof Value.Type

const options = (overrides: Partial<BoundedNamespaceOptions<Value, unknown>> = {}): BoundedNamespaceOptions<Value, unknown> => ({
  owner: "plugin-a",
  namespace: "things",
  schema: Value as Schema.Schema<Value, unknown>,
  maxEntries: 100_000,
  ...overrides
})

const withStore = <A, E>(db: TestDatabase, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) => Effect.scoped(Effect.provide(body, db.store(settings)))
const withFreshStore = <A, E>(backend: BackendFactory, body: Effect.Effect<A, E, KeyedStore>, settings?: Partial<StoreSettings>) =>
  Effect.flatMap(backend.fresh, (db) => withStore(db, body, settings))
const open = (overrides: Partial<BoundedNamespaceOptions<Value, unknown>> = {}) => Effect.flatMap(KeyedStore, (store) => store.open(options(overrides)))

const failure = <A>(effect: Effect.Effect<A, StateStoreError, KeyedStore>) =>
  Effect.map(Effect.either(effect), (result) => {
    if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
    return result.left
  })

const values = (results: ReadonlyArray<Either.Either<Option.Option<Value>, StateStoreError>>) =>
  results.map((result) => (Either.isLeft(result) ? `error:${result.left.reason}` : Option.getOrUndefined(Option.map(result.right, (v) => v.n))))
const keysOf = (entries: ReadonlyArray<StoredEntry<unknown>>) => entries.map((entry) => entry.key)
const tagOf = (result: CompareResult<unknown>) => result._tag

const suite = (backend: BackendFactory) =>
  describe(`KeyedStore v2 members: ${backend.name}`, () => {
    it.scoped("lookupMany answers each position: duplicates answered twice as distinct values, missing and expired none, other namespaces invisible", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const sibling = yield* open({ namespace: "sibling" })
          const stranger = yield* Effect.flatMap(KeyedStore, (store) => store.open(options({ owner: "plugin-b" })))
          yield* h.register("a", { n: 1 })
          yield* h.register("b", { n: 2 })
          yield* h.register("soon", { n: 3 }, { ttl: "1 second" })
          yield* sibling.register("c", { n: 30 })
          yield* stranger.register("d", { n: 40 })
          yield* TestClock.adjust("1 second")
          const results = yield* h.lookupMany(["b", "missing", "a", "soon", "c", "d", "b"])
          expect(values(results)).toEqual([2, undefined, 1, undefined, undefined, undefined, 2])
          const [first, , , , , , last] = results.map((r) => Option.getOrUndefined(Either.getOrThrow(r)))
          expect(first).toEqual(last)
          expect(first).not.toBe(last)
          expect(yield* h.lookupMany([])).toEqual([])
        })
      )
    )

    it.scoped("lookupMany takes 10 000 keys in one call and refuses 10 001 or one bad key, reading nothing", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const keys = Array.from({ length: MAX_KEYS_PER_CALL }, (_, i) => `key-${i}`)
          yield* h.writeBatch(keys.filter((_, i) => i % 3 === 0).map((key, i) => ({ _tag: "Register" as const, key, value: { n: i }, createdAt: 0, expiresAt: undefined })))
          const results = yield* h.lookupMany(keys)
          expect(results.length).toBe(MAX_KEYS_PER_CALL)
          expect(results.filter((r) => Option.isSome(Either.getOrThrow(r))).length).toBe(Math.ceil(MAX_KEYS_PER_CALL / 3))
          expect(values(results).slice(0, 4)).toEqual([0, undefined, undefined, 1])
          const tooMany = yield* failure(h.lookupMany([...keys, "one-more"]))
          expect(tooMany.reason).toBe("InvalidInput")
          expect(tooMany.message).toContain("10000")
          const badKey = yield* failure(h.lookupMany(["key-0", ""]))
          expect(badKey.reason).toBe("InvalidInput")
        })
      )
    )

    it.scoped("deleteMany removes the live rows named, says which, and only in its namespace", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const sibling = yield* open({ namespace: "sibling" })
          yield* h.register("a", { n: 1 })
          yield* h.register("b", { n: 2 })
          yield* h.register("soon", { n: 3 }, { ttl: "1 second" })
          yield* sibling.register("a", { n: 10 })
          yield* TestClock.adjust("1 second")
          expect(yield* h.deleteMany(["a", "missing", "soon", "a", "b"])).toEqual([true, false, false, false, true])
          expect(yield* h.size).toBe(0)
          expect(yield* sibling.lookup("a")).toEqual(Option.some({ n: 10 }))
          expect(yield* h.deleteMany([])).toEqual([])
          expect((yield* failure(h.deleteMany(["ok", "nul\u0000"]))).reason).toBe("InvalidInput")
          expect(yield* sibling.lookup("a")).toEqual(Option.some({ n: 10 }))
        })
      )
    )

    it.scoped("entriesInRange: bounds, order, limit and pages in UTF-8 byte order (not UTF-16), expired rows skipped", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          // "\uFFFF" sorts before "😀" in UTF-8 bytes (EF… < F0…), after it in UTF-16 code units.
          const keys = ["event:0001", "event:0002", "event:0003", "event:\uFFFF", "event:😀", "other:0001"]
          for (const [i, key] of keys.entries()) yield* h.register(key, { n: i })
          yield* h.register("event:0000", { n: -1 }, { ttl: "1 second" })
          yield* TestClock.adjust("1 second")
          const all = yield* h.entriesInRange({ from: "event:", to: "event;", limit: 100 })
          expect(keysOf(all.entries)).toEqual(keys.slice(0, 5))
          expect(all.cursor).toBeUndefined()
          const desc = yield* h.entriesInRange({ from: "event:", to: "event;", limit: 2, order: "desc" })
          expect(keysOf(desc.entries)).toEqual(["event:😀", "event:\uFFFF"])
          const next = yield* h.entriesInRange({ from: "event:", to: "event;", limit: 2, order: "desc", cursor: desc.cursor })
          expect(keysOf(next.entries)).toEqual(["event:0003", "event:0002"])
          const last = yield* h.entriesInRange({ from: "event:", to: "event;", limit: 2, order: "desc", cursor: next.cursor })
          expect(keysOf(last.entries)).toEqual(["event:0001"])
          expect(last.cursor).toBeUndefined()
          const unbounded = yield* h.entriesInRange({ limit: 1, from: "event:0002" })
          expect(keysOf(unbounded.entries)).toEqual(["event:0002"])
          expect(unbounded.entries[0]).toMatchObject({ value: { n: 1 }, expiresAt: undefined })
          expect(keysOf((yield* h.entriesInRange({ limit: 10, to: "event:0002" })).entries)).toEqual(["event:0001"])
          for (const range of [{ from: "b", to: "a", limit: 1 }, { from: "a", to: "a", limit: 1 }, { limit: 0 }, { limit: MAX_KEYS_PER_CALL + 1 }, { limit: 1.5 }, { limit: 1, order: "up" as "asc" }, { limit: 1, cursor: "" }]) {
            expect((yield* failure(h.entriesInRange(range))).reason, JSON.stringify(range)).toBe("InvalidInput")
          }
        })
      )
    )

    it.scoped("a range read resumed page by page while rows are inserted and deleted returns no key twice and every surviving key once", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const key = (i: number) => `k${String(i).padStart(4, "0")}`
          for (let i = 0; i < 100; i += 2) yield* h.register(key(i), { n: i })
          const seen: Array<string> = []
          let cursor: string | undefined
          let page = 0
          do {
            const result = yield* h.entriesInRange({ from: "k", to: "l", limit: 7, cursor })
            seen.push(...keysOf(result.entries))
            cursor = result.cursor
            // Between pages: odd keys appear on both sides of the cursor, and an even key ahead is deleted.
            yield* h.register(key(page * 14 + 1), { n: 1 })
            yield* h.register(key(page * 14 + 41), { n: 1 })
            yield* h.delete(key(page * 14 + 60))
            page++
          } while (cursor !== undefined)
          expect(new Set(seen).size).toBe(seen.length)
          expect([...seen].sort()).toEqual(seen)
          const stored = keysOf(yield* h.entries)
          // Every even key still stored that was there from the start was returned exactly once.
          const survivors = stored.filter((k) => Number(k.slice(1)) % 2 === 0)
          expect(survivors.filter((k) => !seen.includes(k))).toEqual([])
          // An odd key written ahead of the cursor was picked up by a later page.
          expect(seen.some((k) => Number(k.slice(1)) % 2 === 1)).toBe(true)
        })
      )
    )

    it.scoped("observe + compareAndSet: applied while the row is as observed; a conflict, with the current observation, once anything changed it", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const absent = yield* h.observe("k")
          expect(absent.entry).toEqual(Option.none())
          expect(tagOf(yield* h.compareAndSet("k", absent.revision, { _tag: "Set", value: { n: 1 } }))).toBe("Applied")
          // The same absent-revision again: the key exists now.
          const stale = yield* h.compareAndSet("k", absent.revision, { _tag: "Set", value: { n: 99 } })
          expect(stale._tag).toBe("Conflict")
          const current = stale._tag === "Conflict" ? stale.current : absent
          expect(Option.map(current.entry, (e) => e.value)).toEqual(Option.some({ n: 1 }))
          expect(current).toEqual(yield* h.observe("k"))
          expect(tagOf(yield* h.compareAndSet("k", current.revision, { _tag: "Keep" }))).toBe("Unchanged")
          // Re-registering the very same value later is a change: createdAt moved.
          yield* TestClock.adjust("1 millis")
          yield* h.register("k", { n: 1 })
          expect(tagOf(yield* h.compareAndSet("k", current.revision, { _tag: "Set", value: { n: 2 } }))).toBe("Conflict")
          const fresh = yield* h.observe("k")
          expect(tagOf(yield* h.compareAndSet("k", fresh.revision, { _tag: "Set", value: { n: 2 }, options: { ttl: "10 seconds" } }))).toBe("Applied")
          expect(Option.map(yield* h.lookupEntry("k"), (e) => [e.value, e.expiresAt])).toEqual(Option.some([{ n: 2 }, 1 + 10_000]))
          expect(yield* h.lookup("k")).toEqual(Option.some({ n: 2 }))
          const before = yield* h.observe("k")
          expect(tagOf(yield* h.compareAndSet("k", before.revision, { _tag: "Delete" }))).toBe("Applied")
          expect(yield* h.lookup("k")).toEqual(Option.none())
          expect(tagOf(yield* h.compareAndSet("k", (yield* h.observe("k")).revision, { _tag: "Delete" }))).toBe("Unchanged")
        })
      )
    )

    it.scoped("compareAndSet: a row that expired after it was observed conflicts; an expired row is absent", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("lease", { n: 1 }, { ttl: "5 seconds" })
          const seen = yield* h.observe("lease")
          yield* TestClock.adjust("5 seconds")
          const late = yield* h.compareAndSet("lease", seen.revision, { _tag: "Set", value: { n: 2 } })
          expect(late._tag === "Conflict" && late.current.entry).toEqual(Option.none())
          expect(yield* h.lookup("lease")).toEqual(Option.none())
          const gone = yield* h.observe("lease")
          expect(gone.revision).toBe((yield* h.observe("never-written")).revision)
          expect(tagOf(yield* h.compareAndSet("lease", gone.revision, { _tag: "Set", value: { n: 3 } }))).toBe("Applied")
          expect(yield* h.lookup("lease")).toEqual(Option.some({ n: 3 }))
        })
      )
    )

    it.scoped("compareAndSet refuses a bad revision, change or value (even when it would conflict) and a full reject-new namespace, changing nothing", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open({ namespace: "full", maxEntries: 1, overflow: "reject-new" })
          yield* h.register("only", { n: 1 })
          const seen = yield* h.observe("only")
          expect((yield* failure(h.compareAndSet("only", "not-a-revision", { _tag: "Keep" }))).reason).toBe("InvalidInput")
          expect((yield* failure(h.compareAndSet("only", seen.revision, { _tag: "Nope" } as never))).reason).toBe("InvalidInput")
          expect((yield* failure(h.compareAndSet("only", "-", { _tag: "Set", value: { n: "x" } as never }))).reason).toBe("InvalidInput")
          const absent = yield* h.observe("second")
          expect((yield* failure(h.compareAndSet("second", absent.revision, { _tag: "Set", value: { n: 2 } }))).reason).toBe("LimitExceeded")
          expect(yield* h.lookup("second")).toEqual(Option.none())
          // Replacing the one row adds none: it fits.
          expect(tagOf(yield* h.compareAndSet("only", seen.revision, { _tag: "Set", value: { n: 5 } }))).toBe("Applied")
          expect(keysOf(yield* h.entries)).toEqual(["only"])
        })
      )
    )

    it.scoped("of 20 concurrent compareAndSets holding one revision, exactly one applies", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.register("counter", { n: 0 })
          const seen = yield* h.observe("counter")
          const results = yield* Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i + 1),
            (i) => h.compareAndSet("counter", seen.revision, { _tag: "Set", value: { n: i } }),
            { concurrency: "unbounded" }
          )
          const applied = results.flatMap((r, i) => (r._tag === "Applied" ? [i + 1] : []))
          expect(applied.length).toBe(1)
          expect(yield* h.lookup("counter")).toEqual(Option.some({ n: applied[0]! }))
          for (const r of results) if (r._tag === "Conflict") expect(Option.map(r.current.entry, (e) => e.value)).toEqual(Option.some({ n: applied[0]! }))
        })
      )
    )

    it.scoped("a retained namespace keeps every row without TTL or bound, apart from the bounded namespace of the same name", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const store = yield* KeyedStore
          const retained = yield* store.open({ owner: "plugin-a", namespace: "history", schema: Value as Schema.Schema<Value, unknown>, retention: "retained" })
          const bounded = yield* open({ namespace: "history", maxEntries: 2 })
          expect(retained.namespace).toBe("@retained.history")
          yield* retained.writeBatch(Array.from({ length: 1500 }, (_, i) => ({ _tag: "Register" as const, key: `r${i}`, value: { n: i }, createdAt: i, expiresAt: undefined })))
          yield* retained.register("late", { n: -1 })
          expect(yield* retained.registerIfAbsent("claimed", { n: -2 })).toBe(true)
          yield* bounded.register("b1", { n: 1 })
          yield* bounded.register("b2", { n: 2 })
          yield* bounded.register("b3", { n: 3 })
          expect(yield* retained.size).toBe(1502)
          expect(yield* bounded.size).toBe(2)
          expect(yield* retained.lookup("r0")).toEqual(Option.some({ n: 0 }))
          expect(yield* bounded.lookup("r0")).toEqual(Option.none())
          yield* TestClock.adjust(Duration.hours(1))
          expect(yield* retained.lookup("r0")).toEqual(Option.some({ n: 0 }))
          for (const refused of [
            retained.register("ttl", { n: 1 }, { ttl: "1 minute" }),
            retained.registerIfAbsent("ttl", { n: 1 }, { expiresAt: 10 }),
            retained.compareAndSet("ttl", "-", { _tag: "Set", value: { n: 1 }, options: { ttl: 5 } })
          ]) {
            const error = yield* failure(refused)
            expect(error.reason).toBe("InvalidInput")
            expect(error.message).toContain("retained")
          }
          const batch = yield* retained.writeBatch([{ _tag: "Register", key: "ttl", value: { n: 1 }, createdAt: 0, expiresAt: 5 }])
          expect(batch.refused.map((r) => r.error.reason)).toEqual(["InvalidInput"])
          for (const wrong of [{ maxEntries: 10 }, { ttl: "1 minute" }, { overflow: "reject-new" }]) {
            const error = yield* failure(store.open({ owner: "plugin-a", namespace: "other", schema: Value, retention: "retained", ...wrong } as never))
            expect(error.message).toContain("retained namespace takes no")
          }
        })
      )
    )

    it.scoped("namespaces may hold upper-case letters and stay case-sensitive", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const upper = yield* open({ namespace: "Bindings" })
          const lower = yield* open({ namespace: "bindings" })
          yield* upper.register("k", { n: 1 })
          expect(yield* lower.lookup("k")).toEqual(Option.none())
          expect(yield* upper.lookup("k")).toEqual(Option.some({ n: 1 }))
        })
      )
    )

    it.scoped("the value limit is a store setting: past it LimitExceeded, a wrong setting InvalidInput", () =>
      Effect.gen(function* () {
        yield* withFreshStore(
          backend,
          Effect.gen(function* () {
            const raw = yield* Effect.flatMap(KeyedStore, (store) => store.open({ owner: "plugin-a", namespace: "raw", schema: Schema.String, maxEntries: 10 }))
            yield* raw.register("fits", "x".repeat(98))
            const error = yield* failure(raw.register("big", "x".repeat(99)))
            expect(error.reason).toBe("LimitExceeded")
            expect(error.message).toContain("the limit is 100")
          }),
          { maxValueBytes: 100 }
        )
        const db = yield* backend.fresh
        const wrong = yield* Effect.either(withStore(db, open(), { maxValueBytes: 0 }))
        expect(Either.isLeft(wrong) && wrong.left.message).toContain("maxValueBytes")
      })
    )
  })

for (const backend of backends) suite(backend)

const corruption = (backend: BackendFactory) =>
  describe(`KeyedStore v2 members on a corrupt row: ${backend.name}`, () => {
    it.scoped("lookupMany reports a row that no longer decodes at its own position (and removes it); the range read fails Corrupt; observe fails Corrupt", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open()
            for (const key of ["a", "bad", "c", "bad2"]) yield* h.register(key, { n: 1 })
          })
        )
        yield* Effect.provide(
          Effect.gen(function* () {
            const sql = yield* SqlClient
            yield* sql`UPDATE channel_state_entries SET value_json = ${"{not json"} WHERE entry_key IN (${"bad"}, ${"bad2"})`
          }),
          db.sql!
        )
        yield* withStore(
          db,
          Effect.gen(function* () {
            const h = yield* open()
            expect(values(yield* h.lookupMany(["a", "bad", "c", "bad"]))).toEqual([1, "error:Corrupt", 1, "error:Corrupt"])
            expect(yield* h.size).toBe(3)
            expect((yield* failure(h.entriesInRange({ limit: 10 }))).reason).toBe("Corrupt")
            expect(keysOf((yield* h.entriesInRange({ limit: 10 })).entries)).toEqual(["a", "c"])
          })
        )
      })
    )
  })

for (const backend of sqlBackends) corruption(backend)
