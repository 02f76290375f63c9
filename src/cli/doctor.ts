/**
 * `channel-state doctor`: checks a state database and says, for each problem, what to do.
 * Never creates a database and never changes a file it cannot use; on a sound channel-state
 * database it writes, reads and deletes one row under its own reserved owner.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import type { KeyedStore } from "../KeyedStore.js"
import * as PgStore from "../layers/store/PgStore.js"
import * as SqliteStore from "../layers/store/SqliteStore.js"
import { DOCTOR_OWNER, engineVersion, integrityCheck, journalMode, probe, type SchemaStatus, schemaStatus } from "../layers/store/StoreAdmin.js"
import type { StateStoreError } from "../StateStoreError.js"
import { type Command, storeOptions } from "./command.js"
import { backendName, describeTarget, openProblemKind, openSql, PG_CONNECT_TIMEOUT, sqliteFileProblem, type Target, targetOf } from "./openDatabase.js"
import { byteSize, CliFailure, ExitCode, print, printJson } from "./output.js"

/** One check: its verdict, what was found, and (when it failed) what to do. */
export interface Check {
  readonly name: string
  readonly status: "ok" | "fail" | "skip"
  readonly detail: string
  readonly fix?: string
}

const ok = (name: string, detail: string): Check => ({ name, status: "ok", detail })
const fail = (name: string, detail: string, fix: string): Check => ({ name, status: "fail", detail, fix })
const skip = (name: string, detail: string): Check => ({ name, status: "skip", detail })

const quote = (file: string) => `'${file.replace(/'/g, "'\\''")}'`
const modeText = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`

/** A store error's detail, without the advice to run doctor (we are the doctor). */
const detailOf = (error: StateStoreError) => error.detail.replace(/: run `channel-state doctor`$/, "")

const MOVE_ASIDE = "Stop the gateway, move the file (and its -wal/-shm files) aside and start it again: channel-state begins with empty state. Or restore a backup."

/** What to do about a file that could not be read, by why: permission, lock and damage each get their own advice. */
const fixFor = (kind: ReturnType<typeof openProblemKind>, otherwise: string): string =>
  kind === "permission"
    ? "A permission problem, not damage: run doctor as the gateway's user, or fix the permissions of the file, its -wal/-shm files and its directory. The file was not changed."
    : kind === "lock"
      ? "Another process holds a lock on the file: try again in a moment (the gateway may be mid-write). The file was not changed."
      : kind === "damage"
        ? `Check --db. If this is the gateway's state file, it is damaged: ${MOVE_ASIDE} The file was not changed.`
        : otherwise

/** Group or other permission bits on the file, its sidecars or its directory. */
const permissionsCheck = (file: string): Check => {
  const wrong: Array<string> = []
  const fixes: Array<string> = []
  const seen: Array<string> = []
  const inspect = (label: string, target: string, expected: number) => {
    let mode: number
    try {
      mode = fs.statSync(target).mode
    } catch {
      return
    }
    seen.push(`${label} ${modeText(mode)}`)
    if ((mode & 0o077) !== 0) {
      wrong.push(`${label} is ${modeText(mode)} (group or others can access it; should be ${modeText(expected)})`)
      fixes.push(`chmod ${modeText(expected).slice(1)} ${quote(target)}`)
    }
  }
  inspect("file", file, 0o600)
  inspect("-wal", `${file}-wal`, 0o600)
  inspect("-shm", `${file}-shm`, 0o600)
  inspect("directory", path.dirname(file), 0o700)
  return wrong.length === 0
    ? ok("permissions", seen.join(", "))
    : fail("permissions", wrong.join("; "), `${fixes.join(" && ")}   (state may hold user content; only the gateway's user should read it)`)
}

const schemaCheck = (status: SchemaStatus, where: string): Check =>
  status.stored > status.known
    ? fail(
        "schema",
        `written by a newer channel-state (schema ${status.stored}, this knows ${status.known})`,
        "Upgrade channel-state (this version refuses the database and leaves it untouched)."
      )
    : !status.hasEntries
      ? fail(
          "schema",
          "not a channel-state database (no channel-state tables)",
          `Check ${where}: point it at the database your gateway's plugins use; channel-state creates its tables the first time a plugin opens it.`
        )
      : ok("schema", `version ${status.stored} (this channel-state knows ${status.known})`)

