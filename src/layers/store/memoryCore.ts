/**
 * What every member of a memory namespace handle is built from: its rows, the caps (applied
 * with an undo log, so a refused write changes nothing), validation and decoding.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { StoredEntry, WriteOptions } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { capExceeded, checkKey, isLive, oldestFirst, type ResolvedNamespace, writeTimes } from "./storeRules.js"
import { decodeValue, encodeValue } from "./valueRules.js"

/** A stored row. */
export interface MemoryRow {
  readonly key: string
  readonly json: string
  readonly createdAt: number
  readonly expiresAt: number | undefined
}

/** One namespace's rows, by key. */
export type MemoryRows = Map<string, MemoryRow>

/** What a handle needs from its store. */
export interface MemoryHandleContext {
  readonly rows: MemoryRows
  /** Live rows of the owner across its namespaces. */
  readonly ownerLive: (now: number) => number
  readonly ownerMaxEntries: number | undefined
}

export const liveCount = (rows: MemoryRows, now: number) => {
  let count = 0
  for (const row of rows.values()) if (isLive(row.expiresAt, now)) count++
  return count
}

/** Builds the handle of the resolved namespace `ns` over its rows. */

/** The building blocks of one namespace's memory handle (see {@link makeMemoryCore}). */
export type MemoryCore<A> = ReturnType<typeof makeMemoryCore<A>>

/** The building blocks of the memory handle of the resolved namespace `ns`. */
export const makeMemoryCore = <A>(ns: ResolvedNamespace<A>, ctx: MemoryHandleContext) => {
  const { rows, ownerMaxEntries } = ctx
  const full = (operation: string, key: string | undefined, what: "namespace" | "owner") => capExceeded(ns, ownerMaxEntries, operation, key, what)
  /** Drops the namespace's expired rows (they are invisible already); stands in for the sweeper. */
  const dropExpired = (now: number) => {
    for (const row of rows.values()) if (!isLive(row.expiresAt, now)) rows.delete(row.key)
  }

  /**
   * Applies `mutate` (through `put`/`del`, which keep an undo log), then the caps: the oldest
   * rows of an `evict-oldest` namespace are evicted; a full `reject-new` namespace or owner
   * undoes every change and fails with `LimitExceeded`.
   */
  const transact = <R>(operation: string, now: number, key: string | undefined, mutate: (put: (row: MemoryRow) => void, del: (key: string) => void) => R): Either.Either<R, StateStoreError> => {
    const undo: Array<readonly [string, MemoryRow | undefined]> = []
    const put = (row: MemoryRow) => {
      undo.push([row.key, rows.get(row.key)])
      rows.set(row.key, row)
    }
    const del = (k: string) => {
      undo.push([k, rows.get(k)])
      rows.delete(k)
    }
    const rollback = (error: StateStoreError) => {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [k, previous] = undo[i]!
        if (previous === undefined) rows.delete(k)
        else rows.set(k, previous)
      }
      return Either.left(error)
    }
    const result = mutate(put, del)
    dropExpired(now)
    if (rows.size > ns.maxEntries) {
      if (ns.overflow === "reject-new") return rollback(full(operation, key, "namespace"))
      for (const row of [...rows.values()].sort(oldestFirst).slice(0, rows.size - ns.maxEntries)) del(row.key)
    }
    if (ownerMaxEntries !== undefined && ctx.ownerLive(now) > ownerMaxEntries) return rollback(full(operation, key, "owner"))
    return Either.right(result)
  }

  /** How many new keys fit, as the SQL store's `room` computes it. */
  const room = (now: number, fresh: number) => {
    if (ns.overflow === "evict-oldest" && ownerMaxEntries === undefined) return fresh
    dropExpired(now)
    const namespaceFree = Math.max(0, ns.maxEntries - rows.size)
    const ownerFree = ownerMaxEntries === undefined ? Number.POSITIVE_INFINITY : Math.max(0, ownerMaxEntries - ctx.ownerLive(now))
    if (ns.overflow === "reject-new") return Math.min(fresh, namespaceFree, ownerFree)
    return namespaceFree <= ownerFree ? fresh : Math.min(fresh, ownerFree)
  }

  const prepare = (operation: string, key: string, value: A, options: WriteOptions | undefined, now: number): Either.Either<MemoryRow, StateStoreError> => {
    const keyError = checkKey(ns, operation, key)
    if (keyError) return Either.left(keyError)
    return Either.flatMap(encodeValue(ns, operation, key, value), (json) => Either.map(writeTimes(ns, operation, now, options), (times): MemoryRow => ({ key, json, ...times })))
  }
  const liveRow = (key: string, now: number) => {
    const row = rows.get(key)
    return row !== undefined && isLive(row.expiresAt, now) ? row : undefined
  }
  const decodeRow = (operation: string, row: MemoryRow) =>
    Either.map(decodeValue(ns, operation, row.key, row.json), (value): StoredEntry<A> => ({ key: row.key, value, createdAt: row.createdAt, expiresAt: row.expiresAt })).pipe(
      Either.mapLeft((error) => {
        rows.delete(row.key)
        return error
      })
    )
  const withKey = <R>(operation: string, key: string, f: (now: number) => Either.Either<R, StateStoreError>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const keyError = checkKey(ns, operation, key)
      return keyError ? Effect.fail(keyError) : f(now)
    })
  const expectedJson = (operation: string, key: string, expected: A) => encodeValue(ns, operation, key, expected)

  return { ns, rows, full, transact, room, prepare, liveRow, decodeRow, withKey, expectedJson }
}
