/**
 * The keyed store on PostgreSQL (`@effect/sql-pg`, imported only when a store is built: see
 * pgDriver.ts), for several gateway instances sharing one state. Same code and semantics as
 * SQLite; claims and consumes are atomic across instances (single-statement
 * `INSERT … ON CONFLICT` / `DELETE … RETURNING`).
 *
 * @module
 */
import type { ConnectionOptions } from "node:tls"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { KeyedStore } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { fromSqlError } from "./sqlFailure.js"
import * as ReopeningStore from "./ReopeningStore.js"
import { makePgClient } from "./pgDriver.js"
import * as SqlStore from "./SqlStore.js"

/**
 * Connection settings, beside or instead of the URL (they are handed to `@effect/sql-pg`'s
 * pool; this package's own type, so a SQLite-only consumer never compiles `pg`'s types).
 */
export interface PgConnectionOptions {
  readonly host?: string | undefined
  readonly port?: number | undefined
  /** A Unix socket directory instead of `host`. */
  readonly path?: string | undefined
  readonly database?: string | undefined
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted | undefined
  /** `true`, or Node's TLS options (`tls.ConnectionOptions`: `ca`, `rejectUnauthorized`, …). */
  readonly ssl?: boolean | ConnectionOptions | undefined
  /**
   * Pool size (pg's default: 10). From 3 on, the store keeps one of them for its statements
   * outside transactions (they run one after another there without taking a connection from
   * the pool each time; concurrent ones take pooled connections as usual).
   */
  readonly maxConnections?: number | undefined
  readonly minConnections?: number | undefined
  /** How long a connection attempt may take (default 5 s; past it: `Unavailable`). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** How long an idle pooled connection stays open (pg's default: 10 s). */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** How long a pooled connection lives before it is replaced. */
  readonly connectionTTL?: Duration.DurationInput | undefined
  /** `application_name`, as `pg_stat_activity` shows it. */
  readonly applicationName?: string | undefined
}

/** How to reach PostgreSQL: a URL (`postgres://user@host:5432/db`) and/or connection settings. */
export interface PgStoreOptions extends SqlStore.SqlStoreOptions {
  readonly url?: string | Redacted.Redacted | undefined
  readonly client?: PgConnectionOptions | undefined
  /**
   * When the server cannot be reached at start: `false` (default) fails building the store;
   * `true` logs it and retries on use (at most once a second), operations failing with
   * `Unavailable` meanwhile — the plugin starts, and persistence begins when the server is up.
   */
  readonly retryOpen?: boolean | undefined
}

/** pg's pool size when none is given. */
const PG_DEFAULT_POOL_SIZE = 10
/** How long pg's pool keeps an idle connection when no `idleTimeout` is given (0: for ever). */
const PG_DEFAULT_IDLE_MILLIS = 10_000

/**
 * Connects (failing with `Unavailable` when the server cannot be reached within the connect
 * timeout, default 5 s — unless `retryOpen`), runs the migrations and forks the sweeper,
 * closed with the scope. A connection dropped later is replaced by the pool on next use.
 */
export const make = (options: PgStoreOptions) => {
  const url = options.url === undefined ? undefined : Redacted.isRedacted(options.url) ? options.url : Redacted.make(options.url)
  const open = (scope: Scope.Scope) =>
    Effect.gen(function* () {
      const client = yield* makePgClient({
        connectTimeout: Duration.seconds(5),
        ...options.client,
        ...(url === undefined ? {} : { url })
      }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(fromSqlError("open", "write")(error))))
      // One pooled connection is kept for statements outside transactions, when the pool has
      // two more beside it (a transaction waiting for a lock must not leave the others none).
      const poolSize = options.client?.maxConnections ?? PG_DEFAULT_POOL_SIZE
      const maxAge = options.client?.connectionTTL
      const idle = options.client?.idleTimeout
      const maxIdle = idle === undefined ? PG_DEFAULT_IDLE_MILLIS : Duration.toMillis(idle)
      const holdConnection =
        poolSize >= 3 ? { maxAgeMillis: maxAge === undefined ? undefined : Duration.toMillis(maxAge), maxIdleMillis: maxIdle > 0 ? maxIdle : undefined } : undefined
      const store = yield* SqlStore.make(options, { holdConnection }).pipe(Effect.provideService(SqlClient, client))
      return { store, stale: () => undefined }
    }).pipe(Scope.extend(scope))
  return ReopeningStore.make({ backend: "pg", location: describeUrl(url), open, retryOpen: options.retryOpen })
}

/** The server and database of a URL, without credentials, for log lines. */
const describeUrl = (url: Redacted.Redacted | undefined): string => {
  if (url === undefined) return "PostgreSQL (client settings)"
  try {
    const parsed = new URL(Redacted.value(url))
    return `postgres://${parsed.host}${parsed.pathname}`
  } catch {
    return "PostgreSQL (unparsable URL)"
  }
}

/** The PostgreSQL-backed {@link KeyedStore}. */
export const layer = (options: PgStoreOptions): Layer.Layer<KeyedStore, StateStoreError> => Layer.scoped(KeyedStore, make(options))
