/**
 * Operator queries over a keyed-store database: what is stored per owner and namespace,
 * which entries, deleting one owner's rows, and the checks `channel-state doctor` runs.
 *
 * Everything here works on the `SqlClient` in context (SQLite or PostgreSQL, the same
 * parameterised SQL for both; `sql.onDialectOrElse` only where the dialects differ) and
 * fails only with {@link StateStoreError}. None of it runs migrations: point it at a
 * database the store has opened before, and check it with {@link ensureReadable} first.
 *
 * @module
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { KeyedStore } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { ENTRIES_TABLE, SCHEMA_VERSION, storedSchemaVersion } from "./migrations.js"
import { fromSqlError } from "./sqlFailure.js"

/** Stored rows of one owner + namespace, as {@link summary} reports them. */
export interface NamespaceSummary {
  readonly owner: string
  readonly namespace: string
  /** Rows without expiry or expiring after the time of the query. */
  readonly live: number
  /** Rows past their expiry the sweeper has not deleted yet (invisible to every read). */
  readonly expired: number
  /** Sum of the stored JSON values' sizes, in UTF-8 bytes (keys and row overhead not counted). */
  readonly bytes: number
  /** Earliest `createdAt` (epoch ms) of any row, live or expired. */
  readonly oldest: number
  /** Latest `createdAt` (epoch ms) of any row, live or expired. */
  readonly newest: number
}

/** One stored row as {@link listEntries} reports it. */
export interface AdminEntry {
  readonly owner: string
  readonly namespace: string
  readonly key: string
  /** Epoch milliseconds. */
  readonly createdAt: number
  /** Epoch milliseconds; `undefined` for a row without expiry. */
  readonly expiresAt: number | undefined
  /** Whether the row was past its expiry at the time of the query. */
  readonly expired: boolean
  /** Size of the stored JSON value, in UTF-8 bytes. */
  readonly bytes: number
  /** The stored JSON text — present only when asked for (`withValues`): values may hold user content. */
  readonly valueJson?: string
}

/** Narrows a query to one owner and/or one namespace. */
export interface EntryFilter {
  readonly owner?: string | undefined
  readonly namespace?: string | undefined
}

/** What {@link purge} deletes: always exactly one owner's rows. */
export interface PurgeTarget {
  /** Required: purge never reaches past this owner. */
  readonly owner: string
  /** Only this namespace of the owner (default: all its namespaces). */
  readonly namespace?: string | undefined
  /** Only rows past their expiry (default: every row). */
  readonly expiredOnly?: boolean | undefined
}

/** Rows per namespace a purge deletes (or deleted), sorted by namespace. */
export interface PurgeCounts {
  readonly total: number
  readonly byNamespace: ReadonlyArray<{ readonly namespace: string; readonly rows: number }>
}

/** What the database's schema is, compared to what this code knows. */
export interface SchemaStatus {
  /** The schema version stamped in the database; 0 when it has none. */
  readonly stored: number
  /** The newest version this code knows ({@link SCHEMA_VERSION}). */
  readonly known: number
  /** Whether the entries table exists. */
  readonly hasEntries: boolean
}

/** The owner the doctor's probe writes under (and deletes from again); reserved: plugins must not use it. */
export const DOCTOR_OWNER = "channel-state.doctor"

const toNumber = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value))

/** Maps driver errors of an admin query to a typed error naming the operation. */
const typed =
  (operation: string, kind: "read" | "write", where: { owner?: string; namespace?: string } = {}) =>
  <A, R>(effect: Effect.Effect<A, SqlError | StateStoreError, R>): Effect.Effect<A, StateStoreError, R> =>
    Effect.mapError(effect, (error) => (error._tag === "SqlError" ? fromSqlError(operation, kind, where)(error) : error))

/** `owner = ? AND namespace = ?` for the given parts of a scope (`1=1` for none). */
const scopeClause = (sql: SqlClient, scope: EntryFilter) =>
  sql.and([
    ...(scope.owner === undefined ? [] : [sql`owner = ${scope.owner}`]),
    ...(scope.namespace === undefined ? [] : [sql`namespace = ${scope.namespace}`])
  ])

