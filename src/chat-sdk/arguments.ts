/**
 * The argument rules of the state adapter: what each member takes. A refused argument throws
 * a {@link ChatStateError} naming it, which the member turns into its rejection before
 * anything is read or written.
 *
 * @internal
 */
import type { Lock } from "chat"
import { MAX_EPOCH_MILLIS } from "../layers/store/storeRules.js"
import { ChatStateError, type ChatStateOperation } from "./ChatStateError.js"

/** The longest TTL taken, in milliseconds (about 317 years: far inside what a timestamp can hold). */
export const MAX_TTL_MS = 10_000_000_000_000

const describe = (value: unknown): string => (value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "number" ? String(value) : typeof value)

const refuse = (operation: ChatStateOperation, message: string): never => {
  throw new ChatStateError("InvalidArgument", operation, message)
}

/** A thread id or key: any string (long ones are digested, see keys.ts). */
export const text = (operation: ChatStateOperation, name: string, value: unknown): string =>
  typeof value === "string" ? value : refuse(operation, `${name} must be a string, got ${describe(value)}`)

/** A required TTL (locks): a positive number of milliseconds, rounded up to a whole one. */
export const requiredTtl = (operation: ChatStateOperation, value: unknown): number =>
  typeof value === "number" && value > 0 && value <= MAX_TTL_MS ? Math.ceil(value) : refuse(operation, `ttlMs must be a positive number of milliseconds up to ${MAX_TTL_MS}, got ${describe(value)}`)

/** An optional TTL (cache, lists): none, `0` (no expiry, as the memory adapter reads it) or a positive number of milliseconds. */
export const optionalTtl = (operation: ChatStateOperation, value: unknown): number | undefined =>
  value === undefined || value === null || value === 0 ? undefined : requiredTtl(operation, value)

/** A required bound (a queue's `maxSize`): a positive whole number. */
export const positiveWhole = (operation: ChatStateOperation, name: string, value: unknown): number =>
  Number.isSafeInteger(value) && (value as number) > 0 ? (value as number) : refuse(operation, `${name} must be a positive whole number, got ${describe(value)}`)

/** A length bound: none, `0` (unbounded, as the memory adapter reads it) or a positive whole number. */
export const optionalLength = (operation: ChatStateOperation, name: string, value: unknown): number | undefined =>
  value === undefined || value === null || value === 0 ? undefined : positiveWhole(operation, name, value)

/** A lock as `acquireLock` returned it: its thread id and token are what count. */
export const lock = (operation: ChatStateOperation, value: unknown): Lock => {
  if (typeof value !== "object" || value === null) return refuse(operation, `lock must be the object acquireLock returned, got ${describe(value)}`)
  const { threadId, token, expiresAt } = value as Partial<Lock>
  if (typeof threadId !== "string") return refuse(operation, `lock.threadId must be a string, got ${describe(threadId)}`)
  if (typeof token !== "string" || token === "") return refuse(operation, `lock.token must be a non-empty string, got ${describe(token)}`)
  return { threadId, token, expiresAt: typeof expiresAt === "number" ? expiresAt : 0 }
}

/**
 * A value as the Chat SDK's Redis and PostgreSQL adapters keep it: its JSON (`toJSON` called,
 * `undefined` properties dropped, dates as ISO strings), copied now, so a caller changing it
 * afterwards changes nothing stored.
 */
export const json = (operation: ChatStateOperation, name: string, value: unknown): unknown => {
  let encoded: string | undefined
  try {
    encoded = JSON.stringify(value)
  } catch (error) {
    throw new ChatStateError("InvalidValue", operation, `${name} is not JSON (${error instanceof Error ? error.message : String(error)})`)
  }
  if (encoded === undefined) throw new ChatStateError("InvalidValue", operation, `${name} is not JSON (it encodes to nothing: ${describe(value)})`)
  return JSON.parse(encoded)
}

/** A queue entry: a JSON object whose `expiresAt` is a number of epoch milliseconds; returns its JSON copy. */
export const queueEntry = (operation: ChatStateOperation, value: unknown): { readonly entry: unknown; readonly expiresAt: number } => {
  const expiresAt = (value as { expiresAt?: unknown } | null)?.expiresAt
  if (typeof value !== "object" || value === null || typeof expiresAt !== "number" || !Number.isFinite(expiresAt) || expiresAt < 0 || expiresAt > MAX_EPOCH_MILLIS) {
    return refuse(operation, `entry must be a queue entry whose expiresAt is epoch milliseconds (0 to ${MAX_EPOCH_MILLIS}), got ${describe(value)}`)
  }
  return { entry: json(operation, "entry", value), expiresAt }
}
