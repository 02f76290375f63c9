/**
 * The keyed store's schema, as `@effect/sql` migrations, and the guard that refuses a
 * database written by a newer channel-state.
 *
 * @internal
 */
import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { StateStoreError } from "../../StateStoreError.js"

/** The table that records applied migrations. */
export const MIGRATIONS_TABLE = "channel_state_migrations"
/** The table that holds every owner's rows. */
export const ENTRIES_TABLE = "channel_state_entries"

const createEntries = Effect.gen(function* () {
  const sql = yield* SqlClient
  yield* sql.onDialectOrElse({
    pg: () => sql`CREATE TABLE channel_state_entries (
      owner TEXT COLLATE "C" NOT NULL,
      namespace TEXT COLLATE "C" NOT NULL,
      entry_key TEXT COLLATE "C" NOT NULL,
      value_json TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      expires_at BIGINT,
      PRIMARY KEY (owner, namespace, entry_key)
    )`,
    orElse: () => sql`CREATE TABLE channel_state_entries (
      owner TEXT NOT NULL,
      namespace TEXT NOT NULL,
      entry_key TEXT NOT NULL,
      value_json TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER,
      PRIMARY KEY (owner, namespace, entry_key)
    ) WITHOUT ROWID`
  })
  yield* sql`CREATE INDEX channel_state_entries_expires ON channel_state_entries (expires_at)`
  yield* sql`CREATE INDEX channel_state_entries_listing ON channel_state_entries (owner, namespace, created_at)`
})

const migrations = { "1_create_entries": createEntries }

/** The newest schema version this code knows. */
export const SCHEMA_VERSION = Object.keys(migrations).length

/** The schema version stamped in the database (0 when it has none yet). */
export const storedSchemaVersion = Effect.gen(function* () {
  const sql = yield* SqlClient
  const exists = yield* sql.onDialectOrElse({
    pg: () => sql<{ found: string | null }>`SELECT to_regclass(${MIGRATIONS_TABLE})::text AS found`,
    orElse: () => sql<{ found: string | null }>`SELECT name AS found FROM sqlite_master WHERE type = 'table' AND name = ${MIGRATIONS_TABLE}`
  })
  if (exists[0]?.found == null) return 0
  const rows = yield* sql<{ version: number | string | null }>`SELECT max(migration_id) AS version FROM ${sql(MIGRATIONS_TABLE)}`
  return Number(rows[0]?.version ?? 0)
})

/**
 * Refuses a database stamped with a newer schema than {@link SCHEMA_VERSION} (leaving it
 * untouched), then applies the missing migrations. Safe to run from several processes at once.
 */
export const migrate = Effect.gen(function* () {
  const stored = yield* storedSchemaVersion
  if (stored > SCHEMA_VERSION) {
    return yield* new StateStoreError({
      reason: "SchemaUnsupported",
      operation: "open",
      detail: `the database has schema version ${stored}, this channel-state knows up to ${SCHEMA_VERSION}; upgrade channel-state or point it at another database (the database was left untouched)`
    })
  }
  yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: MIGRATIONS_TABLE })
})
