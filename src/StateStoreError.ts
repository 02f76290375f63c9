/**
 * The one typed error of the keyed store.
 *
 * @module
 */
import * as Schema from "effect/Schema"

/**
 * Why a store operation failed.
 *
 * - `Unavailable`: the backend cannot be reached (dropped PostgreSQL connection, server
 *   down, a SQLite file that cannot be opened or read); retrying later may succeed.
 * - `Busy`: contention, not an outage — the SQLite file stayed locked by another process, or
 *   PostgreSQL kept reporting a deadlock or serialization failure, for the whole of the
 *   store's `lockWait` (it is retried from the fiber until then).
 * - `OpenFailed`: the database could not be opened or prepared (bad path, permissions,
 *   not a database file).
 * - `SchemaUnsupported`: the database was written by a newer version of channel-state.
 * - `WriteFailed` / `ReadFailed`: the backend rejected a write or a read.
 * - `Corrupt`: a stored row no longer decodes with the namespace's Schema (it is removed).
 * - `LimitExceeded`: a namespace (`reject-new`) or owner cap is full.
 * - `InvalidInput`: a namespace, key, value or option breaks a rule; nothing was written.
 */
export const StateStoreErrorReason = Schema.Literal(
  "Unavailable",
  "Busy",
  "OpenFailed",
  "SchemaUnsupported",
  "WriteFailed",
  "ReadFailed",
  "Corrupt",
  "LimitExceeded",
  "InvalidInput"
)

/** @see StateStoreErrorReason */
export type StateStoreErrorReason = typeof StateStoreErrorReason.Type

/**
 * A failed keyed-store operation. Carries the operation, owner and namespace (and key when
 * one is involved), a `detail` a person can act on, and the underlying cause. Values are
 * never part of the message or the detail.
 */
export class StateStoreError extends Schema.TaggedError<StateStoreError>()("StateStoreError", {
  reason: StateStoreErrorReason,
  operation: Schema.String,
  owner: Schema.optional(Schema.String),
  namespace: Schema.optional(Schema.String),
  key: Schema.optional(Schema.String),
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    const where = [
      this.owner === undefined ? undefined : `owner "${this.owner}"`,
      this.namespace === undefined ? undefined : `namespace "${this.namespace}"`,
      this.key === undefined ? undefined : `key "${truncate(this.key)}"`
    ].filter((part) => part !== undefined)
    return `${this.reason} in ${this.operation}${where.length > 0 ? ` (${where.join(", ")})` : ""}: ${this.detail}`
  }
}

const truncate = (key: string): string => (key.length > 80 ? `${key.slice(0, 80)}…` : key)
