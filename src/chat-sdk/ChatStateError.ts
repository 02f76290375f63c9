/**
 * The one error the Chat SDK state adapter rejects with: an `Error` (so Chat SDK code that
 * logs or rethrows it works unchanged) carrying a `reason` code and the member that failed.
 * Made from the keyed store's {@link StateStoreError} (its `cause`) or from an argument the
 * adapter refuses before anything is read or written.
 *
 * @module
 */
import type { StateStoreError } from "../StateStoreError.js"

/**
 * Why a member rejected.
 *
 * - `NotConnected`: called while not connected — before any `connect()`, after one that
 *   rejected, or after `disconnect()` began (a call made while `connect()` is still opening
 *   waits for it).
 * - `InvalidArgument`: a thread id, key, TTL, length, size or lock the adapter cannot use;
 *   nothing was read or written.
 * - `InvalidValue`: a value that is not JSON (a function, a BigInt, a cycle, nothing at
 *   all); nothing was written.
 * - `TooLarge`: a value (or a whole list or queue after the append) past `maxValueBytes`, or
 *   nested deeper than 64 levels counting the row that holds it — a list's items sit inside
 *   its array (so an item may nest 63 levels), a queue's entries inside its array of entries
 *   (an entry 63, its `message` 62); nothing was written.
 * - `OpenFailed`: `connect()` could not open the database (bad path, permissions, not a
 *   database, a schema from a newer channel-state).
 * - `Unavailable`: the database cannot be reached now (server down, dropped connection);
 *   retrying later may succeed. A write whose connection dropped while it was in flight may
 *   have been applied (its reply was lost): it is never run again by the adapter, so it
 *   landed at most once — a claim or lock may then be held by nobody until its TTL, a
 *   dequeued entry may be gone. The error's message says so.
 * - `Busy`: the database, or the namespace's lock, stayed taken for the whole lock wait
 *   (`lockWait`, 5 s by default) — by another process, or by this process's own writes queued
 *   ahead — `connect()` included (another process creating the schema); the operation did
 *   not happen.
 * - `StoreFailed`: the database refused the read or write, or a stored row no longer decodes.
 */
export type ChatStateErrorReason = "NotConnected" | "InvalidArgument" | "InvalidValue" | "TooLarge" | "OpenFailed" | "Unavailable" | "Busy" | "StoreFailed"

/** A member of the state adapter, as errors name it. */
export type ChatStateOperation =
  | "connect"
  | "subscribe"
  | "unsubscribe"
  | "isSubscribed"
  | "acquireLock"
  | "releaseLock"
  | "extendLock"
  | "forceReleaseLock"
  | "get"
  | "set"
  | "setIfNotExists"
  | "delete"
  | "appendToList"
  | "getList"
  | "enqueue"
  | "dequeue"
  | "queueDepth"

/** A refused or failed state-adapter call. */
export class ChatStateError extends Error {
  /** Why it failed (see {@link ChatStateErrorReason}): whether retrying can help, and what was (not) written. */
  readonly reason: ChatStateErrorReason
  /** The member that failed (`connect` for a failure to open the database, whichever member met it). */
  readonly operation: ChatStateOperation

  constructor(reason: ChatStateErrorReason, operation: ChatStateOperation, message: string, cause?: unknown) {
    super(`${operation}: ${message}`, cause === undefined ? undefined : { cause })
    this.name = "ChatStateError"
    this.reason = reason
    this.operation = operation
  }
}

/** The reason a keyed-store failure is reported with. */
const reasonOf = (error: StateStoreError): ChatStateErrorReason => {
  switch (error.reason) {
    case "InvalidInput":
      return "InvalidValue"
    case "LimitExceeded":
      return "TooLarge"
    case "OpenFailed":
    case "SchemaUnsupported":
      return "OpenFailed"
    case "Unavailable":
      return "Unavailable"
    case "Busy":
      return "Busy"
    default:
      return "StoreFailed"
  }
}

/** The adapter's error for a keyed-store failure in `operation` (the store's message, which never holds a value). */
export const fromStoreError = (error: StateStoreError, operation: ChatStateOperation): ChatStateError => new ChatStateError(reasonOf(error), operation, error.message, error)
