/**
 * Write transactions that hold the namespace's lock from their first statement, so caps are
 * exact and concurrent writers never deadlock:
 * - SQLite: `BEGIN IMMEDIATE` takes the database's write lock at once (a plain `BEGIN` would
 *   take it at the first write, and fail mid-transaction when another process got there first);
 * - PostgreSQL: `pg_advisory_xact_lock` on the lock key is the first statement, held to commit,
 *   waited for at most `lockWait` (`lock_timeout`). Within one process, the writes of one lock
 *   key take turns before they take a pooled connection: they would serialise on the advisory
 *   lock anyway, and waiting for it inside a transaction holds a connection the process's
 *   reads and other namespaces need (ten waiting claims exhausted the pool).
 *
 * A single statement that only deletes rows ({@link WriteTransactions.single}) takes the lock
 * itself on PostgreSQL, in one autocommit statement (one round trip instead of four), in the
 * same turns.
 *
 * A failed `COMMIT` (which `@effect/sql` reports as a defect) is rolled back and becomes the
 * typed failure it is.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { type Mutex, makeMutex } from "./mutex.js"
import { makePgExecute } from "./pgPrepared.js"
import { TURN_TIMEOUT_CODE } from "./sqlFailure.js"
import { executeOn, lockStatement, type SqlText, type StatementLock } from "./sqlStatements.js"

/** Runs `effect` holding the lock named `lockKey` (PostgreSQL; SQLite's lock is the whole database). */
export type UnderLock = <A, E, R>(lockKey: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>

/**
 * The writer connection of a SQLite store that owns its client: reserved for the store's
 * lifetime, so the client's own reservation is never taken again; every statement and
 * transaction of the store takes `lock` instead (see `SqlStoreHooks.exclusiveClient`).
 */
export interface ExclusiveWriter {
  readonly connection: Connection
  readonly lock: Mutex
}

/** Runs one statement (see {@link WriteTransactions.execute}). */
export type Execute = <R extends object = Record<string, unknown>>(statement: SqlText) => Effect.Effect<ReadonlyArray<R>, SqlError>

/**
 * Runs a statement. Inside a transaction it goes straight to the transaction's connection
 * (its own `execute`, which prepares once per connection): the statement compiler, the
 * pool's acquirer and a span per statement are skipped — they cost more than SQLite takes to
 * answer, and the operation's own span covers the statement.
 *
 * Outside one it takes the client's connection for itself until the statement has run
 * (`reserve`, as a transaction takes it). Not the client's own `unsafe`: on SQLite that hands
 * its one connection out and lets go of it before the statement runs, so a fiber that yields
 * in between would run its statement inside another fiber's transaction begun meanwhile — a
 * claim answered `true` and then undone by that transaction's rollback.
 *
 * With a store's {@link ExclusiveWriter}, the statement runs on that connection holding the
 * writer's lock instead: the same exclusion (transactions hold the lock from `BEGIN` to
 * their end), for a flag instead of a scoped reservation.
 */
const makeExecute =
  (sql: SqlClient.SqlClient, writer: ExclusiveWriter | undefined): Execute =>
  <R extends object = Record<string, unknown>>(statement: SqlText) =>
    Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (transaction) =>
      Option.isSome(transaction)
        ? executeOn<R>(transaction.value[0], statement)
        : writer !== undefined
          ? writer.lock.withLock(executeOn<R>(writer.connection, statement))
          : Effect.scoped(Effect.flatMap(sql.reserve, (connection) => executeOn<R>(connection, statement)))
    )

/** How writes take their lock, and how the store runs a statement at all. */
export interface WriteTransactions {
  /**
   * Runs one statement: in the current transaction when there is one, else on its own (see
   * {@link makeExecute}). The one way the store's code runs a statement on the writer: a
   * SQLite store that owns its client holds the client's one connection for its lifetime, so
   * a statement that asked the client for it would wait forever.
   */
  readonly execute: Execute
  /** A transaction of several statements, holding the lock from its first one. */
  readonly transaction: UnderLock
  /**
   * One statement that may delete rows (so it updates a row count, whose row lock must never
   * be taken before the namespace's lock): PostgreSQL runs it in a locked transaction; on
   * SQLite a single statement is atomic and holds the write lock already, so it runs as is.
   */
  readonly statement: UnderLock
  /**
   * One statement that only deletes rows, built with or without a {@link StatementLock}:
   * PostgreSQL runs it with the lock (its text takes the lock itself: one autocommit round trip,
   * a named prepared statement, in this process's turn on the key); SQLite runs it without, as
   * is (a single statement is atomic and holds the write lock). Only for statements that stay
   * right when their snapshot predates the lock (see `StatementLock`).
   */
  readonly single: <R extends object = Record<string, unknown>>(lockKey: string, statement: (lock: StatementLock | undefined) => SqlText) => Effect.Effect<ReadonlyArray<R>, SqlError>
}

