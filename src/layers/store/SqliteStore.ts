/**
 * The keyed store on an embedded SQLite file (`@effect/sql-sqlite-node`): the default.
 *
 * @module
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { KeyedStore } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { fromSqlError } from "./sqlFailure.js"
import * as ReopeningStore from "./ReopeningStore.js"
import type { OpenedDatabase } from "./ReopeningStore.js"
import * as SqlStore from "./SqlStore.js"
import { retryTransient, transientReason } from "./retry.js"
import { duration, firstProblem, optional, text } from "../settingsCheck.js"
import { defaultStoreSettings, storeSettingRules } from "./storeRules.js"

/** Where and how to open the SQLite file. */
export interface SqliteStoreOptions extends SqlStore.SqlStoreOptions {
  /** The database file. Missing directories are created `0700`, a missing file `0600`. */
  readonly filename: string
  /**
   * The longest one statement may wait for another process's lock. better-sqlite3 waits on
   * the event-loop thread, so the default is 0: a locked file answers at once, and the store
   * waits the lock out from the fiber (one poller per store, never blocking the event loop)
   * for up to `lockWait` (5 s), then fails with `Busy`.
   */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /**
   * When the file cannot be opened at start: `false` (default) fails building the store;
   * `true` logs it and retries on use (at most once a second), operations failing with
   * `Unavailable` meanwhile.
   */
  readonly retryOpen?: boolean | undefined
}

const openFailed = (detail: string, cause?: unknown) =>
  new StateStoreError({ reason: "OpenFailed", operation: "open", detail, cause })

/** A driver error while opening: contention and outages as such, anything else (not a database, read-only…) `OpenFailed`. */
const openError = (error: SqlError): StateStoreError => {
  const typed = fromSqlError("open", "write")(error)
  return typed.reason === "WriteFailed" ? new StateStoreError({ ...typed, reason: "OpenFailed" }) : typed
}

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

/** Opens the file as it is now, in `scope`: client, pragmas, migrations, sweeper. */
const openFile = (filename: string, options: SqliteStoreOptions, scope: Scope.Scope): Effect.Effect<OpenedDatabase, StateStoreError> =>
  Effect.gen(function* () {
    yield* prepareFile(filename)
    const identity = fileIdentity(filename)
    // WAL is switched on below, after the busy timeout: the client's own switch would run
    // under better-sqlite3's 5 s default, waiting on the event loop while another process
    // holds a fresh file.
    const client = yield* SqliteClient.make({ filename, disableWAL: true }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.catchAllDefect((cause) => Effect.fail(openFailed(`cannot open ${filename} as a SQLite database: ${String((cause as Error)?.message ?? cause)}`, cause)))
    )
    const busyMillis = Math.max(0, Math.round(Duration.toMillis(options.busyTimeout ?? Duration.zero)))
    yield* client.unsafe(`PRAGMA busy_timeout = ${busyMillis}`).pipe(Effect.mapError(openError))
    // Unprepared: @effect/sql-sqlite-node caches a statement whose prepare failed (a file
    // another process is switching to WAL answers SQLITE_BUSY) for ten minutes, so a retry of
    // the cached statement could never succeed.
    yield* Effect.all([client`PRAGMA journal_mode = WAL`.unprepared, client`PRAGMA synchronous = NORMAL`.unprepared]).pipe(
      // An unprepared statement's failed prepare is thrown, not failed: make it the SqlError it is.
      Effect.catchAllDefect((cause) => Effect.fail(new SqlError({ cause, message: "Failed to prepare statement" }))),
      Effect.mapError(openError),
      (switching) => retryTransient(Duration.toMillis(options.lockWait ?? defaultStoreSettings.lockWait))(switching, transientReason)
    )
    // A statement whose prepare failed stays failed in the client's statement cache: such a
    // connection is replaced by a fresh one.
    let stuck = false
    const onStatementStuck = () => {
      stuck = true
    }
    const reader = yield* openReader(filename, busyMillis)
    const store = yield* SqlStore.make(options, { onStatementStuck, reader, exclusiveClient: true }).pipe(Effect.provideService(SqlClient, client))
    return {
      store,
      stale: () =>
        stuck
          ? "kept a statement that failed to prepare while the file was locked (the client caches it)"
          : fileIdentity(filename) !== identity
            ? "was removed or replaced"
            : undefined
    }
  }).pipe(Scope.extend(scope))

/**
 * The reader: a second connection to the file, for the reads made outside a transaction (WAL
 * lets it read while the writer connection holds the write lock, and each read sees every
 * commit made before it). `query_only`: it can never write. Its client is this store's alone,
 * so its connection is reserved for the store's lifetime and its statements run on it directly.
 */
const openReader = (filename: string, busyMillis: number) =>
  Effect.gen(function* () {
    const client = yield* SqliteClient.make({ filename, disableWAL: true }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.catchAllDefect((cause) => Effect.fail(openFailed(`cannot open ${filename} for reading: ${String((cause as Error)?.message ?? cause)}`, cause)))
    )
    yield* Effect.all([client.unsafe(`PRAGMA busy_timeout = ${busyMillis}`), client.unsafe("PRAGMA query_only = 1")]).pipe(Effect.mapError(openError))
    return yield* client.reserve.pipe(Effect.mapError(openError))
  })

/** The file's device and inode, or `undefined` when the path names no file (missing, or a directory on the way was replaced by a file). */
const fileIdentity = (filename: string): string | undefined => {
  try {
    const stat = fs.statSync(filename, { throwIfNoEntry: false })
    return stat === undefined ? undefined : `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

/**
 * Opens the SQLite file: WAL, `synchronous = NORMAL`, busy timeout 0 (retries happen in the
 * fiber), migrations, and the expired-row sweeper, all closed with the scope. Fails with
 * `OpenFailed` (bad path, permissions, not a database) or `SchemaUnsupported` — never with
 * a defect — unless `retryOpen` is set.
 *
 * Every operation first checks (one `stat`, about a microsecond) that the path still names
 * the file that was opened. If the file or its directory was removed or replaced, the store
 * reopens the path — recreating it when missing — instead of writing on into a deleted
 * inode; while that fails, operations fail with `Unavailable`.
 */
export const make = (options: SqliteStoreOptions) => {
  // Settings are checked before anything is opened or created: a wrong one is InvalidInput, naming it.
  const problem = firstProblem("", options, { filename: text, busyTimeout: optional(duration), ...storeSettingRules })
  if (problem !== undefined) return Effect.fail(new StateStoreError({ reason: "InvalidInput", operation: "open", detail: problem }))
  const filename = path.resolve(options.filename)
  return ReopeningStore.make({
    backend: "sqlite",
    location: filename,
    readsNeverWait: true,
    open: (scope) => openFile(filename, options, scope),
    retryOpen: options.retryOpen
  })
}

/** The SQLite-backed {@link KeyedStore}. */
export const layer = (options: SqliteStoreOptions): Layer.Layer<KeyedStore, StateStoreError> => Layer.scoped(KeyedStore, make(options))
