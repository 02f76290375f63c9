/**
 * What a database holds, read around the library: plain SQL over a separate connection (a
 * better-sqlite3 handle on the SQLite file, or its own PostgreSQL pool), and the counters the
 * caches export, read with Effect's `Metric.snapshot`. Used by the write-behind mirror tests
 * (test/mirror.*.test.ts) to judge what reached the store and what was counted.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import Database from "better-sqlite3"
import { Context, Effect, Layer, Metric, MetricState, type Scope } from "effect"
import { pgClientLayer } from "./backends.js"

/** One stored row, as plain SQL sees it. */
export interface StoredRow {
  readonly namespace: string
  readonly key: string
  readonly valueJson: string
  readonly createdAt: number
  readonly expiresAt: number | null
}

interface RawRow {
  readonly namespace: string
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
}

const toRow = (raw: RawRow): StoredRow => ({
  namespace: raw.namespace,
  key: raw.entry_key,
  valueJson: raw.value_json,
  createdAt: Number(raw.created_at),
  expiresAt: raw.expires_at === null ? null : Number(raw.expires_at)
})

/** Reads the rows of one owner; `[]` while the file or table does not exist yet. */
export interface RowReader {
  readonly rows: (owner: string) => Effect.Effect<ReadonlyArray<StoredRow>>
  /** The keys of one namespace of `owner`. */
  readonly keys: (owner: string, namespace: string) => Effect.Effect<ReadonlySet<string>>
}

const SELECT = "SELECT namespace, entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE owner = ?"

const withKeys = (rows: RowReader["rows"]): RowReader => ({
  rows,
  keys: (owner, namespace) => Effect.map(rows(owner), (all) => new Set(all.filter((row) => row.namespace === namespace).map((row) => row.key)))
})

/** Plain better-sqlite3 reads of the SQLite file (a fresh connection per read; never creates the file). */
export const sqliteRowReader = (file: string): RowReader =>
  withKeys((owner) => Effect.sync(() => sqliteRowsNow(file, owner)))

/** The rows of `owner` in the SQLite file, read synchronously now (e.g. in the middle of a flush). */
export const sqliteRowsNow = (file: string, owner: string): ReadonlyArray<StoredRow> => {
  let db: Database.Database
  try {
    db = new Database(file, { fileMustExist: true, timeout: 2000 })
  } catch {
    return []
  }
  try {
    return (db.prepare(SELECT).all(owner) as Array<RawRow>).map(toRow)
  } catch {
    return []
  } finally {
    db.close()
  }
}

/** Plain SQL reads of a PostgreSQL database over its own pool, closed with the scope. */
export const pgRowReader = (url: string): Effect.Effect<RowReader, never, Scope.Scope> =>
  Effect.map(Layer.build(pgClientLayer(url)), (context) => {
    const sql = Context.get(context, SqlClient)
    return withKeys((owner) =>
      sql<RawRow>`SELECT namespace, entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE owner = ${owner}`.pipe(
        Effect.map((rows) => rows.map(toRow)),
        Effect.catchAll(() => Effect.succeed([] as ReadonlyArray<StoredRow>))
      )
    )
  })

/** The reader for a test database's backend and location (SQLite file or PostgreSQL URL). */
export const rowReader = (backend: "sqlite" | "pg", location: string): Effect.Effect<RowReader, never, Scope.Scope> =>
  backend === "pg" ? pgRowReader(location) : Effect.succeed(sqliteRowReader(location))

/** The metrics named `name` whose tags include all of `tags` (Effect's global registry: the runtime under test and the test share it). */
const metricsTagged = (name: string, tags: Readonly<Record<string, string>>) =>
  Effect.map(Metric.snapshot, (pairs) =>
    pairs.filter(
      (pair) => pair.metricKey.name === name && Object.entries(tags).every(([key, value]) => pair.metricKey.tags.some((tag) => tag.key === key && tag.value === value))
    )
  )

/** The sum of every counter named `name` whose tags include all of `tags`; 0 when none exists yet. */
export const counterValue = (name: string, tags: Readonly<Record<string, string>>): Effect.Effect<number> =>
  Effect.map(metricsTagged(name, tags), (pairs) =>
    pairs.reduce((sum, pair) => sum + (MetricState.isCounterState(pair.metricState) ? Number(pair.metricState.count) : 0), 0)
  )

/** How many observations the histograms named `name` with all of `tags` recorded (e.g. flushed batches). */
export const histogramCount = (name: string, tags: Readonly<Record<string, string>>): Effect.Effect<number> =>
  Effect.map(metricsTagged(name, tags), (pairs) => pairs.reduce((sum, pair) => sum + (MetricState.isHistogramState(pair.metricState) ? pair.metricState.count : 0), 0))

/** Every counter named `name` with `tags`, as `{ tags → count }` — for reports. */
export const countersByTags = (name: string, tags: Readonly<Record<string, string>>): Effect.Effect<Record<string, number>> =>
  Effect.map(metricsTagged(name, tags), (pairs) => {
    const out: Record<string, number> = {}
    for (const pair of pairs) {
      if (!MetricState.isCounterState(pair.metricState)) continue
      const label = pair.metricKey.tags
        .filter((tag) => !(tag.key in tags))
        .map((tag) => `${tag.key}=${tag.value}`)
        .sort()
        .join(",")
      out[label] = (out[label] ?? 0) + Number(pair.metricState.count)
    }
    return out
  })
