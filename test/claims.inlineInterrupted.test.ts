/**
 * Tries to break the inline claim (coalescer.ts): a lone claim runs in its caller's fiber; when
 * the caller is interrupted mid-transaction its transaction rolls back and the permit is freed.
 * Checked per round on every SQL backend: among callers that were not interrupted at most one
 * wins a key; a key some caller reports won has a row; the counts equal the rows; later claims
 * and writes on the same connection pool work.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { sqlBackends, type BackendFactory } from "./support/backends.js"

const suite = (backend: BackendFactory) =>
  describe(`interrupted inline claims: ${backend.name}`, () => {
    it.scopedLive("30 rounds: the first claimer of a key interrupted at varying points, 20 others racing: exactly-once among the rest, rows and counts exact", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const context = yield* Layer.build(db.store({ ownerMaxEntries: 10_000 }))
        const store = Effect.runSync(Effect.provide(KeyedStore, context))
        const h = yield* store.open({ owner: "p", namespace: "inline", schema: Schema.String, maxEntries: 1_000, overflow: "reject-new" })
        const raw = <R extends object>(q: string) => Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe<R>(q)), db.sql!)
        const problems: Array<unknown> = []
        for (let round = 0; round < 30; round++) {
          const key = `r${round}`
          const first = yield* Effect.fork(h.registerIfAbsent(key, "first"))
          if (round % 3 === 1) yield* Effect.yieldNow()
          if (round % 3 === 2) yield* Effect.sleep(`${round % 5} millis`)
          const others = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => Effect.fork(Effect.either(h.registerIfAbsent(key, `o${i}`))))
          yield* Fiber.interrupt(first)
          const firstExit = yield* Fiber.await(first)
          const answers = yield* Effect.forEach(others, (f) => Fiber.join(f))
          const won = answers.filter((a) => a._tag === "Right" && a.right).length
          const failed = answers.filter((a) => a._tag === "Left").map((a) => a._tag === "Left" && a.left.reason)
          const rows = yield* raw<{ value_json: string }>(`SELECT value_json FROM channel_state_entries WHERE entry_key = '${key}'`)
          const firstWon = Exit.isSuccess(firstExit) && firstExit.value === true
          // The row is the winner's: one winner among those who heard back, or the first (committed before its interruption took).
          const ok =
            failed.length === 0 &&
            won + (firstWon ? 1 : 0) <= 1 &&
            rows.length === 1 &&
            (won === 1 ? rows[0]!.value_json !== '"first"' : firstWon || Exit.isInterrupted(firstExit) ? rows[0]!.value_json === '"first"' : false)
          if (!ok) problems.push({ round, won, failed, rows, first: Exit.isSuccess(firstExit) ? firstExit.value : "interrupted" })
        }
        const real = yield* raw<{ n: number }>("SELECT count(*) AS n FROM channel_state_entries WHERE namespace = 'inline'")
        const counted = yield* raw<{ n: number }>("SELECT row_count AS n FROM channel_state_counts WHERE namespace = 'inline'")
        expect(problems).toEqual([])
        expect(Number(counted[0]?.n)).toBe(Number(real[0]?.n))
        expect(yield* h.registerIfAbsent("after", "x")).toBe(true)
      }),
      180_000
    )
  })

for (const backend of sqlBackends) suite(backend)
