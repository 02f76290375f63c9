/**
 * Turns driver errors (better-sqlite3, pg) into {@link StateStoreError}s with a reason a
 * caller can act on: contention is `Busy` (waited out by the store), connection problems are
 * `Unavailable` (worth retrying), everything else is a read or write failure with a plain
 * explanation.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import type { StateStoreErrorReason } from "../../StateStoreError.js"
import { StateStoreError } from "../../StateStoreError.js"

interface DriverError {
  readonly code?: unknown
  readonly message?: unknown
}

/** Whether the server refused the statement for want of a privilege (PostgreSQL's 42501). */
export const isInsufficientPrivilege = (error: SqlError): boolean => driverError(error).code === "42501"

const driverError = (error: SqlError): DriverError => {
  const cause = error.cause
  return typeof cause === "object" && cause !== null ? (cause as DriverError) : {}
}

const BUSY_SQLITE = ["SQLITE_BUSY", "SQLITE_LOCKED"]
/** PostgreSQL: serialization failure, deadlock, lock not available, too many connections (other clients hold them). */
const BUSY_PG = ["40001", "40P01", "55P03", "53300"]
/** The code of a write that waited too long for its process's turn on a namespace lock (see sqlTransaction). */
export const TURN_TIMEOUT_CODE = "CHANNEL_STATE_TURN_TIMEOUT"
const UNAVAILABLE_NODE = ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH"]

/** How a driver failure is treated: waited out (`busy`), retried briefly (`unavailable`), or reported as it is. */
export type FailureKind = "busy" | "unavailable" | "failed"

/** What went wrong, in words an operator can act on, plus whether waiting or retrying may help. */
export const classify = (error: SqlError): { kind: FailureKind; detail: string } => {
  const { code, message } = driverError(error)
  const text = typeof message === "string" ? message : error.message
  const codeText = typeof code === "string" ? code : ""
  if (BUSY_SQLITE.some((c) => codeText.startsWith(c))) {
    return { kind: "busy", detail: `the database is locked by another connection or process (${codeText})` }
  }
  if (BUSY_PG.includes(codeText)) return { kind: "busy", detail: `the transaction conflicted with another one (${codeText}: ${text})` }
  if (codeText === TURN_TIMEOUT_CODE) return { kind: "busy", detail: text }
  // pg-pool: every pooled connection stayed in use (by this process's own operations) for the
  // whole connect timeout — the pool is contended, the server is not down.
  if (text.includes("timeout exceeded when trying to connect")) {
    return { kind: "busy", detail: "every pooled PostgreSQL connection stayed busy for the whole connect timeout (timeout exceeded when trying to connect)" }
  }
  if (codeText.startsWith("SQLITE_READONLY")) return { kind: "failed", detail: `the database is read-only (${codeText}): check file and directory permissions` }
  if (codeText.startsWith("SQLITE_FULL")) return { kind: "failed", detail: `the database or disk is full (${codeText})` }
  if (codeText === "SQLITE_NOTADB") return { kind: "failed", detail: "the file is not a SQLite database (SQLITE_NOTADB): run `channel-state doctor`" }
  if (codeText.startsWith("SQLITE_CORRUPT")) return { kind: "failed", detail: `the database file is damaged (${codeText}): run \`channel-state doctor\`` }
  if (codeText.startsWith("SQLITE_IOERR") || codeText.startsWith("SQLITE_CANTOPEN")) {
    return { kind: "unavailable", detail: `the database file cannot be read or written (${codeText}): check that it and its directory exist and are writable` }
  }
  // PostgreSQL: class 08 (connection exception), 57P0x (shutdown, terminated), 53 (resources).
  if (/^(08|57P0|53)/.test(codeText) || UNAVAILABLE_NODE.includes(codeText) || /Connection terminated|connection error|timeout|timed out|pool after calling end/i.test(text)) {
    return { kind: "unavailable", detail: `the database server is unreachable or dropped the connection (${codeText || text})` }
  }
  return { kind: "failed", detail: codeText ? `${codeText}: ${text}` : text }
}

/**
 * The writes that leave the same rows when run twice (upserts with their own timestamps, a
 * namespace's clear): retried after a dropped connection even when the first run may have been
 * applied. What a second run may say differently: `clear`'s count (the rows that run removed),
 * and a `writeBatch` conditional step reported refused because the first run already applied
 * it. Every other write (a claim, a consume, a conditional write or delete) answers from what it
 * found, so a second run would answer wrongly: it fails `Unavailable` instead, saying so.
 */
const REPEATABLE: ReadonlySet<string> = new Set(["register", "writeBatch", "clear"])

/**
 * Whether a failed write may have been applied: its connection dropped with no answer from
 * the server (a reset or closed socket, a timeout), so its COMMIT may have landed and only the
 * reply been lost. Such a write is never run again: a claim run twice answers `false` to its
 * own winner, a consume run twice takes a second row. Not so: a failure to get a connection
 * (nothing was sent), and an error the server reported in place of the command's result — a
 * SQLSTATE such as 57P01, the backend terminated (`pg_terminate_backend`, a server restart)
 * while running it: the command did not complete. (PostgreSQL could in principle commit and
 * then be terminated while its reply was blocked on a full socket; a single-row write's reply
 * is a few dozen bytes.)
 */
const mayHaveRun = (error: SqlError): boolean => {
  if (error.message.startsWith("Failed to acquire connection")) return false
  const { code } = driverError(error)
  return !(typeof code === "string" && /^[0-9A-Z]{5}$/.test(code))
}

/**
 * Whether the write `operation` failed with `error` after it may have been applied, and is of a
 * kind that must not run again (see {@link REPEATABLE} and {@link mayHaveRun}): it is not retried,
 * and its `Unavailable` says the outcome is unknown.
 */
export const outcomeUnknown = (operation: string, kind: "read" | "write", error: SqlError): boolean =>
  kind === "write" && !REPEATABLE.has(operation) && classify(error).kind === "unavailable" && mayHaveRun(error)

/** Maps a driver error of `operation` to a typed store error. `kind` picks the reason of a plain failure. */
export const fromSqlError =
  (operation: string, kind: "read" | "write", where: { owner?: string; namespace?: string; key?: string } = {}) =>
  (error: SqlError): StateStoreError => {
    const classified = classify(error)
    const reason: StateStoreErrorReason =
      classified.kind === "busy" ? "Busy" : classified.kind === "unavailable" ? "Unavailable" : kind === "read" ? "ReadFailed" : "WriteFailed"
    const detail =
      outcomeUnknown(operation, kind, error)
        ? `${classified.detail}; the write was in flight, so it may or may not have been applied`
        : classified.detail
    return new StateStoreError({ reason, operation, detail, cause: error.cause, ...where })
  }
