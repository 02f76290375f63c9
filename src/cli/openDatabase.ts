/**
 * How the operator commands reach a state database (`--db PATH` or `--pg URL`) without ever
 * creating, migrating or converting one, and how their failures become one clear line.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { DRIVER_LOAD_FAILED, makePgClient } from "../layers/store/pgDriver.js"
import { classify } from "../layers/store/sqlFailure.js"
import { ensureReadable } from "../layers/store/StoreAdmin.js"
import { StateStoreError } from "../StateStoreError.js"
import { CliFailure, ExitCode } from "./output.js"

/** The database a command works on. */
export type Target = { readonly backend: "sqlite"; readonly path: string } | { readonly backend: "pg"; readonly url: string }

/** How long a command waits for PostgreSQL to accept a connection. */
export const PG_CONNECT_TIMEOUT = Duration.seconds(3)

/** `--db PATH` or `--pg URL`, exactly one; anything else is a usage error (exit 2). */
export const targetOf = (values: Record<string, string | boolean | undefined>, command: string): Target => {
  const db = typeof values.db === "string" ? values.db : undefined
  const pg = typeof values.pg === "string" ? values.pg : undefined
  const hint = `Run \`channel-state ${command} --help\`.`
  if (db !== undefined && pg !== undefined) throw new CliFailure("give either --db PATH or --pg URL, not both", ExitCode.usage, hint)
  if (db === undefined && pg === undefined) throw new CliFailure("which database? Give --db PATH (a SQLite file) or --pg URL (PostgreSQL)", ExitCode.usage, hint)
  if (db !== undefined) {
    if (db.length === 0) throw new CliFailure("--db needs a path", ExitCode.usage, hint)
    return { backend: "sqlite", path: path.resolve(db) }
  }
  if (!/^postgres(ql)?:\/\//.test(pg ?? "")) {
    throw new CliFailure("--pg needs a PostgreSQL URL such as postgres://user@host:5432/db", ExitCode.usage, hint)
  }
  return { backend: "pg", url: pg as string }
}

/** The URL with its password masked, safe to print. */
export const redactUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = "***"
    return parsed.toString()
  } catch {
    return "postgres://…"
  }
}

/** The target as a person reads it: the file path, or the URL without its password. */
export const describeTarget = (target: Target): string => (target.backend === "sqlite" ? target.path : redactUrl(target.url))

/** `SQLite` or `PostgreSQL`. */
export const backendName = (target: Target): string => (target.backend === "sqlite" ? "SQLite" : "PostgreSQL")

const SQLITE_HEADER = Buffer.from("SQLite format 3\u0000", "latin1")

/** What is wrong with a SQLite file before opening it, without changing anything. */
export type FileProblem =
  | { readonly kind: "missing"; readonly message: string }
  | { readonly kind: "unreadable"; readonly message: string }
  | { readonly kind: "not-a-database"; readonly message: string }

/**
 * Looks at the file without opening it as a database: missing, not a regular file,
 * unreadable, or not starting with the SQLite header (an empty file is an empty database).
 */
export const sqliteFileProblem = (file: string): FileProblem | undefined => {
  let stat: fs.Stats
  try {
    stat = fs.statSync(file)
  } catch (error) {
    const code = (error as { code?: string }).code
    return code === "ENOENT" || code === "ENOTDIR"
      ? { kind: "missing", message: `no database at ${file}` }
      : { kind: "unreadable", message: `cannot look at ${file}: ${(error as Error).message}` }
  }
  if (!stat.isFile()) return { kind: "not-a-database", message: `${file} is not a file (it is a ${stat.isDirectory() ? "directory" : "special file"})` }
  if (stat.size === 0) return undefined
  let header: Buffer
  try {
    const fd = fs.openSync(file, "r")
    try {
      header = Buffer.alloc(SQLITE_HEADER.length)
      fs.readSync(fd, header, 0, header.length, 0)
    } finally {
      fs.closeSync(fd)
    }
  } catch (error) {
    return { kind: "unreadable", message: `cannot read ${file}: ${(error as Error).message}` }
  }
  return header.equals(SQLITE_HEADER)
    ? undefined
    : { kind: "not-a-database", message: `${file} is not a SQLite database (it does not start with the SQLite header)` }
}

const openFailed = (detail: string, cause?: unknown) => new StateStoreError({ reason: "OpenFailed", operation: "open", detail, cause })

/** A driver error while opening, in words: unreachable server, refused login, missing database… */
const openError = (target: Target) => (error: SqlError) => {
  const { kind, detail } = classify(error)
  return new StateStoreError({
    reason: kind === "busy" ? "Busy" : kind === "unavailable" ? "Unavailable" : "OpenFailed",
    operation: "open",
    detail: target.backend === "pg" ? `cannot connect to PostgreSQL at ${redactUrl(target.url)}: ${detail}` : detail,
    cause: error.cause
  })
}

