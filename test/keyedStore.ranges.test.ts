/**
 * Under attack: entriesInRange — UTF-8 byte order on every backend, bounds, cursors; memory agrees
 * with SQL exactly, also for bounds that are not keys (NUL, lone surrogates).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema, TestClock } from "effect"
import { type EntriesPage, KeyedStore, type KeyRange } from "../src/KeyedStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, backends, memoryBackend } from "./support/backends.js"

const withFreshStore = <A, E>(backend: BackendFactory, body: Effect.Effect<A, E, KeyedStore>) =>
  Effect.flatMap(backend.fresh, (db) => Effect.scoped(Effect.provide(body, db.store())))

const open = (namespace = "range") => Effect.flatMap(KeyedStore, (store) => store.open({ owner: "attacker", namespace, schema: Schema.Number, maxEntries: 10_000 }))

const KEYS = [
  "a",
  "ab",
  "a\u0301", // combining acute
  "á", // precomposed
  "A",
  "Z",
  "z",
  "~",
  "\u007F",
  "\u0080",
  "é",
  "ÿ",
  "\u07FF",
  "\u0800",
  "\uD7FF",
  "\uE000",
  "\uFB01",
  "\uFFFD",
  "\uFFFE",
  "\uFFFF",
  "😀",
  "\u{10000}",
  "\u{10FFFF}",
  "a😀",
  "a\uFFFF",
  "a\uE000",
  "aa",
  "a a",
  " ",
  "\t",
  "\u0001"
]

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))
const sorted = (keys: ReadonlyArray<string>, order: "asc" | "desc" = "asc") => [...keys].sort((a, b) => (order === "asc" ? byteOrder(a, b) : byteOrder(b, a)))

const pageAll = (h: { entriesInRange: (r: KeyRange) => Effect.Effect<EntriesPage<number>, StateStoreError> }, range: Omit<KeyRange, "cursor">) =>
  Effect.gen(function* () {
    const keys: Array<string> = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = yield* h.entriesInRange({ ...range, cursor })
      for (const e of page.entries) keys.push(e.key)
      cursor = page.cursor
      if (++pages > 1000) throw new Error("no end")
    } while (cursor !== undefined)
    return keys
  })

/** What a range read of these bounds answers on a backend: the keys, or the failure's reason. */
const rangeOutcome = (backend: BackendFactory, keys: ReadonlyArray<string>, range: KeyRange) =>
  withFreshStore(
    backend,
    Effect.gen(function* () {
      const h = yield* open()
      yield* h.writeBatch(keys.map((key, i) => ({ _tag: "Register" as const, key, value: i, createdAt: 0, expiresAt: undefined })))
      const result = yield* Effect.either(h.entriesInRange(range))
      return Either.isLeft(result) ? `failed:${result.left.reason}` : result.right.entries.map((e) => e.key)
    })
  )

