/**
 * The rules of the many-key, range and compare-and-set members, shared by every backend:
 * key lists, key ranges, and revisions (what a compare-and-set compares).
 *
 * @internal
 */
import { createHash } from "node:crypto"
import { type BatchOp, type KeyRange, MAX_KEYS_PER_CALL } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { checkKey, invalid, isWellFormedText, type ResolvedNamespace } from "./storeRules.js"

/** Checks a key list: at most {@link MAX_KEYS_PER_CALL} keys, each one valid; nothing is read before. */
export const checkKeys = <A>(ns: ResolvedNamespace<A>, operation: string, keys: ReadonlyArray<string>): StateStoreError | undefined => {
  const at = { owner: ns.owner, namespace: ns.namespace }
  if (!Array.isArray(keys)) return invalid(operation, `keys must be an array, got ${typeof keys}`, at)
  if (keys.length > MAX_KEYS_PER_CALL) return invalid(operation, `${keys.length} keys given, the limit is ${MAX_KEYS_PER_CALL} per call`, at)
  for (const key of keys) {
    const problem = checkKey(ns, operation, key)
    if (problem) return problem
  }
  return undefined
}

/**
 * A batch's steps, each read once into a plain copy (a step whose getters answer differently
 * on each read cannot make two backends see two batches), or why the batch is refused: it
 * must be an array of `Register` / `Delete` steps. A malformed step refuses the whole batch
 * (nothing is written): it is a caller's bug, not a write to refuse alone.
 */
export const readSteps = <A>(ns: ResolvedNamespace<A>, steps: unknown): ReadonlyArray<BatchOp<A>> | StateStoreError => {
  const at = { owner: ns.owner, namespace: ns.namespace }
  if (!Array.isArray(steps)) return invalid("writeBatch", `steps must be an array, got ${steps === null ? "null" : typeof steps}`, at)
  const read: Array<BatchOp<A>> = []
  for (const [i, step] of steps.entries()) {
    const tag = typeof step === "object" && step !== null ? (step as { _tag?: unknown })._tag : undefined
    if (tag === "Register") {
      const { key, value, createdAt, expiresAt, ifAbsentOr } = step as Extract<BatchOp<A>, { _tag: "Register" }>
      read.push(ifAbsentOr === undefined ? { _tag: "Register", key, value, createdAt, expiresAt } : { _tag: "Register", key, value, createdAt, expiresAt, ifAbsentOr })
    } else if (tag === "Delete") {
      const { key, ifEqual } = step as Extract<BatchOp<A>, { _tag: "Delete" }>
      read.push(ifEqual === undefined ? { _tag: "Delete", key } : { _tag: "Delete", key, ifEqual })
    } else return invalid("writeBatch", `step ${i} is not a { _tag: "Register" } or { _tag: "Delete" } step`, at)
  }
  return read
}

/** A validated {@link KeyRange}. */
export interface CheckedRange {
  readonly from: string | undefined
  readonly to: string | undefined
  readonly limit: number
  readonly order: "asc" | "desc"
  readonly cursor: string | undefined
}

/** Compares two strings in UTF-8 byte order (SQLite's `BINARY`, PostgreSQL's `"C"`). */
export const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

/** Checks a range: bounds are strings with `from` before `to`, a limit of 1 … {@link MAX_KEYS_PER_CALL}, a known order, a cursor that is a key. */
export const checkRange = <A>(ns: ResolvedNamespace<A>, range: KeyRange): CheckedRange | StateStoreError => {
  const op = "entriesInRange"
  const at = { owner: ns.owner, namespace: ns.namespace }
  if (typeof range !== "object" || range === null) return invalid(op, "the range must be an object", at)
  const { from, to, limit, order = "asc", cursor } = range
  for (const [name, bound] of [
    ["from", from],
    ["to", to]
  ] as const) {
    if (bound === undefined) continue
    if (typeof bound !== "string") return invalid(op, `${name} must be a string, got ${typeof bound}`, at)
    // What no key can hold, no backend compares alike (PostgreSQL refuses NUL; a lone surrogate is sent as raw bytes to SQLite).
    if (!isWellFormedText(bound)) return invalid(op, `${name} must be well-formed Unicode without NUL characters`, at)
  }
  if (from !== undefined && to !== undefined && byteOrder(from, to) >= 0) return invalid(op, "the range must end (to, exclusive) after it starts (from)", at)
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_KEYS_PER_CALL) return invalid(op, `limit must be a whole number from 1 to ${MAX_KEYS_PER_CALL}, got ${String(limit)}`, at)
  if (order !== "asc" && order !== "desc") return invalid(op, `order must be "asc" or "desc", got ${String(order)}`, at)
  if (cursor !== undefined) {
    const problem = checkKey(ns, op, cursor)
    if (problem) return invalid(op, "cursor must be one a previous page returned", at)
  }
  return { from, to, limit, order, cursor }
}

/** The revision of an absent (or expired) key. */
export const ABSENT = "-"

const REVISION = /^(?:-|[0-9a-f]{64})$/

/** The revision of a stored row: a digest of its JSON text and both timestamps. */
export const revisionOf = (json: string, createdAt: number, expiresAt: number | undefined): string =>
  createHash("sha256")
    .update(JSON.stringify([json, createdAt, expiresAt ?? null]))
    .digest("hex")

/** Checks a compare-and-set's key, its revision (one `observe` could have returned) and the shape of its change. */
export const checkCompare = <A>(ns: ResolvedNamespace<A>, key: string, revision: unknown, change: unknown): StateStoreError | undefined => {
  const problem = checkKey(ns, "compareAndSet", key)
  if (problem) return problem
  const at = { owner: ns.owner, namespace: ns.namespace, key }
  if (typeof revision !== "string" || !REVISION.test(revision)) return invalid("compareAndSet", "revision must be one observe returned", at)
  const tag = (change as { _tag?: unknown } | null)?._tag
  return tag === "Set" || tag === "Delete" || tag === "Keep" ? undefined : invalid("compareAndSet", 'change must be { _tag: "Set", value }, { _tag: "Delete" } or { _tag: "Keep" }', at)
}
