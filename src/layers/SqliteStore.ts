/**
 * The keyed store on an embedded SQLite file (`@effect/sql-sqlite-node`): the default.
 *
 * @module
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Duration, Effect, Layer } from "effect"
import { KeyedStore } from "../KeyedStore.js"
import { StateStoreError } from "../StateStoreError.js"
import { fromSqlError } from "./sqlFailure.js"
import * as SqlStore from "./SqlStore.js"
import type { StoreSettings } from "./storeRules.js"

/** Where and how to open the SQLite file. */
export interface SqliteStoreOptions extends Partial<StoreSettings> {
  /** The database file. Missing directories are created `0700`, a missing file `0600`. */
  readonly filename: string
  /**
   * The longest one statement may wait for another process's lock. better-sqlite3 waits on
   * the event loop thread, so this stays short (default 25 ms); the store retries from the
   * fiber instead of blocking.
   */
  readonly busyTimeout?: Duration.DurationInput | undefined
}

const openFailed = (detail: string, cause?: unknown) =>
  new StateStoreError({ reason: "OpenFailed", operation: "open", detail, cause })

/** Creates the directory (`0700`) and file (`0600`) when missing; existing ones keep their modes. */
const prepareFile = (filename: string) =>
  Effect.try({
    try: () => {
      fs.mkdirSync(path.dirname(filename), { recursive: true, mode: 0o700 })
      const fd = fs.openSync(filename, fs.constants.O_CREAT | fs.constants.O_RDWR, 0o600)
      fs.closeSync(fd)
    },
    catch: (cause) => openFailed(`cannot create or open ${filename}: ${(cause as Error).message}`, cause)
  })

/**
 * Opens the SQLite file: WAL, `synchronous = NORMAL`, a short busy timeout, migrations,
 * and the expired-row sweeper, all closed with the scope. Fails with `OpenFailed` (bad
 * path, permissions, not a database) or `SchemaUnsupported` — never with a defect.
 */
export const make = (options: SqliteStoreOptions) =>
  Effect.gen(function* () {
    const filename = path.resolve(options.filename)
    yield* prepareFile(filename)
    const client = yield* SqliteClient.make({ filename }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.catchAllDefect((cause) => Effect.fail(openFailed(`cannot open ${filename} as a SQLite database: ${String((cause as Error)?.message ?? cause)}`, cause)))
    )
    const busyMillis = Math.max(0, Math.round(Duration.toMillis(options.busyTimeout ?? Duration.millis(25))))
    yield* Effect.all([
      client.unsafe(`PRAGMA busy_timeout = ${busyMillis}`),
      client`PRAGMA synchronous = NORMAL`
    ]).pipe(Effect.mapError(fromSqlError("open", "write")))
    return yield* SqlStore.make(options).pipe(Effect.provideService(SqlClient, client))
  })

/** The SQLite-backed {@link KeyedStore}. */
export const layer = (options: SqliteStoreOptions): Layer.Layer<KeyedStore, StateStoreError> => Layer.scoped(KeyedStore, make(options))
