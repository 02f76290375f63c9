/**
 * OpenClaw's plugin-state error: a `code` and an `operation` beside the message, so plugin
 * code that branches on them runs unchanged. Made from the keyed store's
 * {@link StateStoreError} (its `cause`).
 *
 * @module
 */
import type { StateStoreError } from "../StateStoreError.js"

export type PluginStateStoreErrorCode =
  | "PLUGIN_STATE_SQLITE_UNAVAILABLE"
  | "PLUGIN_STATE_OPEN_FAILED"
  | "PLUGIN_STATE_WRITE_FAILED"
  | "PLUGIN_STATE_READ_FAILED"
  | "PLUGIN_STATE_CORRUPT"
  | "PLUGIN_STATE_LIMIT_EXCEEDED"
  | "PLUGIN_STATE_INVALID_INPUT"

export type PluginStateStoreOperation = "open" | "register" | "lookup" | "consume" | "delete" | "entries" | "count" | "clear" | "close"

/** A refused or failed plugin-state operation. */
export class PluginStateStoreError extends Error {
  readonly code: PluginStateStoreErrorCode
  readonly operation: PluginStateStoreOperation
  /** The SQLite file, for a failure of that file. */
  readonly path?: string

  constructor(message: string, options: { code: PluginStateStoreErrorCode; operation: PluginStateStoreOperation; path?: string | undefined; cause?: unknown }) {
    super(message, { cause: options.cause })
    this.name = "PluginStateStoreError"
    this.code = options.code
    this.operation = options.operation
    if (options.path !== undefined) this.path = options.path
  }
}

/** The code of a store failure, for an operation that reads or writes. */
const codeOf = (error: StateStoreError, kind: "read" | "write"): PluginStateStoreErrorCode => {
  switch (error.reason) {
    case "InvalidInput":
      return "PLUGIN_STATE_INVALID_INPUT"
    case "LimitExceeded":
      return "PLUGIN_STATE_LIMIT_EXCEEDED"
    case "Corrupt":
      return "PLUGIN_STATE_CORRUPT"
    case "OpenFailed":
    case "SchemaUnsupported":
      return "PLUGIN_STATE_OPEN_FAILED"
    case "ReadFailed":
      return "PLUGIN_STATE_READ_FAILED"
    case "WriteFailed":
      return "PLUGIN_STATE_WRITE_FAILED"
    default:
      // Unavailable or Busy: the read or write did not happen.
      return kind === "read" ? "PLUGIN_STATE_READ_FAILED" : "PLUGIN_STATE_WRITE_FAILED"
  }
}

/** The OpenClaw error of a keyed-store failure in `operation`. */
export const fromStoreError = (error: StateStoreError, operation: PluginStateStoreOperation, kind: "read" | "write", path?: string): PluginStateStoreError =>
  new PluginStateStoreError(error.message, { code: codeOf(error, kind), operation, path: error.reason === "InvalidInput" ? undefined : path, cause: error })

/** An `PLUGIN_STATE_INVALID_INPUT` the adapter itself refuses with. */
export const invalidInput = (operation: PluginStateStoreOperation, message: string): PluginStateStoreError =>
  new PluginStateStoreError(message, { code: "PLUGIN_STATE_INVALID_INPUT", operation })