const probeCheck = (store: Layer.Layer<KeyedStore, StateStoreError>): Effect.Effect<Check> =>
  probe.pipe(
    Effect.provide(store),
    Effect.timed,
    Effect.match({
      onSuccess: ([elapsed]) => ok("probe", `wrote, read back and deleted a row as owner "${DOCTOR_OWNER}" (${Math.round(Duration.toMillis(elapsed))} ms)`),
      onFailure: (error) =>
        fail(
          "probe",
          `${error.reason} in ${error.operation}: ${detailOf(error)}`,
          error.reason === "Busy"
            ? "Another process held the database's lock for the whole wait (a gateway mid-write, or one in exclusive locking mode): try again in a moment. Nothing was changed."
            : "Check free disk space, that the gateway's user can write the database (file and directory), and the checks above."
        )
    })
  )

/** Checks of a SQLite file, in order; stops early when the file is missing or unusable. */
const sqliteChecks = async (target: Extract<Target, { backend: "sqlite" }>): Promise<ReadonlyArray<Check>> => {
  const file = target.path
  const problem = sqliteFileProblem(file)
  if (problem?.kind === "missing") {
    return [fail("file", problem.message, "Check --db (plugins default to ~/.local/state/channel-state/state.sqlite); doctor never creates a database.")]
  }
  if (problem !== undefined) {
    if (fs.statSync(file, { throwIfNoEntry: false })?.isDirectory() === true) {
      return [
        fail("file", problem.message, `Check --db: give the state file, not its directory (e.g. --db ${quote(path.join(file, "state.sqlite"))}).`),
        skip("database", "not checked: --db names a directory")
      ]
    }
    const fix =
      problem.kind === "unreadable"
        ? "Run doctor as the gateway's user, or fix the file's permissions."
        : `Check --db. If this is meant to be the state file, it is damaged: ${MOVE_ASIDE} The file was not changed.`
    return [fail("file", problem.message, fix), permissionsCheck(file), skip("database", "not checked: the file is not a usable SQLite database")]
  }
  const size = fs.statSync(file).size
  const checks: Array<Check> = [
    ok("file", size === 0 ? "empty (0 bytes): SQLite reads it as an empty database" : `starts with the SQLite header, ${byteSize(size)}`),
    permissionsCheck(file)
  ]

  const diagnosis = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const client = yield* openSql(target, "read")
        const on = <A>(effect: Effect.Effect<A, StateStoreError, SqlClient>) => Effect.either(Effect.provideService(effect, SqlClient, client))
        const engine = yield* on(engineVersion)
        const integrity = yield* on(integrityCheck())
        if (Either.isLeft(engine) || Either.isLeft(integrity)) return { engine, integrity, schema: undefined, journal: undefined }
        return { engine, integrity, schema: yield* on(schemaStatus), journal: yield* on(journalMode) }
      })
    ).pipe(Effect.either)
  )
  if (Either.isLeft(diagnosis)) {
    const error = diagnosis.left
    const detail = error instanceof CliFailure ? error.message : detailOf(error)
    const kind = error instanceof CliFailure ? "other" : openProblemKind(error.cause)
    const fix = fixFor(kind, "The file was not changed. Check --db, and run doctor again; if this persists, look at the detail above.")
    return [...checks, fail("open", detail, fix), skip("probe", "not run")]
  }
  const { engine, integrity, schema, journal } = diagnosis.right
  const firstError = Either.isLeft(engine) ? engine.left : Either.isLeft(integrity) ? integrity.left : undefined
  if (firstError !== undefined) {
    const fix = fixFor(openProblemKind(firstError.cause), "The file was not changed. Run doctor again; if this persists, look at the detail above.")
    checks.push(fail("integrity", detailOf(firstError), fix))
    checks.push(skip("probe", "not run: the file is not a usable SQLite database"))
    return checks
  }
  const problems = Either.isRight(integrity) ? (integrity.right ?? []) : []
  checks.push(
    problems.length === 0
      ? ok("integrity", `PRAGMA integrity_check: ok (${Either.isRight(engine) ? engine.right : ""})`)
      : fail("integrity", `PRAGMA integrity_check found ${problems.length} problem(s): ${problems.slice(0, 3).join("; ")}`, MOVE_ASIDE)
  )
  let usable = problems.length === 0
  if (schema !== undefined) {
    if (Either.isLeft(schema)) {
      checks.push(fail("schema", detailOf(schema.left), "Run doctor again; if it persists, the file is damaged."))
      usable = false
    } else {
      const check = schemaCheck(schema.right, "--db")
      checks.push(check)
      usable &&= check.status === "ok"
    }
  }
  if (journal !== undefined) {
    checks.push(
      Either.isLeft(journal)
        ? fail("journal mode", detailOf(journal.left), "Run doctor again; if it persists, the file is damaged.")
        : journal.right === "wal"
          ? ok("journal mode", "wal")
          : fail(
              "journal mode",
              `${journal.right} (channel-state uses wal: readers never wait for writers)`,
              `channel-state switches the file to WAL when it opens it; if something else switched it back, run: sqlite3 ${quote(file)} 'PRAGMA journal_mode=WAL'`
            )
    )
  }
  const readOnly = [file, path.dirname(file), ...[`${file}-wal`, `${file}-shm`].filter((f) => fs.existsSync(f))].filter((f) => !writable(f))
  if (readOnly.length > 0) {
    checks.push(
      fail(
        "writable",
        `read-only for this user: ${readOnly.join(", ")} (read-only media, mode bits or chattr +i); the database itself reads fine`,
        "A permission problem, not damage: the gateway must be able to write the file, its -wal/-shm files and its directory (lsattr shows an immutable flag; chattr -i lifts it)."
      )
    )
    usable = false
  }
  checks.push(
    usable
      ? await Effect.runPromise(probeCheck(SqliteStore.layer({ filename: file, sweepInterval: Duration.days(1) })))
      : skip("probe", "not run: fix the problems above first")
  )
  return checks
}