/** The size of `value_json` in bytes: PostgreSQL counts octets, SQLite counts a text's characters unless cast. */
const valueBytes = (sql: SqlClient) =>
  sql.onDialectOrElse({ pg: () => sql`octet_length(value_json)`, orElse: () => sql`length(CAST(value_json AS BLOB))` })

const tableExists = (sql: SqlClient, table: string) =>
  Effect.map(
    sql.onDialectOrElse({
      pg: () => sql<{ found: string | null }>`SELECT to_regclass(${table})::text AS found`,
      orElse: () => sql<{ found: string | null }>`SELECT name AS found FROM sqlite_master WHERE type = 'table' AND name = ${table}`
    }),
    (rows) => rows[0]?.found != null
  )

/**
 * The schema version in the database next to the one this code knows. Read-only; never
 * migrates.
 */
export const schemaStatus: Effect.Effect<SchemaStatus, StateStoreError, SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient
  const stored = yield* storedSchemaVersion
  const hasEntries = yield* tableExists(sql, ENTRIES_TABLE)
  return { stored, known: SCHEMA_VERSION, hasEntries }
}).pipe(typed("inspect", "read"))

/**
 * Succeeds (with the stored schema version) only for a channel-state database this code can
 * read: fails with `SchemaUnsupported` when a newer channel-state wrote it, and with
 * `OpenFailed` when it holds no channel-state tables. Read-only; never migrates.
 */
export const ensureReadable: Effect.Effect<number, StateStoreError, SqlClient> = Effect.flatMap(schemaStatus, (status) => {
  if (status.stored > status.known) {
    return Effect.fail(
      new StateStoreError({
        reason: "SchemaUnsupported",
        operation: "open",
        detail: `written by a newer channel-state (schema ${status.stored}, this knows ${status.known})`
      })
    )
  }
  if (!status.hasEntries) {
    return Effect.fail(
      new StateStoreError({
        reason: "OpenFailed",
        operation: "open",
        detail: `not a channel-state database (it has no ${ENTRIES_TABLE} table)`
      })
    )
  }
  return Effect.succeed(status.stored)
})

interface SummaryRow {
  readonly owner: string
  readonly namespace: string
  readonly live: number | string | null
  readonly expired: number | string | null
  readonly bytes: number | string | null
  readonly oldest: number | string | null
  readonly newest: number | string | null
}

/**
 * Stored rows per owner + namespace (sorted by owner, then namespace, in byte order), narrowed
 * to `scope`. One read statement; "live" and "expired" are judged at the current `Clock` time.
 */
export const summary = (scope: EntryFilter = {}): Effect.Effect<ReadonlyArray<NamespaceSummary>, StateStoreError, SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const now = yield* Clock.currentTimeMillis
    const rows = yield* sql<SummaryRow>`SELECT owner, namespace,
        SUM(CASE WHEN expires_at IS NULL OR expires_at > ${now} THEN 1 ELSE 0 END) AS live,
        SUM(CASE WHEN expires_at IS NOT NULL AND expires_at <= ${now} THEN 1 ELSE 0 END) AS expired,
        SUM(${valueBytes(sql)}) AS bytes,
        MIN(created_at) AS oldest,
        MAX(created_at) AS newest
      FROM channel_state_entries
      WHERE ${scopeClause(sql, scope)}
      GROUP BY owner, namespace
      ORDER BY owner, namespace`
    return rows.map((row) => ({
      owner: row.owner,
      namespace: row.namespace,
      live: toNumber(row.live),
      expired: toNumber(row.expired),
      bytes: toNumber(row.bytes),
      oldest: toNumber(row.oldest),
      newest: toNumber(row.newest)
    }))
  }).pipe(typed("inspect", "read", definedOnly(scope)))

interface EntryRow {
  readonly owner: string
  readonly namespace: string
  readonly entry_key: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
  readonly bytes: number | string | null
  readonly value_json?: string
}

/**
 * One owner's rows (live and expired), by namespace, then oldest first, at most `limit` of
 * them (all when `limit` is undefined). Values are read only when `withValues` is set —
 * otherwise they never leave the database.
 */