const suite = (backend: BackendFactory) =>
  describe(`KeyedStore key ranges, byte order and bounds: ${backend.name}`, () => {
    it.scoped("every page size, both orders, every from/to pair of the tricky keys: UTF-8 byte order, no duplicates or skips", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.writeBatch(KEYS.map((key, i) => ({ _tag: "Register" as const, key, value: i, createdAt: 1000 - i, expiresAt: undefined })))
          for (const order of ["asc", "desc"] as const) {
            for (const limit of [1, 2, 3, 7, 100]) {
              expect(yield* pageAll(h, { limit, order }), `${order} ${limit}`).toEqual(sorted(KEYS, order))
            }
          }
          const bounds = [...KEYS, "", "a\u0000".slice(0, 1), "\u{10FFFF}\u{10FFFF}", "b"]
          for (const from of bounds) {
            for (const to of bounds) {
              if (byteOrder(from, to) >= 0) continue
              for (const order of ["asc", "desc"] as const) {
                const expected = sorted(
                  KEYS.filter((k) => byteOrder(k, from) >= 0 && byteOrder(k, to) < 0),
                  order
                )
                expect(yield* pageAll(h, { from, to, limit: 3, order }), `[${JSON.stringify(from)}, ${JSON.stringify(to)}) ${order}`).toEqual(expected)
              }
            }
          }
        })
      )
    )

    it.scoped("a cursor past `to` or before `from`, and a cursor that is not a stored key, resume correctly", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* h.writeBatch(KEYS.map((key, i) => ({ _tag: "Register" as const, key, value: i, createdAt: 0, expiresAt: undefined })))
          const page = (range: KeyRange) => Effect.map(h.entriesInRange(range), (p) => p.entries.map((e) => e.key))
          expect(yield* page({ from: "a", to: "b", cursor: "\uFFFF", limit: 100 })).toEqual([])
          expect(yield* page({ from: "a", to: "b", cursor: "0", limit: 100 })).toEqual(sorted(KEYS.filter((k) => byteOrder(k, "a") >= 0 && byteOrder(k, "b") < 0)))
          expect(yield* page({ cursor: "a\uD83D\uDE00", limit: 100, order: "desc" })).toEqual(sorted(KEYS.filter((k) => byteOrder(k, "a😀") < 0), "desc"))
          expect(yield* page({ cursor: "\u{10FFFF}", limit: 100 })).toEqual([])
        })
      )
    )

    it.scoped("expired rows are skipped and never end a page early; the cursor is undefined exactly at the end", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          yield* TestClock.setTime(10_000)
          yield* h.writeBatch(["a", "b", "c", "d", "e"].map((key, i) => ({ _tag: "Register" as const, key, value: i, createdAt: 0, expiresAt: key === "b" || key === "e" ? 5_000 : undefined })))
          const first = yield* h.entriesInRange({ limit: 2 })
          expect(first.entries.map((e) => e.key)).toEqual(["a", "c"])
          expect(first.cursor).toBe("c")
          const second = yield* h.entriesInRange({ limit: 2, cursor: first.cursor })
          expect(second.entries.map((e) => e.key)).toEqual(["d"])
          expect(second.cursor).toBeUndefined()
          const exact = yield* h.entriesInRange({ limit: 3 })
          expect(exact.cursor).toBeUndefined()
        })
      )
    )

    it.scoped("lookupMany and deleteMany find every tricky key (numeric-looking, JSON-escaped, astral, combining) by position", () =>
      withFreshStore(
        backend,
        Effect.gen(function* () {
          const h = yield* open()
          const keys = [...KEYS, "1", "1.0", "true", "null", '"quoted"', "back\\slash", "\\u0041", "[1]", "{}", "\u2028"]
          yield* h.writeBatch(keys.map((key, i) => ({ _tag: "Register" as const, key, value: i, createdAt: 0, expiresAt: undefined })))
          const asked = [...keys].reverse()
          const found = yield* h.lookupMany(asked)
          expect(found.map((r) => (Either.isRight(r) && r.right._tag === "Some" ? r.right.value : "missing"))).toEqual(asked.map((k) => keys.indexOf(k)))
          expect(yield* h.deleteMany(asked)).toEqual(asked.map(() => true))
        })
      )
    )

    if (backend.name !== "memory") {
      // Bounds need not be keys: the same bound must answer the same on memory (the reference) and SQL.
      for (const [name, range] of [
        ["from with NUL", { from: "a\u0000", limit: 100 }],
        ["to with NUL", { to: "a\u0000", limit: 100 }],
        ["from a lone high surrogate", { from: "\uD800", limit: 100 }],
        ["to a lone low surrogate", { to: "\uDC00", limit: 100 }],
        ["from a lone surrogate, desc", { from: "a\uD83D", limit: 100, order: "desc" }]
      ] as const) {
        it.scoped(`bound ${name}: same answer as memory`, () =>
          Effect.gen(function* () {
            const reference = yield* rangeOutcome(memoryBackend, KEYS, range)
            const here = yield* rangeOutcome(backend, KEYS, range)
            expect(here).toEqual(reference)
          })
        )
      }
    }
  })

for (const backend of backends) suite(backend)
