/**
 * What every member of a SQL namespace handle is built from: the statements, the lock its
 * writes take, its caps, and `run` — contention waited out, typed errors, a span.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { StoredEntry, WriteOptions } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { fairly } from "../fairScheduler.js"
import { unexpectedFailure } from "./handleGuard.js"
import { withOperationSpan } from "./operationSpan.js"
import { type BusyGate, retryTransient, type Transient, transientReason } from "./retry.js"
import { makeCaps } from "./sqlCaps.js"
import { classify, fromSqlError, outcomeUnknown } from "./sqlFailure.js"
import { type DbRow, executeOn, makeStatements, type RowTimes, type RowToWrite, type SqlText, type StatementDialect } from "./sqlStatements.js"
import type { WriteTransactions } from "./sqlTransaction.js"
import { checkKey, type ResolvedNamespace, writeTimes } from "./storeRules.js"
import { decodeValue, encodeValue } from "./valueRules.js"

/** Rows per multi-row statement: 6 parameters a row stays far below every driver's limit. */
export const CHUNK = 500

/** What every handle of one store shares. */
export interface SqlHandleContext {
  readonly sql: SqlClient
  readonly dialect: StatementDialect
  readonly writes: WriteTransactions
  readonly ownerMaxEntries: number | undefined
  readonly lockWaitMillis: number
  /** The store's scope: its background fibers (the claim batchers) end with it. */
  readonly scope: Scope.Scope
  /** Where operations on a busy database queue behind one poller (SQLite). */
  readonly gate?: BusyGate | undefined
  /** Told when a statement failed to prepare because the database was busy (see `SqlStoreHooks`). */
  readonly onStatementStuck?: (() => void) | undefined
  /** A connection of its own for reads outside transactions (see `SqlStoreHooks.reader`). */
  readonly reader?: Connection | undefined
  /** PostgreSQL: the database has the claim function (see migrations' `CLAIM_FUNCTION`). */
  readonly claimFunction: boolean
}

/** The lock a write of this namespace takes: the namespace's, or the owner's when an owner cap spans its namespaces. */
export const lockKeyOf = (owner: string, namespace: string, ownerMaxEntries: number | undefined) =>
  ownerMaxEntries === undefined ? `${owner}/${namespace}` : owner

/** The building blocks of one namespace's handle (see {@link makeSqlHandleCore}). */
export type SqlHandleCore<A> = ReturnType<typeof makeSqlHandleCore<A>>

