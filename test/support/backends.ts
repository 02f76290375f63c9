/**
 * The backends every conformance suite runs against: memory, a SQLite file in a fresh temp
 * directory, and a fresh PostgreSQL database (when CHANNEL_STATE_TEST_PG_URL is set).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Layer, Redacted, type Scope } from "effect"
import { KeyedStore } from "../../src/KeyedStore.js"
import * as MemoryStore from "../../src/layers/store/MemoryStore.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import type { StoreSettings } from "../../src/layers/store/storeRules.js"
import type { StateStoreError } from "../../src/StateStoreError.js"

/** The one environment variable the PostgreSQL suites read. */
export const PG_URL_VARIABLE = "CHANNEL_STATE_TEST_PG_URL"
export const pgUrl: string | undefined = process.env[PG_URL_VARIABLE] || undefined

/** One empty database of some backend. `store` may be built many times: each build reopens the same data. */
export interface TestDatabase {
  readonly backend: "memory" | "sqlite" | "pg"
  readonly store: (settings?: Partial<StoreSettings>) => Layer.Layer<KeyedStore, StateStoreError>
  /** Raw SQL access to the same database (SQL backends only), for corrupting rows and stamping versions. */
  readonly sql: Layer.Layer<SqlClient> | undefined
  /** The SQLite file or PostgreSQL URL, for child processes. */
  readonly location: string | undefined
}

export interface BackendFactory {
  readonly name: "memory" | "sqlite" | "pg"
  readonly fresh: Effect.Effect<TestDatabase, never, Scope.Scope>
}

/** A temp directory removed with the scope. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

export const memoryBackend: BackendFactory = {
  name: "memory",
  // A memory "database" is one store instance: each build of `store()` gets a fresh, empty one.
  fresh: Effect.succeed({
    backend: "memory" as const,
    store: (settings?: Partial<StoreSettings>) => MemoryStore.layer(settings),
    sql: undefined,
    location: undefined
  })
}

export const sqliteBackend: BackendFactory = {
  name: "sqlite",
  fresh: Effect.map(tempDir, (dir) => {
    const filename = path.join(dir, "state", "channel-state.sqlite")
    return {
      backend: "sqlite" as const,
      store: (settings?: Partial<StoreSettings>) => SqliteStore.layer({ filename, ...settings }),
      sql: Layer.suspend(() => {
        fs.mkdirSync(path.dirname(filename), { recursive: true })
        return SqliteClient.layer({ filename }).pipe(Layer.orDie)
      }),
      location: filename
    }
  })
}

let pgDatabaseCounter = 0

/** The store a layer builds, built in the test's scope (closed with it), to call directly. */
export const storeOf = (layer: Layer.Layer<KeyedStore, unknown>) =>
  Effect.map(Layer.build(layer), (context) => Effect.runSync(Effect.provide(KeyedStore, context)))

/** A fresh PostgreSQL database, dropped with the scope. */
export const freshPgDatabase = (baseUrl: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const name = `cs_test_${process.pid}_${Date.now().toString(36)}_${pgDatabaseCounter++}`
      yield* adminSql(baseUrl, `CREATE DATABASE ${name}`)
      const url = new URL(baseUrl)
      url.pathname = `/${name}`
      return { name, url: url.toString() }
    }),
    ({ name }) => adminSql(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  )

const adminSql = (baseUrl: string, statement: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql.unsafe(statement)
  }).pipe(Effect.provide(pgClientLayer(baseUrl)), Effect.orDie)

export const pgClientLayer = (url: string): Layer.Layer<SqlClient> =>
  PgClient.layer({ url: Redacted.make(url), maxConnections: 4 }).pipe(Layer.provide(Reactivity.layer), Layer.orDie)

export const pgBackend = (baseUrl: string): BackendFactory => ({
  name: "pg",
  fresh: Effect.map(freshPgDatabase(baseUrl), ({ url }) => ({
    backend: "pg" as const,
    // TestClock drives time in these suites: the database clock (the production default) is
    // tested on its own, with real time and skewed processes.
    store: (settings?: Partial<StoreSettings>) => PgStore.layer({ url, clock: "application", ...settings }),
    sql: pgClientLayer(url),
    location: url
  }))
})

/** Every backend this run can reach. Without the PostgreSQL URL, the run says the PostgreSQL suite is skipped. */
export const backends: ReadonlyArray<BackendFactory> = pgUrl
  ? [memoryBackend, sqliteBackend, pgBackend(pgUrl)]
  : [memoryBackend, sqliteBackend]

/** The SQL backends this run can reach. */
export const sqlBackends: ReadonlyArray<BackendFactory> = backends.filter((b) => b.name !== "memory")