/** `lock_timeout` for a lock wait of at most `lockWaitMillis` (at least 1 ms: 0 would mean forever). */
const lockTimeout = (lockWaitMillis: number) => `${Math.max(1, Math.round(lockWaitMillis))}ms`

/** A failed COMMIT or ROLLBACK arrives as a `SqlError` defect: this makes it a failure again. */
const commitFailureAsFailure = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  Effect.catchSomeDefect(effect, (defect) => (defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()))

/**
 * Runs `effect` in its turn on `key`: one at a time per key within this process. A turn that
 * came after more than `waitMillis` of waiting gives up at once (`Busy`), as a lock wait would.
 */
const makeTurns = (waitMillis: number) => {
  const turns = new Map<string, Mutex>()
  const timedOut = new SqlError({
    cause: { code: TURN_TIMEOUT_CODE, message: `this process's writes to the namespace waited over ${waitMillis} ms for their turn` },
    message: "waited too long for a turn on the namespace lock"
  })
  return <A, E, R>(key: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    Effect.suspend(() => {
      let turn = turns.get(key)
      if (turn === undefined) {
        turn = makeMutex()
        turns.set(key, turn)
      }
      const queuedAt = performance.now()
      return turn.withLock(Effect.suspend((): Effect.Effect<A, E | SqlError, R> => (performance.now() - queuedAt > waitMillis ? Effect.fail(timedOut) : effect)))
    })
}

/** The connections a store keeps for itself, beside what it takes from the client per statement. */
export interface KeptConnections {
  /** SQLite: the store's writer (see {@link ExclusiveWriter}). */
  readonly writer?: ExclusiveWriter | undefined
  /** PostgreSQL: how statements outside transactions run when not on a pooled connection of their own (the store's held connection, see pgHeldConnection). */
  readonly outside?: Execute | undefined
}

/**
 * The write transactions of the `SqlClient` `sql` (see the module doc); lock waits end after
 * `lockWaitMillis`. With a SQLite store's `writer`, transactions run on its connection holding
 * its lock, from before `BEGIN IMMEDIATE` until after `COMMIT` or `ROLLBACK`. On PostgreSQL
 * every statement is a named prepared statement (see pgPrepared), outside transactions run by
 * `outside` when given.
 */
export const makeWriteTransactions = (sql: SqlClient.SqlClient, lockWaitMillis: number, kept: KeptConnections = {}): WriteTransactions =>
  sql.onDialectOrElse({
    pg: () => {
      const timeout = lockTimeout(lockWaitMillis)
      const execute = makePgExecute(sql, kept.outside)
      const lock = (key: string) => execute(lockStatement({ key, timeout }))
      const inTurn = makeTurns(lockWaitMillis)
      const transaction: UnderLock = (lockKey, effect) =>
        inTurn(lockKey, commitFailureAsFailure(sql.withTransaction(Effect.zipRight(lock(lockKey), effect))))
      const single = <R extends object>(lockKey: string, statement: (lock: StatementLock | undefined) => SqlText) =>
        inTurn(lockKey, execute<R>(statement({ key: lockKey, timeout })))
      return { execute, transaction, statement: transaction, single }
    },
    orElse: () => {
      const { writer } = kept
      const execute = makeExecute(sql, writer)
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
          writer === undefined
            ? Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
            : Effect.as(writer.lock.lockIn(scope), [scope, writer.connection] as const)
        ),
        begin: (conn) => Effect.tap(run(conn, "BEGIN IMMEDIATE"), () => Effect.sync(() => open.add(conn))),
        savepoint: (conn, id) => run(conn, `SAVEPOINT effect_sql_${id}`),
        commit: (conn) => Effect.tapError(run(conn, "COMMIT"), () => Effect.ignore(end(conn, "ROLLBACK"))).pipe(Effect.tap(() => Effect.sync(() => open.delete(conn)))),
        rollback: (conn) => end(conn, "ROLLBACK"),
        rollbackSavepoint: (conn, id) => run(conn, `ROLLBACK TO SAVEPOINT effect_sql_${id}`)
      })
      return {
        execute,
        transaction: (_lockKey, effect) => commitFailureAsFailure(immediate(effect)),
        statement: (_lockKey, effect) => effect,
        single: <R extends object>(_lockKey: string, statement: (lock: StatementLock | undefined) => SqlText) => execute<R>(statement(undefined))
      }
    }
  })