export const listEntries = (options: {
  readonly owner: string
  readonly namespace?: string | undefined
  readonly withValues?: boolean | undefined
  readonly limit?: number | undefined
}): Effect.Effect<ReadonlyArray<AdminEntry>, StateStoreError, SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const now = yield* Clock.currentTimeMillis
    const value = options.withValues ? sql`, value_json` : sql``
    const limit = options.limit === undefined ? sql`` : sql`LIMIT ${options.limit}`
    const rows = yield* sql<EntryRow>`SELECT owner, namespace, entry_key, created_at, expires_at, ${valueBytes(sql)} AS bytes${value}
      FROM channel_state_entries
      WHERE ${scopeClause(sql, { owner: options.owner, namespace: options.namespace })}
      ORDER BY namespace, created_at, entry_key
      ${limit}`
    return rows.map((row): AdminEntry => {
      const expiresAt = row.expires_at === null ? undefined : Number(row.expires_at)
      const entry = {
        owner: row.owner,
        namespace: row.namespace,
        key: row.entry_key,
        createdAt: Number(row.created_at),
        expiresAt,
        expired: expiresAt !== undefined && expiresAt <= now,
        bytes: toNumber(row.bytes)
      }
      return options.withValues && row.value_json !== undefined ? { ...entry, valueJson: row.value_json } : entry
    })
  }).pipe(typed("inspect", "read", definedOnly({ owner: options.owner, namespace: options.namespace })))

/** The `WHERE` of a purge: the owner always, then the optional narrowing. */
const purgeClause = (sql: SqlClient, target: PurgeTarget, now: number) =>
  sql.and([
    sql`owner = ${target.owner}`,
    ...(target.namespace === undefined ? [] : [sql`namespace = ${target.namespace}`]),
    ...(target.expiredOnly ? [sql`expires_at <= ${now}`] : [])
  ])

/** Adds up `[namespace, rows]` pairs into counts sorted by namespace (byte order, like the SQL). */
const countsOf = (pairs: ReadonlyArray<readonly [string, number]>): PurgeCounts => {
  const counts = new Map<string, number>()
  for (const [namespace, rows] of pairs) counts.set(namespace, (counts.get(namespace) ?? 0) + rows)
  const byNamespace = [...counts.entries()]
    .sort(([a], [b]) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")))
    .map(([namespace, rows]) => ({ namespace, rows }))
  return { total: byNamespace.reduce((sum, n) => sum + n.rows, 0), byNamespace }
}

const checkOwner = (target: PurgeTarget) =>
  typeof target.owner === "string" && target.owner.length > 0
    ? Effect.void
    : Effect.fail(new StateStoreError({ reason: "InvalidInput", operation: "purge", detail: "an owner is required: purge only ever deletes one owner's rows" }))

/**
 * How many rows {@link purge} with the same target would delete now, per namespace. Read-only.
 * Fails with `InvalidInput` for an empty owner.
 */
export const purgePreview = (target: PurgeTarget): Effect.Effect<PurgeCounts, StateStoreError, SqlClient> =>
  Effect.gen(function* () {
    yield* checkOwner(target)
    const sql = yield* SqlClient
    const now = yield* Clock.currentTimeMillis
    const rows = yield* sql<{ namespace: string; rows: number | string }>`SELECT namespace, count(*) AS rows
      FROM channel_state_entries WHERE ${purgeClause(sql, target, now)}
      GROUP BY namespace`
    return countsOf(rows.map((row) => [row.namespace, toNumber(row.rows)] as const))
  }).pipe(typed("purge", "read", definedOnly(target)))

/**
 * Deletes one owner's rows — all of them, or one namespace's, or only the expired ones — in
 * one statement, and returns how many were deleted per namespace. The owner is always part of
 * the condition: rows of every other owner are never touched. Fails with `InvalidInput` for an
 * empty owner (nothing deleted). Running plugins keep what they hold in memory and may write
 * it back.
 */
export const purge = (target: PurgeTarget): Effect.Effect<PurgeCounts, StateStoreError, SqlClient> =>
  Effect.gen(function* () {
    yield* checkOwner(target)
    const sql = yield* SqlClient
    const now = yield* Clock.currentTimeMillis
    const rows = yield* sql<{ namespace: string }>`DELETE FROM channel_state_entries
      WHERE ${purgeClause(sql, target, now)}
      RETURNING namespace`
    return countsOf(rows.map((row) => [row.namespace, 1] as const))
  }).pipe(typed("purge", "write", definedOnly(target)))

/**
 * SQLite's `PRAGMA integrity_check`: an empty list when the file is sound, otherwise the
 * problems it reports (at most `limit`). `undefined` on PostgreSQL, which has no equivalent.
 * Read-only.
 */
export const integrityCheck = (limit = 10): Effect.Effect<ReadonlyArray<string> | undefined, StateStoreError, SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const rows = yield* sql.onDialectOrElse({
      sqlite: () => sql.unsafe<Record<string, unknown>>(`PRAGMA integrity_check(${Math.max(1, Math.floor(limit))})`),
      orElse: () => Effect.succeed(undefined)
    })
    if (rows === undefined) return undefined
    const problems = rows.map((row) => String(Object.values(row)[0]))
    return problems.length === 1 && problems[0] === "ok" ? [] : problems
  }).pipe(typed("doctor", "read"))