/** Whether this process may write `target` (mode bits, read-only mounts, the immutable flag). */
const writable = (target: string): boolean => {
  try {
    fs.accessSync(target, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** Checks of a PostgreSQL database, in order; stops early when it cannot be reached. */
const pgChecks = async (target: Extract<Target, { backend: "pg" }>): Promise<ReadonlyArray<Check>> => {
  const diagnosis = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const client = yield* openSql(target, "read")
        const on = <A>(effect: Effect.Effect<A, StateStoreError, SqlClient>) => Effect.either(Effect.provideService(effect, SqlClient, client))
        return { engine: yield* on(engineVersion), schema: yield* on(schemaStatus) }
      })
    ).pipe(Effect.either)
  )
  if (Either.isLeft(diagnosis)) {
    const error = diagnosis.left
    return [
      fail(
        "connection",
        error instanceof CliFailure ? error.message : detailOf(error),
        `Check --pg (user, password, host, port, database name) and that the server is running and reachable from here (waited ${Duration.format(PG_CONNECT_TIMEOUT)}).`
      ),
      skip("probe", "not run")
    ]
  }
  const { engine, schema } = diagnosis.right
  const checks: Array<Check> = [ok("connection", Either.isRight(engine) ? engine.right : "connected")]
  let usable = true
  if (Either.isLeft(schema)) {
    checks.push(fail("schema", detailOf(schema.left), "Check that the user may read the database's tables."))
    usable = false
  } else {
    const check = schemaCheck(schema.right, "--pg")
    checks.push(check)
    usable = check.status === "ok"
  }
  checks.push(
    usable
      ? await Effect.runPromise(
          probeCheck(PgStore.layer({ url: target.url, client: { connectTimeout: PG_CONNECT_TIMEOUT, maxConnections: 2 }, sweepInterval: Duration.days(1) }))
        )
      : skip("probe", "not run: fix the problems above first")
  )
  return checks
}

/** The `doctor` subcommand. */
export const doctorCommand: Command = {
  help: `Usage: channel-state doctor (--db PATH | --pg URL) [--json]

Checks, and prints each as ok or FAIL with what to do:
  SQLite:      the file is a SQLite database, permissions (file and -wal/-shm 0600, directory
               0700), PRAGMA integrity_check, schema version, journal mode (wal), and a probe
  PostgreSQL:  the connection, schema version, and a probe
The probe writes, reads back and deletes one row as the reserved owner "${DOCTOR_OWNER}",
through the store the plugins use; it runs only when everything before it is sound. doctor
never creates a database and never changes a file it cannot use.
  --db PATH   the SQLite state file
  --pg URL    the PostgreSQL database (postgres://user@host:5432/db)
  --json      print the checks as JSON
Exit code 0 when every check passes, 1 when any fails, 2 on bad usage.`,
  options: { ...storeOptions, json: { type: "boolean" } },
  run: async (values) => {
    const target = targetOf(values, "doctor")
    const checks = target.backend === "sqlite" ? await sqliteChecks(target) : await pgChecks(target)
    const failed = checks.filter((c) => c.status === "fail").length
    if (values.json === true) {
      printJson({ database: { backend: target.backend, location: describeTarget(target) }, ok: failed === 0, checks })
    } else {
      print(`channel-state doctor — ${describeTarget(target)} (${backendName(target)})\n`)
      const width = Math.max(...checks.map((c) => c.name.length))
      for (const c of checks) {
        print(`${(c.status === "fail" ? "FAIL" : c.status).padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`)
        if (c.fix) print(`${" ".repeat(width + 8)}→ ${c.fix}`)
      }
      print(failed === 0 ? "\nAll checks passed." : `\n${failed} of ${checks.length} checks failed: see → above for what to do.`)
    }
    return failed === 0 ? ExitCode.ok : ExitCode.failed
  }
}
