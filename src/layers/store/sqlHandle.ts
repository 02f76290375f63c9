/**
 * A namespace handle of the SQL store, for one owner + namespace: the single-key members here,
 * the rest from their own modules (batches, many keys and ranges, compare-and-set), all built
 * on one {@link makeSqlHandleCore}.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { NamespaceHandle, StoredEntry, WriteOptions } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import type { SqlError } from "@effect/sql/SqlError"
import { makeSqlBatchWrites } from "./sqlBatch.js"
import { makeSqlBulk } from "./sqlBulk.js"
import { makeSqlCompare } from "./sqlCompare.js"
import { makeSqlHandleCore, type SqlHandleContext } from "./sqlHandleCore.js"
import { makeLookupCoalescing } from "./sqlLookups.js"
import type { DbRow, DeletedRow, RowToWrite } from "./sqlStatements.js"
import type { ResolvedNamespace } from "./storeRules.js"


/** Builds the handle of the resolved namespace `ns`; its claim batcher runs in the store's scope. */
export const makeSqlHandle = <A>(ctx: SqlHandleContext, ns: ResolvedNamespace<A>): Effect.Effect<NamespaceHandle<A>> =>
  Effect.gen(function* () {
  const core = makeSqlHandleCore(ctx, ns)
  const { statements, caps, lockKey, exec, read, run, withValidKey, toEntry, prepareRow, expectedJson } = core
  const { writes } = ctx
  const { owner, namespace } = ns
  const { writeBatch, claims, claimsLookFirst } = yield* makeSqlBatchWrites(core)
  const { lookupMany, readLive, deleteMany, entriesInRange } = makeSqlBulk(core)

  const writing = <R>(operation: string, key: string, value: A, options: WriteOptions | undefined, f: (row: RowToWrite, now: number) => Effect.Effect<R, SqlError | StateStoreError>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Either.match(prepareRow(operation, key, value, options, now), { onLeft: Effect.fail, onRight: (row) => run(operation, "write", f(row, now), key) })
    )

  const lookupEntry = (key: string) =>
    withValidKey("lookup", key, "read", (now) =>
      Effect.flatMap(read<DbRow>(statements.lookup(now, key)), (rows) => (rows[0] === undefined ? Effect.succeed(Option.none()) : Effect.map(toEntry("lookup", rows[0]), Option.some)))
    )

  const lookupValue = (key: string) => Effect.map(lookupEntry(key), Option.map((entry) => entry.value))
  const lookup = yield* makeLookupCoalescing(core, lookupValue, readLive)

  /** Deletes `key`, returning the row when it was live: one statement under the namespace's lock (see `WriteTransactions.single`). */
  const take = (now: number, key: string) =>
    Effect.map(writes.single<DeletedRow>(lockKey, (lock) => statements.take(now, key, lock)), (rows) => {
      const row = rows[0]
      return row !== undefined && (row.live === true || row.live === 1) ? row : undefined
    })


  return {
    owner,
    namespace,
    register: (key, value, options) =>
      writing("register", key, value, options, (row, now) =>
        writes.transaction(lockKey, Effect.zipRight(exec(statements.upsert(now, row)), caps.enforce("register", now, key)))
      ),
    registerIfAbsent: (key, value, options) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Either.match(prepareRow("registerIfAbsent", key, value, options, now), {
          onLeft: Effect.fail,
          onRight: (row) => {
            const claim = Effect.flatMap(claims.submit(row), (won) => (typeof won === "boolean" ? Effect.succeed(won) : Effect.fail(won)))
            // PostgreSQL's transaction path: a live row answers at once, without the lock (under
            // contention most claimers are losers, and they need not queue). PostgreSQL's
            // one-statement claims make that check themselves, before they take the lock; SQLite's
            // claims make it in the batcher (see `claimAlone` and `lookFirst` in sqlBatch).
            return claimsLookFirst
              ? Effect.flatMap(run("registerIfAbsent", "read", read(statements.lookup(now, key)), key), (live) => (live.length > 0 ? Effect.succeed(false) : claim))
              : claim
          }
        })
      ),
    replaceIfEqual: (key, expected, value, options) =>
      Either.match(expectedJson("replaceIfEqual", key, expected), {
        onLeft: Effect.fail,
        onRight: (json) =>
          writing("replaceIfEqual", key, value, options, (row, now) =>
            // An update adds no row: no cap to check, no counter to lock.
            Effect.map(exec(statements.replaceIfEqual(now, row, json)), (written) => written.length > 0)
          )
      }),
    deleteIfEqual: (key, expected) =>
      Either.match(expectedJson("deleteIfEqual", key, expected), {
        onLeft: Effect.fail,
        onRight: (json) =>
          withValidKey("deleteIfEqual", key, "write", (now) =>
            Effect.map(writes.single(lockKey, (lock) => statements.deleteIfEqual(now, key, json, lock)), (deleted) => deleted.length > 0)
          )
      }),
    lookupEntry,
    lookup,
    consume: (key) =>
      withValidKey("consume", key, "write", (now) =>
        Effect.flatMap(take(now, key), (row) => (row === undefined ? Effect.succeed(Option.none()) : Effect.map(toEntry("consume", row), (entry) => Option.some(entry.value))))
      ),
    delete: (key) => withValidKey("delete", key, "write", (now) => Effect.map(take(now, key), (row) => row !== undefined)),
    writeBatch,
    lookupMany,
    deleteMany,
    entriesInRange,
    ...makeSqlCompare(core),
    entries: run(
      "entries",
      "read",
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* read<DbRow>(statements.entries(now))
        const decoded = yield* Effect.forEach(rows, (row) => Effect.either(toEntry("entries", row)))
        const failed = decoded.find(Either.isLeft)
        return failed ? yield* Effect.fail(failed.left) : decoded.map((d) => (d as Either.Right<never, StoredEntry<A>>).right)
      })
    ),
    size: run(
      "size",
      "read",
      Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.map(read<{ n: number | string }>(statements.size(now)), (rows) => Number(rows[0]?.n ?? 0)))
    ),
    clear: run(
      "clear",
      "write",
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        writes.transaction(
          lockKey,
          Effect.flatMap(exec<{ n: number | string }>(statements.size(now)), (rows) => Effect.as(exec(statements.deleteAll()), Number(rows[0]?.n ?? 0)))
        )
      )
    )
  } satisfies NamespaceHandle<A>
  })
