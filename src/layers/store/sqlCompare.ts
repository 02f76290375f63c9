/**
 * Optimistic concurrency on a SQL namespace handle: `observe` reads a key and names the row it
 * saw by a revision; `compareAndSet` writes only while the row is exactly that one. The write
 * itself is conditional on the observed JSON and timestamps, so two callers holding one
 * revision — in any process — cannot both apply: the second one's statement matches no row.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { Change, CompareResult, Observation } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { ABSENT, checkCompare, revisionOf } from "./bulkRules.js"
import type { SqlHandleCore } from "./sqlHandleCore.js"
import type { DbRow, ObservedRow, RowToWrite } from "./sqlStatements.js"

const seenOf = (row: DbRow): ObservedRow => ({
  json: row.value_json,
  createdAt: Number(row.created_at),
  expiresAt: row.expires_at === null ? undefined : Number(row.expires_at)
})

/** The compare-and-set members of the namespace `core` is for. */
export const makeSqlCompare = <A>(core: SqlHandleCore<A>) => {
  const { ctx, ns, statements, caps, lockKey, exec, read, run, withValidKey, toEntry, prepareRow } = core

  const current = (now: number, key: string) => Effect.map(read<DbRow>(statements.lookup(now, key)), (rows) => rows[0])
  const observation = (operation: string, row: DbRow | undefined): Effect.Effect<Observation<A>, StateStoreError | SqlError> => {
    if (row === undefined) return Effect.succeed({ entry: Option.none(), revision: ABSENT })
    const seen = seenOf(row)
    return Effect.map(toEntry(operation, row), (entry) => ({ entry: Option.some(entry), revision: revisionOf(seen.json, seen.createdAt, seen.expiresAt) }))
  }
  const conflict = (now: number, key: string) =>
    Effect.map(
      Effect.flatMap(current(now, key), (row) => observation("compareAndSet", row)),
      (observed): CompareResult<A> => ({ _tag: "Conflict", current: observed })
    )

  const observe = (key: string) => withValidKey("observe", key, "read", (now) => Effect.flatMap(current(now, key), (row) => observation("observe", row)))

  const compareAndSet = (key: string, revision: string, change: Change<A>): Effect.Effect<CompareResult<A>, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkCompare(ns, key, revision, change)
      if (problem) return Effect.fail(problem)
      // A Set is validated before anything is read: a bad value is refused whatever the row holds.
      let toWrite: RowToWrite | undefined
      if (change._tag === "Set") {
        const prepared = prepareRow("compareAndSet", key, change.value, change.options, now)
        if (Either.isLeft(prepared)) return Effect.fail(prepared.left)
        toWrite = prepared.right
      }
      return run(
        "compareAndSet",
        "write",
        Effect.gen(function* () {
          const row = yield* current(now, key)
          const seen = row === undefined ? undefined : seenOf(row)
          if ((seen === undefined ? ABSENT : revisionOf(seen.json, seen.createdAt, seen.expiresAt)) !== revision) return yield* conflict(now, key)
          if (change._tag === "Keep" || (change._tag === "Delete" && seen === undefined)) return { _tag: "Unchanged" } as const
          let applied: boolean
          if (change._tag === "Delete") {
            applied = (yield* ctx.writes.statement(lockKey, exec(statements.deleteObserved(now, key, seen!)))).length > 0
          } else if (seen === undefined) {
            // A new row: written only where the key is still absent (or expired), then the caps.
            applied = yield* ctx.writes.transaction(
              lockKey,
              Effect.flatMap(exec(statements.upsertIfAbsent(now, toWrite!)), (written) =>
                written.length > 0 ? Effect.as(caps.enforce("compareAndSet", now, key), true) : Effect.succeed(false)
              )
            )
          } else {
            // Replacing a row adds none: no cap to check.
            applied = (yield* exec(statements.replaceObserved(now, toWrite!, seen))).length > 0
          }
          return applied ? ({ _tag: "Applied" } as const) : yield* conflict(now, key)
        }),
        key
      )
    })

  return { observe, compareAndSet }
}
