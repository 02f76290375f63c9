/**
 * The one door to `@effect/sql-pg`: the driver is imported when a PostgreSQL client is
 * built, not when this package is, so a process that only uses SQLite or memory never loads
 * `@effect/sql-pg` and `pg`. `PgStore` and the CLI reach PostgreSQL through here; biome.json
 * refuses an `@effect/sql-pg` import anywhere else in src.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { PgClientConfig } from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { StateStoreError } from "../../StateStoreError.js"

/** The start of the detail of a driver that could not be loaded. */
export const DRIVER_LOAD_FAILED = "cannot load the PostgreSQL driver (@effect/sql-pg)"

/**
 * `@effect/sql-pg/PgClient`, imported on first use (Node keeps the module: later uses take
 * it from there). A failed import — the package missing or broken — is an `OpenFailed`
 * {@link StateStoreError}, not a defect.
 */
const loadPgClient = Effect.tryPromise({
  try: () => import("@effect/sql-pg/PgClient"),
  catch: (cause) =>
    new StateStoreError({ reason: "OpenFailed", operation: "open", detail: `${DRIVER_LOAD_FAILED}: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
})

/**
 * A PostgreSQL `SqlClient` (`@effect/sql-pg`'s `PgClient.make`, with its own `Reactivity`),
 * closed with the scope: fails with the driver's `SqlError` when the server cannot be
 * reached, or with a `StateStoreError` when the driver cannot be loaded.
 */
export const makePgClient = (config: PgClientConfig): Effect.Effect<SqlClient, SqlError | StateStoreError, Scope.Scope> =>
  Effect.flatMap(loadPgClient, (PgClient) => PgClient.make(config)).pipe(Effect.provide(Reactivity.layer))
