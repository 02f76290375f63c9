/**
 * Bursts of concurrent lookups (coalesced into `lookupMany` statements on PostgreSQL) answer
 * exactly what the same lookups answer one at a time: live, missing, expired and repeated keys,
 * a row that no longer decodes (a `Corrupt` error for its key alone, named `lookup`, the row
 * removed) and a key the store refuses (an `InvalidInput` for it alone) — on every backend.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { backends, type BackendFactory } from "./support/backends.js"

const Value = Schema.Struct({ n: Schema.Number })
const options = { owner: "p", namespace: "burst", schema: Value, maxEntries: 10_000 }

const answerOf = (exit: Either.Either<Option.Option<{ readonly n: number }>, { readonly reason: string; readonly operation: string; readonly key?: string | undefined }>) =>
  Either.isRight(exit) ? { value: Option.getOrNull(exit.right) } : { reason: exit.left.reason, operation: exit.left.operation, errorKey: exit.left.key }

const suite = (backend: BackendFactory) =>
  describe(`a burst of concurrent lookups: ${backend.name}`, () => {
    it.scopedLive("600 concurrent lookups (live, missing, expired, repeated, one corrupt row, one refused key) answer as the same lookups one at a time", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const context = yield* Layer.build(db.store())
        const store = Effect.runSync(Effect.provide(KeyedStore, context))
        const h = yield* store.open(options)
        const past = Date.now() - 60_000
        yield* h.writeBatch(
          Array.from({ length: 300 }, (_, i) =>
            i % 10 === 3
              ? { _tag: "Register" as const, key: `k${i}`, value: { n: i }, createdAt: past - 1000, expiresAt: past }
              : { _tag: "Register" as const, key: `k${i}`, value: { n: i }, createdAt: past, expiresAt: past + 3_600_000 }
          )
        )
        if (db.sql !== undefined) {
          yield* Effect.provide(
            Effect.flatMap(SqlClient, (sql) => sql`UPDATE channel_state_entries SET value_json = ${'{"n":"text"}'} WHERE entry_key = ${"k7"}`),
            db.sql
          )
        }
        const keys = Array.from({ length: 600 }, (_, i) => (i === 555 ? "" : `k${(i * 37) % 450}`))
        const burst = yield* Effect.forEach(keys, (key) => Effect.either(h.lookup(key)), { concurrency: "unbounded" })
        const answers = burst.map(answerOf)
        // The reference: one at a time, on a second copy of the same rows (the burst removed k7's corrupt row).
        const corruptAt = keys.flatMap((key, i) => (key === "k7" ? [i] : []))
        for (const [i, key] of keys.entries()) {
          const n = Number(key.slice(1))
          const expected =
            key === ""
              ? { reason: "InvalidInput", operation: "lookup", errorKey: undefined }
              : key === "k7" && db.sql !== undefined
                ? undefined
                : { value: n < 300 && n % 10 !== 3 ? { n } : null }
          if (expected !== undefined) expect({ i, key, ...answers[i] }).toEqual({ i, key, ...expected })
        }
        if (db.sql !== undefined) {
          // Every lookup of the corrupt key fails Corrupt, or — once the first has removed the row — finds nothing.
          const seen = corruptAt.map((i) => answers[i]!)
          expect(seen.some((a) => "reason" in a && a.reason === "Corrupt")).toBe(true)
          for (const a of seen) expect(a).toSatisfy((x: (typeof answers)[number]) => ("reason" in x ? x.reason === "Corrupt" && x.operation === "lookup" && x.errorKey === "k7" : x.value === null))
          expect(yield* h.lookup("k7")).toEqual(Option.none())
        }
        // Nothing else was touched.
        expect(yield* h.size).toBe(db.sql !== undefined ? 269 : 270)
      }),
      60_000
    )
  })

for (const backend of backends) suite(backend)
