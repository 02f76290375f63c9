/**
 * Caps, enforced inside the write's transaction (which holds the namespace's lock) from the
 * trigger-kept row counts: a write reads one counter row, and only a namespace (or owner)
 * over its bound pays for making room. Counts include expired rows not yet swept, so the live
 * rows are never more than the bound.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { StateStoreError } from "../../StateStoreError.js"
import type { SqlText, Statements } from "./sqlStatements.js"
import { capExceeded, type ResolvedNamespace } from "./storeRules.js"

interface CountRow {
  readonly row_count: number | string
  readonly owner_rows?: number | string | null
}

/** Runs a statement (in the write's transaction): `WriteTransactions.execute`, or a backend's own way of running one. */
export type Exec = <R extends object = Record<string, unknown>>(statement: SqlText) => Effect.Effect<ReadonlyArray<R>, SqlError>

/** The cap checks of one namespace, run inside its write transactions (statements run by `exec`). */
export const makeCaps = <A>(statements: Statements, ns: ResolvedNamespace<A>, ownerMaxEntries: number | undefined, backend: "sqlite" | "pg", exec: Exec) => {
  const countsAreOurs = backend === "sqlite"
  const countsQuery = statements.counts(ownerMaxEntries !== undefined)
  const readCounts = Effect.map(exec<CountRow>(countsQuery), (rows) => ({
    namespace: Number(rows[0]?.row_count ?? 0),
    owner: Number(rows[0]?.owner_rows ?? 0)
  }))

  /** The `LimitExceeded` of a full namespace (`reject-new`) or owner. */
  const full = (operation: string, key: string | undefined, what: "namespace" | "owner") => capExceeded(ns, ownerMaxEntries, operation, key, what)

  /**
   * After rows may have been added: when the namespace holds more than `maxEntries` rows,
   * drops its expired rows, then (`evict-oldest`) the oldest rows or (`reject-new`) fails
   * with `LimitExceeded` so the transaction rolls back. Then the owner cap, when one is set:
   * drops the owner's expired rows, then fails if it is still over.
   */
  const enforce = (operation: string, now: number, key?: string): Effect.Effect<void, StateStoreError | SqlError> =>
    Effect.gen(function* () {
      let counts = yield* readCounts
      if (counts.namespace > ns.maxEntries) {
        yield* exec(statements.deleteExpired(now))
        counts = yield* readCounts
        if (counts.namespace > ns.maxEntries) {
          if (ns.overflow === "reject-new") return yield* full(operation, key, "namespace")
          yield* exec(statements.evictOldest(counts.namespace - ns.maxEntries))
          if (ownerMaxEntries !== undefined) counts = yield* readCounts
        }
      }
      if (ownerMaxEntries !== undefined && counts.owner > ownerMaxEntries) {
        yield* exec(statements.deleteOwnerExpired(now))
        counts = yield* readCounts
        if (counts.owner > ownerMaxEntries) return yield* full(operation, key, "owner")
      }
    })

  /**
   * How many of `fresh` new keys may be added now (expired rows are dropped only when the
   * counts say they do not all fit): all of them
   * in an `evict-oldest` namespace without an owner cap; else as many as the `reject-new`
   * namespace and the owner have room for (rows an `evict-oldest` namespace evicts to make
   * room do not grow the owner).
   */
  const room = (now: number, fresh: number): Effect.Effect<number, SqlError> =>
    Effect.gen(function* () {
      if (ns.overflow === "evict-oldest" && ownerMaxEntries === undefined) return fresh
      const fitting = (counts: { readonly namespace: number; readonly owner: number }) => {
        const namespaceFree = Math.max(0, ns.maxEntries - counts.namespace)
        const ownerFree = ownerMaxEntries === undefined ? Number.POSITIVE_INFINITY : Math.max(0, ownerMaxEntries - counts.owner)
        if (ns.overflow === "reject-new") return Math.min(fresh, namespaceFree, ownerFree)
        return namespaceFree <= ownerFree ? fresh : Math.min(fresh, ownerFree)
      }
      // The counts include expired rows not yet swept: when everything fits by them, it fits.
      const fits = fitting(yield* readCounts)
      if (fits >= fresh) return fits
      yield* exec(statements.deleteExpired(now))
      if (ownerMaxEntries !== undefined) yield* exec(statements.deleteOwnerExpired(now))
      return fitting(yield* readCounts)
    })

  /**
   * Whether `fresh` new rows fit under both bounds by the counts as they are (which include
   * expired rows, so this never says yes wrongly). On SQLite the transaction holds the file's
   * write lock, so no other writer (of any namespace, in any process, however configured) can
   * change the counts until it commits: a yes means the write needs neither {@link room} nor
   * {@link enforce}, the counts staying within the bounds whichever of the rows are written.
   * On PostgreSQL (where writers of sibling namespaces run concurrently) it always says no.
   */
  const roomForAll = (fresh: number): Effect.Effect<boolean, SqlError> =>
    countsAreOurs
      ? Effect.map(
          readCounts,
          (counts) => counts.namespace + fresh <= ns.maxEntries && (ownerMaxEntries === undefined || counts.owner + fresh <= ownerMaxEntries)
        )
      : Effect.succeed(false)

  /** Whether writes must ask {@link room} first: a `reject-new` namespace, or an owner cap. */
  const refusesWhenFull = ns.overflow === "reject-new" || ownerMaxEntries !== undefined

  return { enforce, room, roomForAll, refusesWhenFull, full }
}

/** The cap checks of one namespace. */
export type Caps = ReturnType<typeof makeCaps>
