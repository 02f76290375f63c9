/**
 * Awkward input on every backend: keys with quotes, SQL wildcards, backslashes, emoji and
 * multi-byte characters at the byte limits, values at the size limit — stored and read back
 * byte-exact, or refused with a typed error that leaves what is stored unchanged.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option, Schema } from "effect"
import { KeyedStore, type StoredEntry } from "../src/KeyedStore.js"
import { DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES } from "../src/layers/store/storeRules.js"
import { backends } from "./support/backends.js"

const AWKWARD_KEYS = [
  "it's",
  'say "hi"',
  "100%",
  "a_c",
  "abc",
  "back\\slash",
  "semi;colon -- comment",
  "😀 emoji ✅",
  "tab\tnew\nline",
  "é".repeat(MAX_KEY_BYTES / 2), // 2 bytes each: exactly 512 bytes
  "😀".repeat(MAX_KEY_BYTES / 4) // 4 bytes each: exactly 512 bytes
]

const snapshot = (entries: ReadonlyArray<StoredEntry<unknown>>) => entries.map((e) => [e.key, JSON.stringify(e.value)])

for (const backend of backends) {
  describe(`bad input (${backend.name})`, () => {
    it.scoped("awkward keys and values round-trip byte-exact; wildcards match nothing else", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* Effect.gen(function* () {
          const store = yield* KeyedStore
          const h = yield* store.open({ owner: "o", namespace: "awkward_ns.v-1", schema: Schema.Unknown, maxEntries: 100 })
          for (const [i, key] of AWKWARD_KEYS.entries()) yield* h.register(key, { i, echo: key, nul: "a\u0000b" })
          for (const [i, key] of AWKWARD_KEYS.entries()) {
            expect(yield* h.lookup(key)).toEqual(Option.some({ i, echo: key, nul: "a\u0000b" }))
          }
          expect((yield* h.entries).map((e) => e.key).sort()).toEqual([...AWKWARD_KEYS].sort())
          // `%` and `_` are plain characters: no pattern matching anywhere.
          expect(yield* h.lookup("100")).toEqual(Option.none())
          expect(yield* h.lookup("a%")).toEqual(Option.none())
          expect(yield* h.delete("a_")).toBe(false)
          expect(yield* h.consume("a_c")).toEqual(Option.some({ i: 3, echo: "a_c", nul: "a\u0000b" }))
          expect(yield* h.lookup("abc")).toEqual(Option.some({ i: 4, echo: "abc", nul: "a\u0000b" }))
        }).pipe(Effect.provide(db.store()), Effect.scoped)
      })
    )

    it.scoped("refused input is a typed InvalidInput and changes nothing stored", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* Effect.gen(function* () {
          const store = yield* KeyedStore
          const h = yield* store.open({ owner: "o", namespace: "limits", schema: Schema.Unknown, maxEntries: 100 })
          // A JSON string of exactly 1 MiB (two quote bytes included), and keys at the limit.
          yield* h.register("max-value", "x".repeat(DEFAULT_MAX_VALUE_BYTES - 2))
          yield* h.register("keep", { n: 1 })
          const before = snapshot(yield* h.entries)
          const refused = [
            [h.register("keep", "x".repeat(DEFAULT_MAX_VALUE_BYTES - 1)), "LimitExceeded"],
            [h.register(`${"é".repeat(MAX_KEY_BYTES / 2)}x`, 1), "InvalidInput"],
            [h.register("keep", Number.POSITIVE_INFINITY), "InvalidInput"],
            [h.register("keep", { date: new Date(0) }), "InvalidInput"],
            [h.register("keep", new Set([1])), "InvalidInput"],
            [h.registerIfAbsent("", 1), "InvalidInput"]
          ] as const
          for (const [attempt, reason] of refused) {
            const result = yield* Effect.either(attempt)
            expect(Either.isLeft(result) && result.left.reason).toBe(reason)
          }
          expect(snapshot(yield* h.entries)).toEqual(before)
          // In a batch, the bad step is refused alone: "keep" keeps its value, the good step lands.
          const batch = yield* h.writeBatch([
            { _tag: "Register", key: "fine", value: 1, createdAt: 0, expiresAt: undefined },
            { _tag: "Register", key: "keep", value: () => 1, createdAt: 0, expiresAt: undefined }
          ])
          expect(batch.refused.map((r) => [r.key, r.error.reason])).toEqual([["keep", "InvalidInput"]])
          expect(yield* h.lookup("keep")).toEqual(Option.some({ n: 1 }))
          expect(yield* h.lookup("fine")).toEqual(Option.some(1))
          const wrong = yield* Effect.either(store.open({ owner: "O", namespace: "limits", schema: Schema.Unknown, maxEntries: 1 }))
          expect(Either.isLeft(wrong) && wrong.left.message).toContain("owner")
        }).pipe(Effect.provide(db.store()), Effect.scoped)
      })
    )
  })
}
