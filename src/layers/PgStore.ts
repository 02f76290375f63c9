/**
 * The keyed store on PostgreSQL (`@effect/sql-pg`), for several gateway instances sharing
 * one state. Same code and semantics as SQLite; claims and consumes are atomic across
 * instances (single-statement `INSERT … ON CONFLICT` / `DELETE … RETURNING`).
 *
 * @module
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Duration, Effect, Layer, Redacted } from "effect"
import { KeyedStore } from "../KeyedStore.js"
import type { StateStoreError } from "../StateStoreError.js"
import { fromSqlError } from "./sqlFailure.js"
import * as SqlStore from "./SqlStore.js"
import type { StoreSettings } from "./storeRules.js"

/** How to reach PostgreSQL: a URL (`postgres://user@host:5432/db`) or `@effect/sql-pg` client settings. */
export interface PgStoreOptions extends Partial<StoreSettings> {
  readonly url?: string | Redacted.Redacted | undefined
  readonly client?: Omit<PgClient.PgClientConfig, "url"> | undefined
}

/**
 * Connects (failing with `Unavailable` when the server cannot be reached within the connect
 * timeout, default 5 s), runs the migrations and forks the sweeper, closed with the scope.
 */
export const make = (options: PgStoreOptions) =>
  Effect.gen(function* () {
    const url = options.url === undefined ? undefined : Redacted.isRedacted(options.url) ? options.url : Redacted.make(options.url)
    const client = yield* PgClient.make({
      connectTimeout: Duration.seconds(5),
      ...options.client,
      ...(url === undefined ? {} : { url })
    }).pipe(Effect.provide(Reactivity.layer), Effect.mapError(fromSqlError("open", "write")))
    return yield* SqlStore.make(options).pipe(Effect.provideService(SqlClient, client))
  })

/** The PostgreSQL-backed {@link KeyedStore}. */
export const layer = (options: PgStoreOptions): Layer.Layer<KeyedStore, StateStoreError> => Layer.scoped(KeyedStore, make(options))
