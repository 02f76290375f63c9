/**
 * Every statement the SQL store runs on the entries table, as text plus parameters, in the
 * SQL SQLite and PostgreSQL share (`ON CONFLICT … DO UPDATE … WHERE`, `… RETURNING`). All of
 * them are parameterised: only placeholders, column names and the clock expression are
 * written into the text, never a value.
 *
 * Which clock decides: with `databaseClock` (PostgreSQL's default) "now" is the database's
 * own time, evaluated in the statement, so every instance agrees on expiry whatever
 * its host clock says; otherwise it is the caller's `now` (Effect's `Clock`), passed as a
 * parameter.
 *
 * @internal
 */
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Effect from "effect/Effect"
import type { StoreBackend } from "../../KeyedStore.js"

/** What the statements are written for. */
export interface StatementDialect {
  readonly backend: Exclude<StoreBackend, "memory">
  /** "now" is the database's clock, read in each statement. */
  readonly databaseClock: boolean
}

/** A statement: its text (placeholders only) and its parameters. */
export interface SqlText {
  readonly text: string
  readonly params: ReadonlyArray<unknown>
}

/** Runs a statement on `connection` itself, through its own `execute` (prepared once per connection, no compiler, no span). */
export const executeOn = <R extends object = Record<string, unknown>>(connection: Connection, statement: SqlText) =>
  connection.execute(statement.text, statement.params, undefined) as Effect.Effect<ReadonlyArray<R>, SqlError>

/** The database's time in epoch milliseconds: one value for the whole statement. */
const DATABASE_NOW = {
  pg: "floor(extract(epoch from statement_timestamp()) * 1000)::bigint",
  sqlite: "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
} as const

/** The smaller of two integers (an expiry stamped by the database clock stays within the largest date). */
const LEAST = { pg: "LEAST", sqlite: "MIN" } as const

/** The latest epoch ms a row may expire at (the largest JS `Date`). */
const MAX_EXPIRY = "8640000000000000"

/** Collects parameters in the order their placeholders appear in the text. */
class Params {
  readonly values: Array<unknown> = []
  constructor(
    private readonly dialect: StatementDialect,
    private readonly nowValue: number
  ) {}
  /** The placeholder of one more parameter. */
  v(value: unknown): string {
    this.values.push(value)
    return this.dialect.backend === "pg" ? `$${this.values.length}` : "?"
  }
  /** "Now" in epoch ms: the database's clock, or the caller's as a parameter. */
  now(): string {
    return this.dialect.databaseClock ? DATABASE_NOW[this.dialect.backend] : this.v(this.nowValue)
  }
}

/** When a row is stamped: explicit epoch ms, or by the statement's clock ("now", plus a TTL in ms when it has one). */
export type RowTimes =
  | { readonly _tag: "At"; readonly createdAt: number; readonly expiresAt: number | null }
  | { readonly _tag: "FromNow"; readonly ttlMillis: number | null }

/** A row to write, validated and encoded. */
export interface RowToWrite {
  readonly key: string
  readonly json: string
  readonly times: RowTimes
}

/**
 * PostgreSQL: the namespace's advisory lock, taken by the statement itself (see
 * `lockedPrefix` in {@link makeStatements}) instead of by a transaction around it.
 */
export interface StatementLock {
  /** The lock key (`lockKeyOf`). */
  readonly key: string
  /** How long the statement waits for the lock, as `lock_timeout` takes it (`"5000ms"`). */
  readonly timeout: string
}

/** A row as read back (PostgreSQL BIGINTs arrive as strings). */
export interface DbRow {
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
}

/** A row as an observation saw it: what a compare-and-set's write is conditional on. */
export interface ObservedRow {
  readonly json: string
  readonly createdAt: number
  readonly expiresAt: number | undefined
}

/** A deleted row, with whether it was live when deleted (SQLite answers 0/1). */
export interface DeletedRow extends DbRow {
  readonly live: boolean | number
}

