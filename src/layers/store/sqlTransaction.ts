/**
 * Write transactions that hold the namespace's lock from their first statement, so caps are
 * exact and concurrent writers never deadlock:
 * - SQLite: `BEGIN IMMEDIATE` takes the database's write lock at once (a plain `BEGIN` would
 *   take it at the first write, and fail mid-transaction when another process got there first);
 * - PostgreSQL: `pg_advisory_xact_lock` on the lock key is the first statement, held to commit.
 *
 * A failed `COMMIT` (which `@effect/sql` reports as a defect) is rolled back and becomes the
 * typed failure it is.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Scope } from "effect"

/** Runs `effect` holding the lock named `lockKey` (PostgreSQL; SQLite's lock is the whole database). */
export type UnderLock = <A, E, R>(lockKey: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>

/** How writes take their lock. */
export interface WriteTransactions {
  /** A transaction of several statements, holding the lock from its first one. */
  readonly transaction: UnderLock
  /**
   * One statement that may delete rows (so it updates a row count, whose row lock must never
   * be taken before the namespace's lock): PostgreSQL runs it in a locked transaction; on
   * SQLite a single statement is atomic and holds the write lock already, so it runs as is.
   */
  readonly statement: UnderLock
}

/** A failed COMMIT or ROLLBACK arrives as a `SqlError` defect: this makes it a failure again. */
const commitFailureAsFailure = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  Effect.catchSomeDefect(effect, (defect) => (defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()))

/** The write transactions of the `SqlClient` `sql` (see the module doc). */
export const makeWriteTransactions = (sql: SqlClient.SqlClient): WriteTransactions =>
  sql.onDialectOrElse({
    pg: () => {
      const lock = (key: string) => sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`
      const transaction: UnderLock = (lockKey, effect) => commitFailureAsFailure(sql.withTransaction(Effect.zipRight(lock(lockKey), effect)))
      return { transaction, statement: transaction }
    },
    orElse: () => {
      // Prepared once per connection (the driver's statement cache), not re-prepared per transaction.
      const run = (conn: Connection, text: string) =>
        Effect.asVoid(conn.execute(text, [], undefined))
      // Connections inside a transaction: a BEGIN IMMEDIATE that failed (busy) opened none,
      // and the ROLLBACK @effect/sql then issues must not fail in its place.
      const open = new WeakSet<Connection>()
      const end = (conn: Connection, text: string) =>
        open.has(conn) ? Effect.ensuring(run(conn, text), Effect.sync(() => open.delete(conn))) : Effect.void
      const immediate = SqlClient.makeWithTransaction({
        transactionTag: SqlClient.TransactionConnection,
        spanAttributes: [["db.system.name", "sqlite"]],
        acquireConnection: Effect.flatMap(Scope.make(), (scope) =>
          Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
        ),
        begin: (conn) => Effect.tap(run(conn, "BEGIN IMMEDIATE"), () => Effect.sync(() => open.add(conn))),
        savepoint: (conn, id) => run(conn, `SAVEPOINT effect_sql_${id}`),
        commit: (conn) => Effect.tapError(run(conn, "COMMIT"), () => Effect.ignore(end(conn, "ROLLBACK"))).pipe(Effect.tap(() => Effect.sync(() => open.delete(conn)))),
        rollback: (conn) => end(conn, "ROLLBACK"),
        rollbackSavepoint: (conn, id) => run(conn, `ROLLBACK TO SAVEPOINT effect_sql_${id}`)
      })
      return {
        transaction: (_lockKey, effect) => commitFailureAsFailure(immediate(effect)),
        statement: (_lockKey, effect) => effect
      }
    }
  })
