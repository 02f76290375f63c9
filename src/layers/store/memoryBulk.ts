/**
 * The many-key, range and compare-and-set members of a memory namespace handle: the
 * reference model of the SQL store's (same positions, same byte order, same revisions).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { Change, CompareResult, EntriesPage, KeyRange, Observation, StoredEntry } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { ABSENT, byteOrder, checkKeys, checkRange, checkCompare, revisionOf } from "./bulkRules.js"
import type { MemoryCore, MemoryRow } from "./memoryCore.js"
import { isLive } from "./storeRules.js"
import { decodeValue } from "./valueRules.js"

/** The many-key, range and compare-and-set members of the namespace `core` is for. */
export const makeMemoryBulk = <A>(core: MemoryCore<A>) => {
  const { ns, rows, transact, prepare, liveRow, decodeRow } = core
  const lookupMany = (keys: ReadonlyArray<string>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkKeys(ns, "lookupMany", keys)
      if (problem) return Effect.fail(problem)
      const corrupt = new Set<string>()
      // Every position decoded before a corrupt row is removed: a key named twice is Corrupt twice, as on SQL.
      const results = keys.map((key): Either.Either<Option.Option<A>, StateStoreError> => {
        const row = liveRow(key, now)
        if (row === undefined) return Either.right(Option.none())
        const decoded = decodeValue(ns, "lookupMany", key, row.json)
        if (Either.isLeft(decoded)) corrupt.add(key)
        return Either.map(decoded, Option.some)
      })
      for (const key of corrupt) rows.delete(key)
      return Effect.succeed(results)
    })

  const deleteMany = (keys: ReadonlyArray<string>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkKeys(ns, "deleteMany", keys)
      if (problem) return Effect.fail(problem)
      return Effect.succeed(
        keys.map((key) => {
          const live = liveRow(key, now) !== undefined
          rows.delete(key)
          return live
        })
      )
    })

  const entriesInRange = (range: KeyRange): Effect.Effect<EntriesPage<A>, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const checked = checkRange(ns, range)
      if (!("limit" in checked)) return Effect.fail(checked)
      const { from, to, cursor, order, limit } = checked
      const direction = order === "asc" ? 1 : -1
      const inRange = [...rows.values()]
        .filter(
          (row) =>
            isLive(row.expiresAt, now) &&
            (from === undefined || byteOrder(row.key, from) >= 0) &&
            (to === undefined || byteOrder(row.key, to) < 0) &&
            (cursor === undefined || direction * byteOrder(row.key, cursor) > 0)
        )
        .sort((a, b) => direction * byteOrder(a.key, b.key))
      const page = inRange.slice(0, limit)
      const entries: Array<StoredEntry<A>> = []
      for (const row of page) {
        const entry = decodeRow("entriesInRange", row)
        if (Either.isLeft(entry)) return Effect.fail(entry.left)
        entries.push(entry.right)
      }
      return Effect.succeed({ entries, cursor: inRange.length > limit ? page[page.length - 1]!.key : undefined })
    })

  const observation = (operation: string, row: MemoryRow | undefined): Either.Either<Observation<A>, StateStoreError> =>
    row === undefined
      ? Either.right({ entry: Option.none(), revision: ABSENT })
      : Either.map(decodeRow(operation, row), (entry) => ({ entry: Option.some(entry), revision: revisionOf(row.json, row.createdAt, row.expiresAt) }))

  const compareAndSet = (key: string, revision: string, change: Change<A>): Effect.Effect<CompareResult<A>, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkCompare(ns, key, revision, change)
      if (problem) return Effect.fail(problem)
      let toWrite: MemoryRow | undefined
      if (change._tag === "Set") {
        const prepared = prepare("compareAndSet", key, change.value, change.options, now)
        if (Either.isLeft(prepared)) return Effect.fail(prepared.left)
        toWrite = prepared.right
      }
      const seen = liveRow(key, now)
      if ((seen === undefined ? ABSENT : revisionOf(seen.json, seen.createdAt, seen.expiresAt)) !== revision) {
        return Either.map(observation("compareAndSet", seen), (current): CompareResult<A> => ({ _tag: "Conflict", current }))
      }
      if (change._tag === "Keep" || (change._tag === "Delete" && seen === undefined)) return Effect.succeed({ _tag: "Unchanged" } as const)
      if (change._tag === "Delete") {
        rows.delete(key)
        return Effect.succeed({ _tag: "Applied" } as const)
      }
      if (seen !== undefined) {
        rows.set(key, toWrite!)
        return Effect.succeed({ _tag: "Applied" } as const)
      }
      return Either.map(
        transact("compareAndSet", now, key, (put) => put(toWrite!)),
        (): CompareResult<A> => ({ _tag: "Applied" })
      )
    })

  return { lookupMany, deleteMany, entriesInRange, observe: (key: string) => core.withKey("observe", key, (now) => observation("observe", liveRow(key, now))), compareAndSet }
}