/** PostgreSQL: takes the namespace's advisory lock, waiting at most the lock's timeout (local to the transaction). */
const advisoryLock = (p: Params, lock: StatementLock) =>
  `SELECT set_config('lock_timeout', ${p.v(lock.timeout)}, true) AS lock_timeout, pg_advisory_xact_lock(hashtextextended(${p.v(lock.key)}, 0)) AS locked`

/** PostgreSQL: the statement that takes `lock` inside a transaction (held to its end). */
export const lockStatement = (lock: StatementLock): SqlText => {
  const p = new Params({ backend: "pg", databaseClock: true }, 0)
  return { text: advisoryLock(p, lock), params: p.values }
}

/**
 * PostgreSQL: the function a claim under an owner cap runs as its one statement (created by
 * the migrations, see `CREATE_CLAIM_FUNCTION` there). Its name carries its version: a changed
 * body gets a new name, so processes of two versions can share a database.
 */
export const CLAIM_FUNCTION = "channel_state_claim_v1"

const COLUMNS = "owner, namespace, entry_key, value_json, created_at, expires_at"
/** ANDed into a WHERE: true once `channel_state_lock` holds the lock (planned as a one-time filter). */
const LOCK_GATE = " AND (SELECT locked IS NOT NULL FROM channel_state_lock)"
const SET_ALL = "value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at"
const E = "channel_state_entries"

