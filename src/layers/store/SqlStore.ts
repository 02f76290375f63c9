/**
 * The keyed store over any `@effect/sql` client. One implementation serves SQLite and
 * PostgreSQL: every statement is parameterised and written in the SQL both dialects share
 * (`ON CONFLICT … DO UPDATE … WHERE`, `DELETE … RETURNING`).
 *
 * @module
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { NamespaceHandle, NamespaceOptions } from "../../KeyedStore.js"
import { KeyedStore, type StoreBackend } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { migrate } from "./migrations.js"
import { BusyGate, retryTransient, transientReason } from "./retry.js"
import { fromSqlError } from "./sqlFailure.js"
import { typedFailures, unexpectedFailure } from "./handleGuard.js"
import { makeSqlHandle } from "./sqlHandle.js"
import { lockKeyOf, type SqlHandleContext } from "./sqlHandleCore.js"
import { makeMutex } from "./mutex.js"
import { makeHeldConnection } from "./pgHeldConnection.js"
import { executeOn, makeStatements, type SqlText, type StatementDialect } from "./sqlStatements.js"
import { type ExclusiveWriter, makeWriteTransactions } from "./sqlTransaction.js"
import { firstProblem } from "../settingsCheck.js"
import { defaultStoreSettings, makeNamespaceRegistry, resolveNamespace, type StoreSettings, storeSettingRules } from "./storeRules.js"
import { forkSweeper } from "./sweeper.js"

/** Settings of the SQL store: the store-wide ones, and which clock decides expiry. */
export interface SqlStoreOptions extends Partial<StoreSettings> {
  /**
   * Which clock says what time it is, for expiry (reads, claims, sweeping) and for stamping
   * writes made without explicit timestamps:
   * - `"database"`: the database's own clock, read inside each statement — every process and
   *   host sharing the database agrees, whatever its own clock says (the PostgreSQL default);
   * - `"application"`: Effect's `Clock` of the process — a `TestClock` drives it (the SQLite
   *   default: every process on one file shares the host's clock anyway).
   */
  readonly clock?: "database" | "application" | undefined
}

/** What a backend built on this store may want to hear about. */
export interface SqlStoreHooks {
  /**
   * A statement failed to prepare because the database was busy. `@effect/sql-sqlite-node`
   * caches that failure (ten minutes), so the connection should be replaced.
   */
  readonly onStatementStuck?: (() => void) | undefined
  /**
   * A second connection to the same database, for the reads operations make outside any
   * transaction (lookups, the claim's first look, ranges, observe): they then never queue
   * behind this process's open write transaction, and skip the client's per-statement
   * machinery. It must see what the client commits as soon as it is committed (SQLite in WAL
   * mode: a read starts a fresh snapshot). Reads inside a transaction stay on its connection.
   */
  readonly reader?: Connection | undefined
  /**
   * The client is this store's alone (SQLite: one connection, nobody else's statements):
   * after the migrations the store reserves its connection for its whole lifetime, and its
   * statements and transactions take a lock of the store's own instead of the client's
   * reservation, which costs more than SQLite takes to run most statements. Leave it unset
   * for a client anything else also uses.
   */
  readonly exclusiveClient?: boolean | undefined
  /**
   * PostgreSQL: the store keeps one of the client's pooled connections for the statements it
   * runs outside transactions, one after another, instead of taking one from the pool for each
   * (see pgHeldConnection); given back after `maxAgeMillis` when set, closed once idle for
   * `maxIdleMillis` when set, and given back when the store
   * closes. Only for a client whose pool has room for it beside the store's transactions.
   */
  readonly holdConnection?: { readonly maxAgeMillis?: number | undefined; readonly maxIdleMillis?: number | undefined } | undefined
}

/**
 * Builds the store over the `SqlClient` in context: checks the schema version, runs the
 * migrations (serialised between processes; contention waited out until `lockWait`), and
 * forks the expired-row sweeper in the current scope. Fails only with `StateStoreError`.
 */
