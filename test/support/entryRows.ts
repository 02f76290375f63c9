/**
 * Plain SQL on `channel_state_entries` over the test database's own connection
 * (`TestDatabase.sql` from backends.ts), for tests that judge what the stores of other
 * processes wrote: one row as stored, row counts, and the database's clock.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { Context, Effect, Layer, type Scope } from "effect"
import type { TestDatabase } from "./backends.js"

/** A row as stored (timestamps in epoch ms). */
export interface EntryRow {
  readonly valueJson: string
  readonly createdAt: number
  readonly expiresAt: number | null
}

interface RawRow {
  readonly value_json: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
}

/** Opens the connection (closed with the scope) and returns the queries. */
export const entryRows = (db: TestDatabase): Effect.Effect<EntryRows, never, Scope.Scope> =>
  Effect.map(Layer.build(db.sql!), (context) => {
    const sql = Context.get(context, SqlClient)
    const orDie = <A>(effect: Effect.Effect<A, unknown>) => Effect.orDie(effect)
    return {
      sql,
      row: (owner, namespace, key) =>
        orDie(
          Effect.map(
            sql<RawRow>`SELECT value_json, created_at, expires_at FROM channel_state_entries WHERE owner = ${owner} AND namespace = ${namespace} AND entry_key = ${key}`,
            (rows) =>
              rows[0] === undefined
                ? undefined
                : { valueJson: rows[0].value_json, createdAt: Number(rows[0].created_at), expiresAt: rows[0].expires_at === null ? null : Number(rows[0].expires_at) }
          )
        ),
      count: (owner, namespace) =>
        orDie(Effect.map(sql<{ n: number | string }>`SELECT count(*) AS n FROM channel_state_entries WHERE owner = ${owner} AND namespace = ${namespace}`, (rows) => Number(rows[0]?.n ?? 0))),
      counter: (owner, namespace) =>
        orDie(
          Effect.map(sql<{ n: number | string }>`SELECT row_count AS n FROM channel_state_counts WHERE owner = ${owner} AND namespace = ${namespace}`, (rows) =>
            rows[0] === undefined ? undefined : Number(rows[0].n)
          )
        ),
      databaseNow:
        db.backend === "pg"
          ? orDie(Effect.map(sql<{ now: number | string }>`SELECT floor(extract(epoch from clock_timestamp()) * 1000)::bigint AS now`, (rows) => Number(rows[0]!.now)))
          : Effect.sync(() => Date.now())
    }
  })

export interface EntryRows {
  readonly sql: SqlClient
  /** The row of `key`, expired or not; `undefined` when there is none. */
  readonly row: (owner: string, namespace: string, key: string) => Effect.Effect<EntryRow | undefined>
  /** Rows stored in the namespace (expired ones too). */
  readonly count: (owner: string, namespace: string) => Effect.Effect<number>
  /** The namespace's trigger-kept row count (`channel_state_counts`), if it has one. */
  readonly counter: (owner: string, namespace: string) => Effect.Effect<number | undefined>
  /** "Now" as the store decides expiry by default: PostgreSQL's clock, or this host's for SQLite. */
  readonly databaseNow: Effect.Effect<number>
}