/** The building blocks of the handle of the resolved namespace `ns`. */
export const makeSqlHandleCore = <A>(ctx: SqlHandleContext, ns: ResolvedNamespace<A>) => {
  const { dialect, writes } = ctx
  const { owner, namespace } = ns
  const at = { owner, namespace }
  const statements = makeStatements(dialect, owner, namespace)
  /**
   * Runs a statement: in the transaction when there is one, else on its own. On PostgreSQL a
   * named prepared statement, parsed once per connection (see pgPrepared).
   */
  const exec = writes.execute
  const caps = makeCaps(statements, ns, ctx.ownerMaxEntries, dialect.backend, exec)
  const lockKey = lockKeyOf(owner, namespace, ctx.ownerMaxEntries)
  const { reader } = ctx
  /**
   * A read outside any transaction: on the reader connection when the store has one (it
   * sees what is committed, never waits for this process's open transaction), else as `exec`
   * (on PostgreSQL a named prepared statement on a pooled connection: one round trip).
   */
  const read = <R extends object = Record<string, unknown>>(q: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
    reader === undefined ? exec<R>(q) : executeOn<R>(reader, q)
  // Reads never wait on the gate: SQLite's write lock does not block readers (WAL).
  const retry = { read: retryTransient(ctx.lockWaitMillis), write: retryTransient(ctx.lockWaitMillis, ctx.gate) }
  /**
   * Retried: contention, and dropped connections — except a write whose outcome is unknown
   * (`outcomeUnknown`: it may have been applied, and a second run would answer wrongly); and
   * never a statement that failed to prepare while the database was busy, which this
   * connection keeps failing (it is replaced instead).
   */
  const transient =
    (operation: string, operationKind: "read" | "write") =>
    (error: SqlError | StateStoreError): Transient => {
      if (error._tag !== "SqlError") return transientReason(error)
      const kind = classify(error).kind
      if (kind === "busy" && error.message.startsWith("Failed to prepare")) {
        ctx.onStatementStuck?.()
        return undefined
      }
      if (outcomeUnknown(operation, operationKind, error)) return undefined
      return kind === "failed" ? undefined : kind
    }

  const spanAttributes = { owner, namespace, backend: dialect.backend }
  /** Runs one store operation: contention waited out, typed errors (defects included), a span. */
  const run = <R>(
    operation: string,
    kind: "read" | "write",
    effect: Effect.Effect<R, SqlError | StateStoreError>,
    key?: string,
    /** A write's answer without the lock, tried first while the database is known busy (see `retryTransient`). */
    whileGateClosed?: Effect.Effect<Option.Option<R>, SqlError | StateStoreError>
  ) =>
    retry[kind](effect, transient(operation, kind), whileGateClosed).pipe(
      Effect.mapError((error) => (error._tag === "SqlError" ? fromSqlError(operation, kind, key === undefined ? at : { ...at, key })(error) : error)),
      Effect.catchAllDefect((defect) => Effect.fail(unexpectedFailure(operation, kind, defect, at))),
      withOperationSpan(`KeyedStore.${operation}`, spanAttributes)
    )
  /** Runs `f` with the time, once `key` is known to be valid. */
  const withValidKey = <R>(operation: string, key: string, kind: "read" | "write", f: (now: number) => Effect.Effect<R, SqlError | StateStoreError>) => {
    const problem = checkKey(ns, operation, key)
    return problem ? Effect.fail(problem) : run(operation, kind, Effect.flatMap(Clock.currentTimeMillis, f), key)
  }

  /**
   * Removes a row that no longer decodes, only while it still holds that text. The delete may
   * wait for the writer connection: fair, even under a read that runs inline.
   */
  const removeCorrupt = (row: DbRow) => fairly(writes.statement(lockKey, exec(statements.deleteCorrupt(row.entry_key, row.value_json))))
  /** A row as an entry; one that no longer decodes is removed ({@link removeCorrupt}) and reported `Corrupt`. */
  const toEntry = (operation: string, row: DbRow): Effect.Effect<StoredEntry<A>, StateStoreError | SqlError> =>
    Either.match(decodeValue(ns, operation, row.entry_key, row.value_json), {
      onLeft: (corrupt) => Effect.zipRight(removeCorrupt(row), Effect.fail(corrupt)),
      onRight: (value) =>
        Effect.succeed({
          key: row.entry_key,
          value,
          createdAt: Number(row.created_at),
          expiresAt: row.expires_at === null ? undefined : Number(row.expires_at)
        })
    })

  /** When a write is stamped: explicit times as given; otherwise now (+ TTL), by the database's clock when it decides. */
  const rowTimes = (operation: string, now: number, options: WriteOptions | undefined): Either.Either<RowTimes, StateStoreError> =>
    Either.map(writeTimes(ns, operation, now, options), (t): RowTimes =>
      dialect.databaseClock && options?.createdAt === undefined && options?.expiresAt === undefined
        ? { _tag: "FromNow", ttlMillis: t.expiresAt === undefined ? null : t.expiresAt - t.createdAt }
        : { _tag: "At", createdAt: t.createdAt, expiresAt: t.expiresAt ?? null }
    )
  /** A write's row, validated and encoded, or why it is refused. */
  const prepareRow = (operation: string, key: string, value: A, options: WriteOptions | undefined, now: number): Either.Either<RowToWrite, StateStoreError> => {
    const problem = checkKey(ns, operation, key)
    if (problem) return Either.left(problem)
    return Either.flatMap(encodeValue(ns, operation, key, value), (json) => Either.map(rowTimes(operation, now, options), (times) => ({ key, json, times })))
  }

  /**
   * The time a write's liveness is judged by, inside its transaction: the host's `now` with the
   * application clock; with the database's clock, the database's own time — read only when a
   * row carries an explicit expiry that could already have passed (this host's clock may be
   * ahead of the database's or behind it, and the database decides).
   */
  const judgeTime = (now: number, expiries: ReadonlyArray<number | null>) =>
    !dialect.databaseClock || expiries.every((expiresAt) => expiresAt === null)
      ? Effect.succeed(now)
      : Effect.map(exec<{ now: number | string }>(statements.now(now)), (rows) => Number(rows[0]?.now ?? now))

  /** The JSON a value encodes to, as the store compares it (conditional writes and deletes). */
  const expectedJson = (operation: string, key: string, expected: A) => encodeValue(ns, operation, key, expected)

  return { ctx, ns, at, statements, caps, lockKey, exec, read, run, withValidKey, removeCorrupt, toEntry, prepareRow, judgeTime, expectedJson }
}
