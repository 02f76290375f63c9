/**
 * The keyed store's schema, as `@effect/sql` migrations, and the guard that refuses a
 * database written by a newer channel-state.
 *
 * @internal
 */
import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { StateStoreError } from "../../StateStoreError.js"
import { makeWriteTransactions } from "./sqlTransaction.js"

/** The table that records applied migrations. */
export const MIGRATIONS_TABLE = "channel_state_migrations"
/** The table that holds every owner's rows. */
export const ENTRIES_TABLE = "channel_state_entries"
/** Rows per owner and namespace (expired ones too), kept by triggers: what makes caps exact and cheap. */
export const COUNTS_TABLE = "channel_state_counts"

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

/**
 * Version 2: a row count per namespace, kept by triggers on every insert and delete (whoever
 * makes them: the store, the sweeper, `channel-state purge`), so a write checks its cap by
 * reading one row instead of counting the namespace; and expiry indexed per namespace, so
 * sweeping and making room never scan other namespaces.
 */
const countRows = Effect.gen(function* () {
  const sql = yield* SqlClient
  yield* sql.onDialectOrElse({
    pg: () => sql`CREATE TABLE channel_state_counts (
      owner TEXT COLLATE "C" NOT NULL,
      namespace TEXT COLLATE "C" NOT NULL,
      row_count BIGINT NOT NULL,
      PRIMARY KEY (owner, namespace)
    )`,
    orElse: () => sql`CREATE TABLE channel_state_counts (
      owner TEXT NOT NULL,
      namespace TEXT NOT NULL,
      row_count INTEGER NOT NULL,
      PRIMARY KEY (owner, namespace)
    ) WITHOUT ROWID`
  })
  yield* sql`INSERT INTO channel_state_counts (owner, namespace, row_count)
    SELECT owner, namespace, count(*) FROM channel_state_entries GROUP BY owner, namespace`
  yield* sql.onDialectOrElse({
    pg: () =>
      Effect.all([
        // Statement-level triggers over transition tables: one counter update per statement, not per row.
        sql`CREATE FUNCTION channel_state_count_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          INSERT INTO channel_state_counts (owner, namespace, row_count)
            SELECT owner, namespace, count(*) FROM inserted_rows GROUP BY owner, namespace
            ON CONFLICT (owner, namespace) DO UPDATE SET row_count = channel_state_counts.row_count + excluded.row_count;
          RETURN NULL;
        END $$`,
        sql`CREATE FUNCTION channel_state_count_deletes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          UPDATE channel_state_counts SET row_count = channel_state_counts.row_count - d.deleted
            FROM (SELECT owner, namespace, count(*) AS deleted FROM deleted_rows GROUP BY owner, namespace) d
            WHERE channel_state_counts.owner = d.owner AND channel_state_counts.namespace = d.namespace;
          RETURN NULL;
        END $$`,
        sql`CREATE TRIGGER channel_state_entries_inserted AFTER INSERT ON channel_state_entries
          REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT EXECUTE FUNCTION channel_state_count_inserts()`,
        sql`CREATE TRIGGER channel_state_entries_deleted AFTER DELETE ON channel_state_entries
          REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION channel_state_count_deletes()`
      ], { discard: true }),
    orElse: () =>
      Effect.all([
        sql`CREATE TRIGGER channel_state_entries_inserted AFTER INSERT ON channel_state_entries BEGIN
          INSERT INTO channel_state_counts (owner, namespace, row_count) VALUES (NEW.owner, NEW.namespace, 1)
            ON CONFLICT (owner, namespace) DO UPDATE SET row_count = row_count + 1;
        END`,
        sql`CREATE TRIGGER channel_state_entries_deleted AFTER DELETE ON channel_state_entries BEGIN
          UPDATE channel_state_counts SET row_count = row_count - 1 WHERE owner = OLD.owner AND namespace = OLD.namespace;
        END`
      ], { discard: true })
  })
  yield* sql`DROP INDEX channel_state_entries_expires`
  yield* sql`CREATE INDEX channel_state_entries_expiry ON channel_state_entries (owner, namespace, expires_at)`
})

const migrations = { "1_create_entries": createEntries, "2_count_rows": countRows }

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

/** The advisory lock PostgreSQL processes take around migrating (owners and namespaces never contain ":"). */
const MIGRATION_LOCK = "channel-state:migrations"

/**
 * Refuses a database stamped with a newer schema than {@link SCHEMA_VERSION} (leaving it
 * untouched), then applies the missing migrations. Safe to run from any number of processes
 * at once on one fresh database: it runs in one write transaction holding the database's
 * write lock (SQLite) or an advisory lock (PostgreSQL), so one process migrates and the
 * others find it done. The caller retries `Busy`.
 */
export const migrate = (lockWaitMillis: number) =>
  Effect.gen(function* () {
  const sql = yield* SqlClient
  yield* makeWriteTransactions(sql, lockWaitMillis).transaction(
    MIGRATION_LOCK,
    Effect.gen(function* () {
      const stored = yield* storedSchemaVersion
      if (stored > SCHEMA_VERSION) {
        return yield* new StateStoreError({
          reason: "SchemaUnsupported",
          operation: "open",
          detail: `the database has schema version ${stored}, this channel-state knows up to ${SCHEMA_VERSION}; upgrade channel-state or point it at another database (the database was left untouched)`
        })
      }
      if (stored === SCHEMA_VERSION) return
      // The Migrator probes for its table with a query that, when it fails, aborts a
      // PostgreSQL transaction: create it first (the Migrator's own definition), under the lock.
      yield* sql.onDialectOrElse({
        pg: () => sql`CREATE TABLE IF NOT EXISTS ${sql(MIGRATIONS_TABLE)} (
          migration_id integer primary key,
          created_at timestamp with time zone not null default now(),
          name text not null
        )`,
        orElse: () => Effect.void
      })
      yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: MIGRATIONS_TABLE })
    })
  )
})