export const make = (options: SqlStoreOptions = {}, hooks: SqlStoreHooks = {}) =>
  Effect.gen(function* () {
    const problem = firstProblem("", options, storeSettingRules)
    if (problem !== undefined) return yield* new StateStoreError({ reason: "InvalidInput", operation: "open", detail: problem })
    const { clock, ...settings } = options
    const config = { ...defaultStoreSettings, ...settings }
    const sql = yield* SqlClient
    const backend: Exclude<StoreBackend, "memory"> = sql.onDialectOrElse({ pg: () => "pg" as const, orElse: () => "sqlite" as const })
    const dialect: StatementDialect = { backend, databaseClock: (clock ?? (backend === "pg" ? "database" : "application")) === "database" }
    const lockWaitMillis = Duration.toMillis(config.lockWait)
    // SQLite's lock is the whole file: while it is held, one operation polls it for everyone.
    const gate = backend === "sqlite" ? new BusyGate() : undefined
    const claimFunction = yield* migrate(lockWaitMillis).pipe(
      Effect.mapError((error) =>
        error._tag === "StateStoreError"
          ? error
          : error._tag === "SqlError"
            ? fromSqlError("open", "write")(error)
            : new StateStoreError({ reason: "OpenFailed", operation: "open", detail: error.message, cause: error })
      ),
      Effect.catchAllDefect((defect) => Effect.fail(new StateStoreError({ ...unexpectedFailure("open", "write", defect), reason: "OpenFailed" }))),
      (migrating) => retryTransient(lockWaitMillis, gate)(migrating, transientReason)
    )
    const registerNamespace = makeNamespaceRegistry()
    const scope = yield* Effect.scope
    const writer: ExclusiveWriter | undefined =
      hooks.exclusiveClient === true && backend === "sqlite" ? { connection: yield* sql.reserve.pipe(Effect.mapError(fromSqlError("open", "write"))), lock: makeMutex() } : undefined
    const outside = hooks.holdConnection !== undefined && backend === "pg" ? yield* makeHeldConnection(sql, hooks.holdConnection) : undefined
    const context: SqlHandleContext = {
      scope,
      sql,
      dialect,
      writes: makeWriteTransactions(sql, lockWaitMillis, { writer, outside }),
      ownerMaxEntries: config.ownerMaxEntries,
      lockWaitMillis,
      gate,
      onStatementStuck: hooks.onStatementStuck,
      reader: hooks.reader,
      claimFunction
    }
    const listNamespaces: SqlText = { text: "SELECT owner, namespace FROM channel_state_counts WHERE row_count > 0", params: [] }

    yield* forkSweeper(config, {
      // On the reader when there is one, else on the client (the writer when the store has it).
      namespaces: (hooks.reader === undefined
        ? context.writes.execute<{ owner: string; namespace: string }>(listNamespaces)
        : executeOn<{ owner: string; namespace: string }>(hooks.reader, listNamespaces)
      ).pipe(Effect.mapError(fromSqlError("sweep", "read"))),
      sweep: ({ owner, namespace }, limit) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const statement = makeStatements(dialect, owner, namespace).deleteExpired(now, limit)
          return context.writes.statement(lockKeyOf(owner, namespace, config.ownerMaxEntries), context.writes.execute(statement))
        }).pipe(
          Effect.map((rows) => rows.length),
          Effect.mapError(fromSqlError("sweep", "write", { owner, namespace })),
          (sweeping) => retryTransient(lockWaitMillis, gate)(sweeping, transientReason)
        )
    })

    const open = <A, I>(namespaceOptions: NamespaceOptions<A, I>): Effect.Effect<NamespaceHandle<A>, StateStoreError> =>
      Effect.gen(function* () {
        const ns = yield* resolveNamespace(namespaceOptions, config.maxValueBytes)
        yield* registerNamespace(ns)
        return typedFailures(yield* makeSqlHandle(context, ns))
      })

    return KeyedStore.of({ backend, open })
  })

/** The store as a layer over the `SqlClient` in context. */
export const layer = (options: SqlStoreOptions = {}): Layer.Layer<KeyedStore, StateStoreError, SqlClient> => Layer.scoped(KeyedStore, make(options))