/** SQLite's journal mode (`wal` is what the store sets); `undefined` on PostgreSQL. Read-only. */
export const journalMode: Effect.Effect<string | undefined, StateStoreError, SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient
  const rows = yield* sql.onDialectOrElse({
    sqlite: () => sql<{ journal_mode: string }>`PRAGMA journal_mode`,
    orElse: () => Effect.succeed(undefined)
  })
  return rows === undefined ? undefined : String(rows[0]?.journal_mode ?? "unknown").toLowerCase()
}).pipe(typed("doctor", "read"))

const ProbeValue = Schema.Struct({ nonce: Schema.String, at: Schema.Number })

/**
 * Writes a row under the reserved {@link DOCTOR_OWNER} through the store in context, reads it
 * back, deletes it and checks it is gone. Touches no other owner. Fails with `ReadFailed` when
 * the store does not give back what was written, or with the store's own error.
 */
export const probe: Effect.Effect<void, StateStoreError, KeyedStore> = Effect.gen(function* () {
  const store = yield* KeyedStore
  const handle = yield* store.open({ owner: DOCTOR_OWNER, namespace: "probe", schema: ProbeValue, maxEntries: 100, ttl: "10 minutes" })
  const nonce = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`
  const key = `probe-${nonce}`
  const wrong = (detail: string) => new StateStoreError({ reason: "ReadFailed", operation: "doctor.probe", owner: DOCTOR_OWNER, namespace: "probe", key, detail })
  yield* handle.register(key, { nonce, at: Date.now() })
  const read = yield* handle.lookup(key)
  if (Option.isNone(read) || read.value.nonce !== nonce) return yield* wrong("the row just written could not be read back")
  if (!(yield* handle.delete(key))) return yield* wrong("the row just written was gone before it was deleted")
  if (Option.isSome(yield* handle.lookup(key))) return yield* wrong("the row was still there after it was deleted")
})

const definedOnly = (where: { owner?: string | undefined; namespace?: string | undefined }): { owner?: string; namespace?: string } => ({
  ...(where.owner === undefined ? {} : { owner: where.owner }),
  ...(where.namespace === undefined ? {} : { namespace: where.namespace })
})

/** The database engine and its version, e.g. `SQLite 3.49.1` or `PostgreSQL 15.2`. Read-only. */
export const engineVersion: Effect.Effect<string, StateStoreError, SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient
  return yield* sql.onDialectOrElse({
    pg: () => Effect.map(sql<{ version: string }>`SELECT current_setting('server_version') AS version`, (rows) => `PostgreSQL ${rows[0]?.version ?? "?"}`),
    orElse: () => Effect.map(sql<{ version: string }>`SELECT sqlite_version() AS version`, (rows) => `SQLite ${rows[0]?.version ?? "?"}`)
  })
}).pipe(typed("doctor", "read"))