/** The driver's error code of a failed open (`SQLITE_CANTOPEN`, `EACCES`, …), if it has one. */
const codeOf = (cause: unknown): string => {
  // The driver's error may sit under a SqlError or a StateStoreError: follow the causes.
  let current: unknown = cause
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && code.length > 0) return code
    current = (current as { cause?: unknown }).cause
  }
  return ""
}

/** Why a SQLite file could not be opened, as an operator should read it. */
export const openProblemKind = (cause: unknown): "permission" | "lock" | "damage" | "other" => {
  const code = codeOf(cause)
  if (/^SQLITE_(CANTOPEN|READONLY|PERM|AUTH)/.test(code) || code === "EACCES" || code === "EPERM" || code === "EROFS") return "permission"
  if (/^SQLITE_(BUSY|LOCKED)/.test(code)) return "lock"
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return "damage"
  return "other"
}

const sqliteClient = (filename: string, readonly: boolean) =>
  SqliteClient.make({ filename, readonly, disableWAL: true }).pipe(
    Effect.provide(Reactivity.layer),
    Effect.catchAllDefect((cause) => Effect.fail(openFailed(`cannot open ${filename} as a SQLite database: ${String((cause as Error)?.message ?? cause)}`, cause)))
  )

/**
 * A private copy of the database (and its `-wal`, when there is one) in a temporary directory
 * removed with the scope: reading it needs only read access to the originals, and nothing is
 * ever created next to them.
 */
const privateCopy = (file: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        // Listening before the directory exists: a signal that comes right after it is made
        // (even before this process runs another instruction) finds it listed and removes it.
        listen()
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-read-"))
        copies.add(dir)
        try {
          const copy = path.join(dir, "state.sqlite")
          fs.copyFileSync(file, copy)
          if (fs.existsSync(`${file}-wal`)) fs.copyFileSync(`${file}-wal`, `${copy}-wal`)
          return { dir, copy }
        } catch (error) {
          removeCopy(dir)
          throw error
        }
      },
      catch: (cause) => openFailed(`cannot read ${file}: ${(cause as Error).message}`, cause)
    }),
    ({ dir }) => Effect.sync(() => removeCopy(dir))
  )

/**
 * The private copies that exist now: removed on exit, and on SIGINT/SIGTERM before the process
 * ends as the signal would. Once a copy was made the process listens for good: stopping when the
 * last copy goes would drop a signal that came while it existed and was not handled yet (the
 * command would run on as if Ctrl-C had not been pressed).
 */
const copies = new Set<string>()
let listening = false
const removeCopy = (dir: string) => {
  copies.delete(dir)
  fs.rmSync(dir, { recursive: true, force: true })
}
const listen = () => {
  if (listening) return
  listening = true
  process.on("exit", removeAllCopies)
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
}
const removeAllCopies = () => {
  for (const dir of [...copies]) removeCopy(dir)
}
const onSignal = (signal: NodeJS.Signals) => {
  removeAllCopies()
  process.off("SIGINT", onSignal)
  process.off("SIGTERM", onSignal)
  // Nobody listens now: the signal ends the process as it would have without us.
  process.kill(process.pid, signal)
}

/**
 * Reads a SQLite file without leaving anything next to it and without needing write access:
 * unless a `-wal` and a `-shm` are beside it (a gateway has it open), from a private copy of
 * the file and its `-wal`; with both, directly (read-only) — or, when that is refused
 * (read-only media, `chattr +i`, a gateway holding the file in exclusive locking mode), from a
 * private copy too.
 */
const openForReading = (file: string) =>
  Effect.gen(function* () {
    const fromCopy = Effect.flatMap(privateCopy(file), ({ copy }) => sqliteClient(copy, false))
    // Without both a -wal and a -shm beside it, a read-only open would create them.
    if (!fs.existsSync(`${file}-wal`) || !fs.existsSync(`${file}-shm`)) return yield* fromCopy
    // better-sqlite3 opens lazily: a first read shows whether the -shm can be used (and the lock taken).
    const direct = Effect.tap(sqliteClient(file, true), (client) =>
      client`SELECT count(*) AS n FROM sqlite_master`.pipe(
        Effect.mapError((error) => openFailed(`cannot read ${file}: ${String((error.cause as Error)?.message ?? error.message)}`, error.cause))
      )
    )
    return yield* direct.pipe(
      Effect.catchIf((error) => {
        const kind = openProblemKind(error.cause)
        return kind === "permission" || kind === "lock"
      }, () => fromCopy)
    )
  })

/**
 * A `SqlClient` on the target, closed with the scope. SQLite: the file must exist and look
 * like a database (it is never created, and its journal mode is left as it is); for `"read"`
 * it is read without write access and without creating files beside it (see
 * {@link openForReading}). PostgreSQL: fails within {@link PG_CONNECT_TIMEOUT} when
 * unreachable. Never migrates.
 */