/** The statements of one namespace. */
export const makeStatements = (dialect: StatementDialect, owner: string, namespace: string) => {
  const start = (now: number) => new Params(dialect, now)
  const inNamespace = (p: Params) => `owner = ${p.v(owner)} AND namespace = ${p.v(namespace)}`
  const live = (p: Params) => `(expires_at IS NULL OR expires_at > ${p.now()})`
  /** The created_at and expires_at of a row, as SQL: placeholders, or the clock (+ a TTL placeholder). */
  const timeParts = (p: Params, t: RowTimes): readonly [string, string] => {
    if (t._tag === "At") return [p.v(t.createdAt), p.v(t.expiresAt)]
    const created = p.now()
    if (t.ttlMillis === null) return [created, "NULL"]
    const stamp = p.now()
    return [created, `${LEAST[dialect.backend]}(${stamp} + ${p.v(t.ttlMillis)}, ${MAX_EXPIRY})`]
  }
  const times = (p: Params, t: RowTimes) => timeParts(p, t).join(", ")
  const tuple = (p: Params, row: RowToWrite) => `(${p.v(owner)}, ${p.v(namespace)}, ${p.v(row.key)}, ${p.v(row.json)}, ${times(p, row.times)})`
  const done = (p: Params, text: string): SqlText => ({ text, params: p.values })
  /**
   * PostgreSQL, a single autocommit statement under the namespace's lock: a CTE takes
   * `pg_advisory_xact_lock` (after `lock_timeout`, local to the statement's own transaction),
   * and a condition on it gates the statement — planned as a one-time filter, evaluated before
   * the statement reads or locks any row. Held to the statement's commit. Returns the prefix and
   * the condition (to AND into the WHERE); nothing without `lock`.
   *
   * Its snapshot is taken when the statement starts, before the lock is granted: a row committed
   * by the lock's previous holder may be invisible to it. Only statements that stay right under
   * that may take it (a DELETE re-checks its whole WHERE on the newest version of a row it
   * finds, and a row it cannot see it leaves alone).
   */
  const lockedPrefix = (p: Params, lock: StatementLock | undefined): readonly [string, string] =>
    lock === undefined ? ["", ""] : [`WITH ${lockCte(p, lock, "")} `, LOCK_GATE]
  /** The lock's CTE, `channel_state_lock` (taken only when `when`, a WHERE clause or nothing, holds). */
  const lockCte = (p: Params, lock: StatementLock, when: string) =>
    `channel_state_lock AS (${advisoryLock(p, lock)} ${when})`
  const upsertPrefix = (p: Params, row: RowToWrite) =>
    `INSERT INTO ${E} (${COLUMNS}) VALUES ${tuple(p, row)} ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET ${SET_ALL}`

  // Multi-row upserts are built once per row count: a batch then costs one parameter array.
  // SQLite: the owner and namespace are bound once per statement, not once per row (SQLite
  // copies every bound text: a third fewer parameters, and about a tenth less time in the
  // statement), and the text is half as long (the client's statement cache hashes it on
  // every run). The same rows: a VALUES list selected from (`WHERE true` keeps SQLite's
  // parser from reading ON CONFLICT as a join's constraint).
  // PostgreSQL keeps one tuple of six per row: its VALUES columns take their types from the
  // table only when inserted directly.
  const upsertTexts = new Map<number, string>()
  const pgPlaceholder = (i: number) => `$${i}`
  const upsertText = (rows: number): string => {
    let text = upsertTexts.get(rows)
    if (text === undefined) {
      if (dialect.backend === "pg") {
        const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 6 }, (_, c) => pgPlaceholder(r * 6 + c + 1)).join(", ")})`)
        text = `INSERT INTO ${E} (${COLUMNS}) VALUES ${tuples.join(", ")} ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET ${SET_ALL}`
      } else {
        const tuples = Array.from({ length: rows }, () => "(?,?,?,?)").join(",")
        text = `INSERT INTO ${E} (${COLUMNS}) SELECT ?, ?, column1, column2, column3, column4 FROM (VALUES ${tuples}) WHERE true ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET ${SET_ALL}`
      }
      upsertTexts.set(rows, text)
    }
    return text
  }

  /** SQLite: `entry_key` is one of `keys`, passed as one parameter (a JSON array): one statement text for any number of keys. */
  const keyIn = (p: Params, keys: ReadonlyArray<string>) => `entry_key IN (SELECT value FROM json_each(${p.v(JSON.stringify(keys))}))`
  /** The row exactly as observed: the same JSON and timestamps, still live. */
  const asObserved = (p: Params, key: string, seen: ObservedRow) =>
    `${inNamespace(p)} AND entry_key = ${p.v(key)} AND value_json = ${p.v(seen.json)} AND created_at = ${p.v(seen.createdAt)} AND expires_at IS NOT DISTINCT FROM ${p.v(seen.expiresAt ?? null)} AND ${live(p)}`

  return {
    /** Upserts rows with explicit timestamps, in one statement (written per dialect: see `upsertText`). */
    upsertMany: (rows: ReadonlyArray<{ readonly key: string; readonly json: string; readonly createdAt: number; readonly expiresAt: number | null }>): SqlText => {
      const params: Array<unknown> = []
      if (dialect.backend === "pg") for (const row of rows) params.push(owner, namespace, row.key, row.json, row.createdAt, row.expiresAt)
      else {
        params.push(owner, namespace)
        for (const row of rows) params.push(row.key, row.json, row.createdAt, row.expiresAt)
      }
      return { text: upsertText(rows.length), params }
    },
    /** Upserts one row. */
    upsert: (now: number, row: RowToWrite): SqlText => {
      const p = start(now)
      return done(p, upsertPrefix(p, row))
    },
    /**
     * Writes `row` only where the key has no live row — or, with `orEqualTo`, where its live
     * value is that JSON. Returns a row when it wrote. A claim is this without `orEqualTo`.
     */
    upsertIfAbsent: (now: number, row: RowToWrite, orEqualTo?: string): SqlText => {
      const p = start(now)
      const prefix = upsertPrefix(p, row)
      const expired = `(${E}.expires_at IS NOT NULL AND ${E}.expires_at <= ${p.now()})`
      const condition = orEqualTo === undefined ? expired : `(${expired} OR ${E}.value_json = ${p.v(orEqualTo)})`
      return done(p, `${prefix} WHERE ${condition} RETURNING entry_key`)
    },
    /** Claims: writes each row only where its key has no live row; returns the keys written. Keys must be distinct. */
    claimMany: (now: number, rows: ReadonlyArray<RowToWrite>): SqlText => {
      const p = start(now)
      const tuples = rows.map((row) => tuple(p, row)).join(", ")
      const expired = `${E}.expires_at IS NOT NULL AND ${E}.expires_at <= ${p.now()}`
      return done(p, `INSERT INTO ${E} (${COLUMNS}) VALUES ${tuples} ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET ${SET_ALL} WHERE ${expired} RETURNING entry_key`)
    },
    /**
     * SQLite, one autocommit statement (atomic: it holds the file's write lock): claims `rows`
     * (distinct keys) where their key has no live row, only while the trigger-kept counts leave
     * room for every one of them as a new row, in the namespace (`maxEntries`) and, with
     * `ownerMaxEntries`, in the owner. The counts include expired rows not yet swept, so a yes
     * is never wrong. The room is judged once, before any row is written (a materialized CTE:
     * the rows' own insert triggers must not change the answer halfway). Returns the keys
     * written: none when the counts leave no room, and then the caller decides in a transaction.
     */
    claimIfCountsAllow: (now: number, rows: ReadonlyArray<RowToWrite>, maxEntries: number, ownerMaxEntries: number | undefined): SqlText => {
      const p = start(now)
      const fresh = rows.length
      const namespaceRoom = `coalesce((SELECT row_count FROM channel_state_counts WHERE ${inNamespace(p)}), 0) + ${p.v(fresh)} <= ${p.v(maxEntries)}`
      const ownerRoom =
        ownerMaxEntries === undefined ? "" : ` AND coalesce((SELECT sum(row_count) FROM channel_state_counts WHERE owner = ${p.v(owner)}), 0) + ${p.v(fresh)} <= ${p.v(ownerMaxEntries)}`
      const room = `WITH channel_state_room AS MATERIALIZED (SELECT ${namespaceRoom}${ownerRoom} AS fits) `
      const tuples = rows.map((row) => tuple(p, row)).join(", ")
      const expired = `${E}.expires_at IS NOT NULL AND ${E}.expires_at <= ${p.now()}`
      return done(
        p,
        `${room}INSERT INTO ${E} (${COLUMNS}) SELECT * FROM (VALUES ${tuples}) WHERE (SELECT fits FROM channel_state_room) ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET ${SET_ALL} WHERE ${expired} RETURNING entry_key`
      )
    },
    /**
     * PostgreSQL, one autocommit statement: claims `rows` (distinct keys) where their key has no
     * live row, under the namespace's lock, only while the namespace's row count leaves room for
     * all of them. Always answers one row: `candidates`, how many keys had no live row when the
     * statement started (with none, it takes no lock and writes nothing: every key is taken);
     * `room_count`, the namespace's counter row as the lock's holder left it (`FOR UPDATE`
     * reads its newest version, which the statement's snapshot may predate; null when the
     * namespace has no counter yet); `won`, the keys written. It writes nothing unless the
     * counter says all candidates fit; then the caller must decide in a transaction instead.
     * The claim itself is `INSERT … ON CONFLICT … DO UPDATE … WHERE expired`, which judges the
     * newest version of a conflicting row whatever the snapshot.
     */
    claimIfRoom: (now: number, rows: ReadonlyArray<RowToWrite>, lock: StatementLock, maxEntries: number): SqlText => {
      const p = start(now)
      const locking = lockCte(p, lock, "WHERE EXISTS (SELECT 1 FROM channel_state_candidates)")
      // VALUES outside a plain INSERT take no types from the table: each column is cast.
      const typed = (row: RowToWrite) => {
        const [created, expires] = timeParts(p, row.times)
        return `(${p.v(owner)}::text, ${p.v(namespace)}::text, ${p.v(row.key)}::text, ${p.v(row.json)}::text, (${created})::bigint, (${expires})::bigint)`
      }
      const tuples = rows.map(typed).join(", ")
      const isLive = `SELECT 1 FROM ${E} WHERE ${E}.owner = v.owner AND ${E}.namespace = v.namespace AND ${E}.entry_key = v.entry_key AND ${live(p)}`
      const candidates = `channel_state_candidates AS (SELECT * FROM (VALUES ${tuples}) AS v(${COLUMNS}) WHERE NOT EXISTS (${isLive}))`
      const counter = `channel_state_room AS (SELECT row_count FROM channel_state_counts WHERE ${inNamespace(p)}${LOCK_GATE} FOR UPDATE)`
      const fits = `(SELECT row_count FROM channel_state_room) + (SELECT count(*) FROM channel_state_candidates) <= ${p.v(maxEntries)}::bigint`
      const expired = `${E}.expires_at IS NOT NULL AND ${E}.expires_at <= ${p.now()}`
      const claimed = `channel_state_claimed AS (INSERT INTO ${E} (${COLUMNS}) SELECT * FROM channel_state_candidates WHERE ${fits} ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET ${SET_ALL} WHERE ${expired} RETURNING entry_key)`
      const answer = "SELECT (SELECT count(*) FROM channel_state_candidates) AS candidates, (SELECT row_count FROM channel_state_room) AS room_count, (SELECT array_agg(entry_key) FROM channel_state_claimed) AS won"
      return done(p, `WITH ${candidates}, ${locking}, ${counter}, ${claimed} ${answer}`)
    },
    /** Replaces the live row whose value is `expectedJson`. Returns a row when it did. */
    replaceIfEqual: (now: number, row: RowToWrite, expectedJson: string): SqlText => {
      const p = start(now)
      const value = p.v(row.json)
      const [created, expires] = timeParts(p, row.times)
      const set = `value_json = ${value}, created_at = ${created}, expires_at = ${expires}`
      return done(p, `UPDATE ${E} SET ${set} WHERE ${inNamespace(p)} AND entry_key = ${p.v(row.key)} AND value_json = ${p.v(expectedJson)} AND ${live(p)} RETURNING entry_key`)
    },
    /** Deletes the live row of `key` whose value is `expectedJson`. Returns a row when it did. With `lock` (PostgreSQL), under the namespace's lock. */
    deleteIfEqual: (now: number, key: string, expectedJson: string, lock?: StatementLock): SqlText => {
      const p = start(now)
      const [prefix, gate] = lockedPrefix(p, lock)
      return done(p, `${prefix}DELETE FROM ${E} WHERE ${inNamespace(p)} AND entry_key = ${p.v(key)} AND value_json = ${p.v(expectedJson)} AND ${live(p)}${gate} RETURNING entry_key`)
    },
    /** The live row of `key`. */
    lookup: (now: number, key: string): SqlText => {
      const p = start(now)
      return done(p, `SELECT entry_key, value_json, created_at, expires_at FROM ${E} WHERE ${inNamespace(p)} AND entry_key = ${p.v(key)} AND ${live(p)}`)
    },
    /**
     * The live rows of these keys (a JSON array of keys, however many). On PostgreSQL the keys
     * are a derived table joined on the primary key: `IN (SELECT …)` of a set-returning
     * function was planned as a nested loop over every row (1 000 keys: 116 ms; joined: 0.9 ms).
     */
    lookupMany: (now: number, keys: ReadonlyArray<string>): SqlText => {
      const p = start(now)
      if (dialect.backend !== "pg") {
        const where = inNamespace(p)
        return done(p, `SELECT entry_key, value_json, created_at, expires_at FROM ${E} WHERE ${where} AND ${keyIn(p, keys)} AND ${live(p)}`)
      }
      const wanted = `(SELECT jsonb_array_elements_text(${p.v(JSON.stringify(keys))}::jsonb) AS wanted) AS wanted_keys`
      return done(p, `SELECT entry_key, value_json, created_at, expires_at FROM ${wanted} JOIN ${E} ON ${inNamespace(p)} AND entry_key = wanted_keys.wanted WHERE ${live(p)}`)
    },
    /** Deletes the rows of these keys, returning each deleted key and whether its row was live (joined on PostgreSQL, as `lookupMany`). */
    deleteMany: (now: number, keys: ReadonlyArray<string>): SqlText => {
      const p = start(now)
      if (dialect.backend !== "pg") {
        const where = inNamespace(p)
        return done(p, `DELETE FROM ${E} WHERE ${where} AND ${keyIn(p, keys)} RETURNING entry_key, ${live(p)} AS live`)
      }
      const wanted = `(SELECT jsonb_array_elements_text(${p.v(JSON.stringify(keys))}::jsonb) AS wanted) AS wanted_keys`
      return done(p, `DELETE FROM ${E} USING ${wanted} WHERE ${inNamespace(p)} AND entry_key = wanted_keys.wanted RETURNING entry_key, ${live(p)} AS live`)
    },
    /** Up to `limit` live rows of a key range in key order, after (or, descending, before) `cursor`. */
    range: (now: number, range: { readonly from?: string | undefined; readonly to?: string | undefined; readonly cursor?: string | undefined; readonly order: "asc" | "desc"; readonly limit: number }): SqlText => {
      const p = start(now)
      let where = inNamespace(p)
      if (range.from !== undefined) where += ` AND entry_key >= ${p.v(range.from)}`
      if (range.to !== undefined) where += ` AND entry_key < ${p.v(range.to)}`
      if (range.cursor !== undefined) where += ` AND entry_key ${range.order === "asc" ? ">" : "<"} ${p.v(range.cursor)}`
      const order = range.order === "asc" ? "ASC" : "DESC"
      return done(p, `SELECT entry_key, value_json, created_at, expires_at FROM ${E} WHERE ${where} AND ${live(p)} ORDER BY entry_key ${order} LIMIT ${p.v(range.limit)}`)
    },
    /** Replaces the row of `row.key` only while it is exactly as observed. Returns a row when it did. */
    replaceObserved: (now: number, row: RowToWrite, seen: ObservedRow): SqlText => {
      const p = start(now)
      const value = p.v(row.json)
      const [created, expires] = timeParts(p, row.times)
      return done(p, `UPDATE ${E} SET value_json = ${value}, created_at = ${created}, expires_at = ${expires} WHERE ${asObserved(p, row.key, seen)} RETURNING entry_key`)
    },
    /**
     * PostgreSQL, one statement: claims `rows` (distinct keys) under the namespace's lock
     * through the claim function ({@link CLAIM_FUNCTION}), which sees what the lock's previous
     * holder committed, and writes only while the row counters — the namespace's and, with
     * `ownerMaxEntries`, the owner's total — leave room for every key. Answers one row:
     * `candidates` (keys without a live row when it started), `room` (false: nothing was
     * written, a transaction must decide), `won` (the keys written).
     */
    claimInFunction: (now: number, rows: ReadonlyArray<RowToWrite>, lock: StatementLock, maxEntries: number, ownerMaxEntries: number | undefined): SqlText => {
      const p = start(now)
      const at = (row: RowToWrite) => (row.times._tag === "At" ? row.times : undefined)
      const args = [
        lock.key,
        lock.timeout,
        owner,
        namespace,
        maxEntries,
        ownerMaxEntries ?? null,
        dialect.databaseClock ? null : now,
        rows.map((row) => row.key),
        rows.map((row) => row.json),
        rows.map((row) => at(row)?.createdAt ?? null),
        rows.map((row) => at(row)?.expiresAt ?? null),
        rows.map((row) => (row.times._tag === "FromNow" ? row.times.ttlMillis : null))
      ]
      return done(p, `SELECT candidates, room, won FROM ${CLAIM_FUNCTION}(${args.map((arg) => p.v(arg)).join(", ")})`)
    },
    /** Deletes the row of `key` only while it is exactly as observed. Returns a row when it did. */
    deleteObserved: (now: number, key: string, seen: ObservedRow): SqlText => {
      const p = start(now)
      return done(p, `DELETE FROM ${E} WHERE ${asObserved(p, key, seen)} RETURNING entry_key`)
    },
    /**
     * Deletes the row of `key` (live or not), returning it and whether it was live: consume and
     * delete. With `lock` (PostgreSQL), under the namespace's lock.
     */
    take: (now: number, key: string, lock?: StatementLock): SqlText => {
      const p = start(now)
      const [prefix, gate] = lockedPrefix(p, lock)
      const where = `${inNamespace(p)} AND entry_key = ${p.v(key)}`
      return done(p, `${prefix}DELETE FROM ${E} WHERE ${where}${gate} RETURNING entry_key, value_json, created_at, expires_at, ${live(p)} AS live`)
    },
    /** Deletes a row found corrupt, only while it still holds that text. */
    deleteCorrupt: (key: string, json: string): SqlText => {
      const p = start(0)
      return done(p, `DELETE FROM ${E} WHERE ${inNamespace(p)} AND entry_key = ${p.v(key)} AND value_json = ${p.v(json)}`)
    },
    /** Deletes these keys. */
    deleteKeys: (keys: ReadonlyArray<string>): SqlText => {
      const p = start(0)
      const where = inNamespace(p)
      return done(p, `DELETE FROM ${E} WHERE ${where} AND entry_key IN (${keys.map((k) => p.v(k)).join(", ")})`)
    },
    /** Which of these keys have a live row. */
    liveKeys: (now: number, keys: ReadonlyArray<string>): SqlText => {
      const p = start(now)
      const where = inNamespace(p)
      return done(p, `SELECT entry_key FROM ${E} WHERE ${where} AND entry_key IN (${keys.map((k) => p.v(k)).join(", ")}) AND ${live(p)}`)
    },
    /** Live rows, oldest first. */
    entries: (now: number): SqlText => {
      const p = start(now)
      return done(p, `SELECT entry_key, value_json, created_at, expires_at FROM ${E} WHERE ${inNamespace(p)} AND ${live(p)} ORDER BY created_at, entry_key`)
    },
    /** How many rows are live. */
    size: (now: number): SqlText => {
      const p = start(now)
      return done(p, `SELECT count(*) AS n FROM ${E} WHERE ${inNamespace(p)} AND ${live(p)}`)
    },
    /** Every row of the namespace. */
    deleteAll: (): SqlText => {
      const p = start(0)
      return done(p, `DELETE FROM ${E} WHERE ${inNamespace(p)}`)
    },
    /** Up to `limit` expired rows of the namespace; returns one row per deleted row. */
    deleteExpired: (now: number, limit?: number): SqlText => {
      const p = start(now)
      if (limit === undefined) return done(p, `DELETE FROM ${E} WHERE ${inNamespace(p)} AND expires_at <= ${p.now()}`)
      const where = inNamespace(p)
      const inner = `SELECT entry_key FROM ${E} WHERE ${inNamespace(p)} AND expires_at <= ${p.now()} LIMIT ${p.v(limit)}`
      return done(p, `DELETE FROM ${E} WHERE ${where} AND entry_key IN (${inner}) RETURNING entry_key`)
    },
    /** Every expired row of the owner, in all its namespaces. */
    deleteOwnerExpired: (now: number): SqlText => {
      const p = start(now)
      return done(p, `DELETE FROM ${E} WHERE owner = ${p.v(owner)} AND expires_at <= ${p.now()}`)
    },
    /** The `count` oldest rows (by creation, then key). */
    evictOldest: (count: number): SqlText => {
      const p = start(0)
      const where = inNamespace(p)
      const inner = `SELECT entry_key FROM ${E} WHERE ${inNamespace(p)} ORDER BY created_at, entry_key LIMIT ${p.v(count)}`
      return done(p, `DELETE FROM ${E} WHERE ${where} AND entry_key IN (${inner})`)
    },
    /** What time the statement's clock says it is (the database's own, with `databaseClock`), as epoch ms. */
    now: (now: number): SqlText => {
      const p = start(now)
      return done(p, `SELECT ${p.now()} AS now`)
    },
    /** Rows stored in the namespace (expired ones too) and, with `withOwner`, in all the owner's namespaces. */
    counts: (withOwner: boolean): SqlText => {
      const p = start(0)
      // Always one row: a namespace that never held a row has no counter yet, and its owner's total still counts.
      const namespaceCount = `(SELECT row_count FROM channel_state_counts WHERE ${inNamespace(p)}) AS row_count`
      const ownerTotal = withOwner ? `, (SELECT sum(row_count) FROM channel_state_counts WHERE owner = ${p.v(owner)}) AS owner_rows` : ""
      return done(p, `SELECT ${namespaceCount}${ownerTotal}`)
    }
  }
}

/** The statements of one namespace. */
export type Statements = ReturnType<typeof makeStatements>
