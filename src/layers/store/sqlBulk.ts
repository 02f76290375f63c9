/**
 * The many-key and range reads and deletes of a SQL namespace handle: each one statement,
 * however many keys (a key list travels as one JSON parameter).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { EntriesPage, KeyRange, StoredEntry } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { checkKeys, checkRange } from "./bulkRules.js"
import type { SqlHandleCore } from "./sqlHandleCore.js"
import type { DbRow, DeletedRow } from "./sqlStatements.js"
import { decodeValue } from "./valueRules.js"

/** The many-key and range members of the namespace `core` is for. */
export const makeSqlBulk = <A>(core: SqlHandleCore<A>) => {
  const { ctx, ns, statements, lockKey, exec, read, run, removeCorrupt, toEntry } = core

  /**
   * The live value of each key (a key named twice is decoded twice: two values, not one shared
   * object), or that key's own `Corrupt`, with the rows that no longer decode. Reads only.
   */
  const readMany = (now: number, keys: ReadonlyArray<string>) =>
    Effect.map(read<DbRow>(statements.lookupMany(now, [...new Set(keys)])), (found) => {
      const rows = new Map<string, DbRow>()
      for (const row of found) rows.set(row.entry_key, row)
      const corrupt = new Map<string, DbRow>()
      const results = keys.map((key): Either.Either<Option.Option<A>, StateStoreError> => {
        const row = rows.get(key)
        if (row === undefined) return Either.right(Option.none())
        const decoded = decodeValue(ns, "lookupMany", key, row.value_json)
        if (Either.isLeft(decoded)) corrupt.set(key, row)
        return Either.map(decoded, Option.some)
      })
      return { results, corrupt: [...corrupt.values()] }
    })

  /**
   * The values of `keys` for callers who each asked for one (coalesced lookups), read with no
   * lock: a row that no longer decodes is left for its own caller's lookup to report and remove.
   */
  const readLive = (keys: ReadonlyArray<string>) =>
    run("lookupMany", "read", Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.map(readMany(now, keys), ({ results }) => results)))

  const lookupMany = (keys: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Either.Either<Option.Option<A>, StateStoreError>>, StateStoreError> => {
    const problem = checkKeys(ns, "lookupMany", keys)
    if (problem) return Effect.fail(problem)
    if (keys.length === 0) return Effect.succeed([])
    return run(
      "lookupMany",
      "read",
      Effect.gen(function* () {
        const { results, corrupt } = yield* readMany(yield* Clock.currentTimeMillis, keys)
        for (const row of corrupt) yield* removeCorrupt(row)
        return results
      })
    )
  }

  const deleteMany = (keys: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<boolean>, StateStoreError> => {
    const problem = checkKeys(ns, "deleteMany", keys)
    if (problem) return Effect.fail(problem)
    if (keys.length === 0) return Effect.succeed([])
    return run(
      "deleteMany",
      "write",
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(ctx.writes.statement(lockKey, exec<DeletedRow>(statements.deleteMany(now, [...new Set(keys)]))), (deleted) => {
          const removed = new Set<string>()
          for (const row of deleted) if (row.live === true || row.live === 1) removed.add(row.entry_key)
          // A key named twice is reported at its first position only.
          return keys.map((key) => removed.delete(key))
        })
      )
    )
  }

  const entriesInRange = (range: KeyRange): Effect.Effect<EntriesPage<A>, StateStoreError> => {
    const checked = checkRange(ns, range)
    if (!("limit" in checked)) return Effect.fail(checked)
    return run(
      "entriesInRange",
      "read",
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        // One row past the page says whether there is a next one.
        const rows = yield* read<DbRow>(statements.range(now, { ...checked, limit: checked.limit + 1 }))
        const page = rows.slice(0, checked.limit)
        const entries: Array<StoredEntry<A>> = []
        for (const row of page) entries.push(yield* toEntry("entriesInRange", row))
        return { entries, cursor: rows.length > checked.limit ? page[page.length - 1]!.entry_key : undefined }
      })
    )
  }

  return { lookupMany, readLive, deleteMany, entriesInRange }
}