export const openSql = (target: Target, access: "read" | "write"): Effect.Effect<SqlClient, StateStoreError | CliFailure, Scope.Scope> =>
  Effect.gen(function* () {
    if (target.backend === "sqlite") {
      const problem = sqliteFileProblem(target.path)
      if (problem) return yield* Effect.fail(cliFailureOf(problem))
      return yield* access === "read" ? openForReading(target.path) : sqliteClient(target.path, false)
    }
    return yield* makePgClient({
      url: Redacted.make(target.url),
      connectTimeout: PG_CONNECT_TIMEOUT,
      maxConnections: 2,
      applicationName: "channel-state-cli"
    }).pipe(
      Effect.catchTag("SqlError", (error) => Effect.fail(openError(target)(error))),
      Effect.catchAllDefect((cause) => Effect.fail(openFailed(`cannot connect to PostgreSQL at ${redactUrl(target.url)}: ${String((cause as Error)?.message ?? cause)}`, cause)))
    )
  })

/** The failure for a file problem found before opening. */
export const cliFailureOf = (problem: FileProblem): CliFailure =>
  problem.kind === "missing"
    ? new CliFailure(problem.message, ExitCode.failed, "Check --db: inspect, purge and doctor never create a database (plugins default to ~/.local/state/channel-state/state.sqlite).")
    : problem.kind === "not-a-database"
      ? new CliFailure(problem.message, ExitCode.failed, "Nothing was changed. Check --db; `channel-state doctor` tells more.")
      : new CliFailure(problem.message, ExitCode.failed, "Check the file's permissions, or run as the user that owns it.")

const PERMISSION_HINT = "Check the permissions of the file, its -wal/-shm files and its directory, or run as the user that owns them."

const hintFor = (error: StateStoreError): string | undefined => {
  switch (error.reason) {
    case "SchemaUnsupported":
      return "Upgrade channel-state to work on this database; it was left untouched."
    case "Unavailable":
      return error.detail.includes("PostgreSQL")
        ? `Check the URL and that the server is running and reachable from here (gave up after ${Duration.format(PG_CONNECT_TIMEOUT)}).`
        : openProblemKind(error.cause) === "lock"
          ? "Another process holds a lock; try again in a moment."
          : openProblemKind(error.cause) === "permission"
            ? PERMISSION_HINT
            : "Nothing was changed. `channel-state doctor` tells more."
    case "OpenFailed":
      if (error.detail.startsWith(DRIVER_LOAD_FAILED)) return "Reinstall channel-state (`npm install`): its dependency @effect/sql-pg could not be loaded."
      return error.detail.startsWith("not a channel-state database")
        ? "Check --db / --pg: it should be the database your gateway's plugins write to (their tables appear on first use)."
        : error.detail.includes("PostgreSQL")
          ? "Check --pg: user, password, host, port and database name."
          : openProblemKind(error.cause) === "permission"
            ? PERMISSION_HINT
            : "Nothing was changed. `channel-state doctor` tells more."
    case "ReadFailed":
    case "WriteFailed":
    case "Corrupt":
      return "Nothing was changed. Run `channel-state doctor` with the same --db / --pg."
    default:
      return undefined
  }
}

/** A typed failure as the one line the CLI prints, prefixed with where it happened. */
export const toCliFailure = (target: Target | undefined, error: unknown): CliFailure => {
  if (error instanceof CliFailure) return error
  if (error instanceof StateStoreError) {
    const where = target && !error.detail.includes(describeTarget(target)) ? `${describeTarget(target)}: ` : ""
    // The hint says what to run; the detail need not say it again.
    const detail = error.detail.replace(/: run `channel-state doctor`$/, "")
    return new CliFailure(`${where}${detail}`, ExitCode.failed, hintFor(error))
  }
  return new CliFailure(error instanceof Error ? error.message : String(error))
}

/**
 * Runs `effect` to completion; a failure or defect is thrown as a {@link CliFailure} (one
 * line, no stack trace) for `main` to print.
 */
export const runForCli = async <A>(target: Target | undefined, effect: Effect.Effect<A, StateStoreError | CliFailure>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) throw toCliFailure(target, failure.value)
  const defect = Cause.dieOption(exit.cause)
  if (Option.isSome(defect)) throw toCliFailure(target, defect.value)
  throw new CliFailure("interrupted")
}

/**
 * Opens the target (see {@link openSql}), refuses a database this code cannot read (newer
 * schema, no channel-state tables), runs `body` with the client, and closes it.
 */
export const withDatabase = <A>(
  target: Target,
  access: "read" | "write",
  body: (schemaVersion: number) => Effect.Effect<A, StateStoreError | CliFailure, SqlClient>
): Promise<A> =>
  runForCli(
    target,
    Effect.scoped(
      Effect.flatMap(openSql(target, access), (client) =>
        Effect.provideService(Effect.flatMap(ensureReadable, body), SqlClient, client)
      )
    )
  )
