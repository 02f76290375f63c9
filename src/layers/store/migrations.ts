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
import { isInsufficientPrivilege } from "./sqlFailure.js"
import { CLAIM_FUNCTION } from "./sqlStatements.js"
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

/** The claim function as `to_regprocedure` names it (its argument types). */
export const CLAIM_FUNCTION_SIGNATURE = `${CLAIM_FUNCTION}(text, text, text, text, bigint, bigint, bigint, text[], text[], bigint[], bigint[], bigint[])`

/**
 * The claims of one namespace, under its lock, in one call. Each key is claimed when it has no
 * live row: inserted, or written over an expired row (`ON CONFLICT … DO UPDATE … WHERE
 * expired`), stamped `created` or now, expiring at `expires`, or now + `ttls` (capped at the
 * largest date). Judged first without the lock (keys live when the statement starts have lost:
 * with no other key, nothing is locked or written, `candidates` is 0); then the lock (waited
 * for at most `lock_wait`, local to the statement's transaction), and everything after it
 * runs in statements that each take a new snapshot (a VOLATILE function under READ COMMITTED):
 * they see every row and counter the lock's previous holder committed — what one statement
 * cannot (its snapshot predates the lock), and why an owner's total needed a transaction. It
 * writes only while the row counters (upper bounds of the live rows) leave room for every
 * candidate: the namespace's under `max_entries` and, unless `owner_max_entries` is null, the
 * sum of the owner's under it. Otherwise `room` is false, nothing is written, and the caller
 * decides in a transaction (which evicts or refuses exactly). `won`: the keys written. The
 * time: `caller_now`, or the database's clock — at the statement's start for the first look,
 * once the lock is held for the claim.
 */
const CREATE_CLAIM_FUNCTION = `CREATE FUNCTION ${CLAIM_FUNCTION}(
  lock_key text, lock_wait text, claim_owner text, claim_namespace text, max_entries bigint, owner_max_entries bigint,
  caller_now bigint, keys text[], jsons text[], created bigint[], expires bigint[], ttls bigint[],
  OUT candidates integer, OUT room boolean, OUT won text[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  at_start bigint := coalesce(caller_now, floor(extract(epoch from statement_timestamp()) * 1000)::bigint);
  t bigint;
  fresh integer;
BEGIN
  room := true;
  won := ARRAY[]::text[];
  SELECT count(*) INTO candidates FROM unnest(keys) AS k(entry_key)
    WHERE NOT EXISTS (SELECT 1 FROM channel_state_entries e WHERE e.owner = claim_owner AND e.namespace = claim_namespace
      AND e.entry_key = k.entry_key AND (e.expires_at IS NULL OR e.expires_at > at_start));
  IF candidates = 0 THEN RETURN; END IF;
  PERFORM set_config('lock_timeout', lock_wait, true);
  PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
  t := coalesce(caller_now, floor(extract(epoch from clock_timestamp()) * 1000)::bigint);
  SELECT count(*) INTO fresh FROM unnest(keys) AS k(entry_key)
    WHERE NOT EXISTS (SELECT 1 FROM channel_state_entries e WHERE e.owner = claim_owner AND e.namespace = claim_namespace
      AND e.entry_key = k.entry_key AND (e.expires_at IS NULL OR e.expires_at > t));
  IF fresh = 0 THEN RETURN; END IF;
  IF coalesce((SELECT c.row_count FROM channel_state_counts c WHERE c.owner = claim_owner AND c.namespace = claim_namespace), 0) + fresh > max_entries
    OR (owner_max_entries IS NOT NULL AND coalesce((SELECT sum(c.row_count) FROM channel_state_counts c WHERE c.owner = claim_owner), 0) + fresh > owner_max_entries) THEN
    room := false;
    RETURN;
  END IF;
  WITH claimed AS (
    INSERT INTO channel_state_entries AS e (owner, namespace, entry_key, value_json, created_at, expires_at)
      SELECT claim_owner, claim_namespace, r.entry_key, r.value_json, coalesce(r.created_at, t),
        CASE WHEN r.ttl IS NOT NULL THEN LEAST(t + r.ttl, 8640000000000000) ELSE r.expires_at END
      FROM unnest(keys, jsons, created, expires, ttls) AS r(entry_key, value_json, created_at, expires_at, ttl)
      ON CONFLICT (owner, namespace, entry_key) DO UPDATE
        SET value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at
        WHERE e.expires_at IS NOT NULL AND e.expires_at <= t
      RETURNING e.entry_key)
  SELECT coalesce(array_agg(claimed.entry_key), ARRAY[]::text[]) INTO won FROM claimed;
END $$`

/**
 * PostgreSQL: creates the claim function when the database lacks it (inside the migrating
 * transaction, under its lock; in a savepoint). Not a numbered migration: older channel-states
 * open a database that has it, and ignore it. Answers whether the function is there: a role
 * without the privilege to create it (42501) is not an error — its claims under an owner cap
 * stay the transaction they were.
 */
const ensureClaimFunction = Effect.gen(function* () {
  const sql = yield* SqlClient
  const found = yield* sql<{ found: string | null }>`SELECT to_regprocedure(${CLAIM_FUNCTION_SIGNATURE})::text AS found`
  if (found[0]?.found != null) return true
  return yield* sql.withTransaction(sql.unsafe(CREATE_CLAIM_FUNCTION)).pipe(
    Effect.as(true),
    Effect.catchIf(isInsufficientPrivilege, () => Effect.succeed(false))
  )
})

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

/** Applies the migrations the database lacks (inside the migrating transaction). */
const applyMigrations = Effect.gen(function* () {
  const sql = yield* SqlClient
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

/** The advisory lock PostgreSQL processes take around migrating (owners and namespaces never contain ":"). */
const MIGRATION_LOCK = "channel-state:migrations"

/**
 * Refuses a database stamped with a newer schema than {@link SCHEMA_VERSION} (leaving it
 * untouched), then applies the missing migrations. Safe to run from any number of processes
 * at once on one fresh database: it runs in one write transaction holding the database's
 * write lock (SQLite) or an advisory lock (PostgreSQL), so one process migrates and the
 * others find it done. The caller retries `Busy`. Answers whether PostgreSQL's claim function
 * is there (see {@link ensureClaimFunction}; always false on SQLite).
 */
export const migrate = (lockWaitMillis: number) =>
  Effect.gen(function* () {
  const sql = yield* SqlClient
  return yield* makeWriteTransactions(sql, lockWaitMillis).transaction(
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
      if (stored < SCHEMA_VERSION) yield* applyMigrations
      return yield* sql.onDialectOrElse({ pg: () => ensureClaimFunction, orElse: () => Effect.succeed(false) })
    })
  )
})
