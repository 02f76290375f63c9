/**
 * PostgreSQL sessions of a test's own beside a store: a connection that holds a lock or a
 * transaction the way another process would, a watcher of `pg_locks`, and a role that may not
 * create functions (the store's claim function then stays missing).
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { Context, Effect, Fiber, Layer, Schedule } from "effect"
import { CLAIM_FUNCTION_SIGNATURE } from "../../src/layers/store/migrations.js"
import { CLAIM_FUNCTION } from "../../src/layers/store/sqlStatements.js"
import { bounded } from "./attackTools.js"
import { pgClientLayer } from "./backends.js"

/** A connection of its own to `url` (a pooled one, reserved), let go with the scope. */
export const rawClient = (url: string) => Effect.flatMap(Layer.build(pgClientLayer(url)), (context) => Effect.orDie(Context.get(context, SqlClient).reserve))

/** Runs `text` on `client` as it is (its transaction state, BEGIN and COMMIT included, is the caller's). */
export const query = (client: Connection, text: string, values: ReadonlyArray<unknown> = []) =>
  // biome-ignore lint/suspicious/noExplicitAny: rows of ad-hoc queries
  Effect.map(Effect.orDie(client.execute(text, values, undefined)), (rows) => ({ rows: rows as ReadonlyArray<any> }))

/** Writes a row straight into the entries table, as another process's write would (the table's triggers keep the counts). */
export const insertEntry = (
  client: Connection,
  entry: { readonly owner: string; readonly namespace: string; readonly key: string; readonly json: string; readonly createdAt: number; readonly expiresAt: number | null }
) =>
  query(client, "INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)", [
    entry.owner,
    entry.namespace,
    entry.key,
    entry.json,
    entry.createdAt,
    entry.expiresAt
  ])

/** Waits until at least `n` sessions wait for an advisory lock in this database (polled every 10 ms). */
export const untilAdvisoryWaiters = (watcher: Connection, n = 1) =>
  Effect.asVoid(
    Effect.repeat(
      query(
        watcher,
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
      ),
      { until: (result) => result.rows[0].n >= n, schedule: Schedule.spaced("10 millis") }
    )
  )

/**
 * Runs `effect` while `holder` holds the advisory lock `lockKey` in a transaction that does
 * `meanwhile`, as another process's write transaction would; commits only once some session
 * (the effect's statement) is seen waiting for an advisory lock, then answers the effect. Each
 * wait bounded: a hang fails the test.
 */
export const whileLockHeld = <A, E>(holder: Connection, watcher: Connection, lockKey: string, meanwhile: Effect.Effect<unknown>, effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    yield* query(holder, "BEGIN")
    yield* query(holder, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [lockKey])
    yield* meanwhile
    const running = yield* Effect.fork(effect)
    yield* bounded("a lock wait behind the holder", untilAdvisoryWaiters(watcher))
    yield* query(holder, "COMMIT")
    return yield* bounded("the effect run while the lock was held", Fiber.join(running))
  })

/**
 * A login role that may read and write the store's tables but not create anything (no CREATE
 * on the schema), dropped with the scope; answers `url` as that role.
 */
export const roleWithoutCreate = (admin: Connection, url: string) =>
  Effect.gen(function* () {
    const role = `cs_nocreate_${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`
    yield* Effect.acquireRelease(
      Effect.zipRight(
        query(admin, `CREATE ROLE ${role} LOGIN`),
        query(admin, `REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO ${role}; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`)
      ),
      () => Effect.zipRight(query(admin, `DROP OWNED BY ${role}`), query(admin, `DROP ROLE ${role}`))
    )
    const asRole = new URL(url)
    asRole.username = role
    return asRole.toString()
  })

/** Drops the claim function; answers the statement that creates it again, as it was. */
export const dropClaimFunction = (admin: Connection) =>
  Effect.gen(function* () {
    const definition = (yield* query(admin, "SELECT pg_get_functiondef($1::regprocedure) AS def", [CLAIM_FUNCTION_SIGNATURE])).rows[0].def as string
    yield* query(admin, `DROP FUNCTION ${CLAIM_FUNCTION}`)
    return definition
  })

/** Whether the database has the claim function. */
export const hasClaimFunction = (admin: Connection) =>
  Effect.map(query(admin, "SELECT to_regprocedure($1) IS NOT NULL AS found", [CLAIM_FUNCTION_SIGNATURE]), (result) => result.rows[0].found === true)
