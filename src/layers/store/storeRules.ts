/**
 * The rules every keyed-store backend enforces identically: names, keys, values, options,
 * TTL arithmetic, and the registry that refuses reopening a namespace with other options.
 *
 * @internal
 */
import { createHash } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { compileFlatDecode, compileFlatJson } from "./flatJson.js"
import { duration, oneOf, optional, wholeNumber } from "../settingsCheck.js"
import type { NamespaceOptions, OverflowPolicy, WriteOptions } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"

/** Owners (plugin ids): lowercase letters, digits, `.`, `_`, `-`; not starting with a symbol. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]*$/
/**
 * Namespaces: as owners, and upper-case letters too (OpenClaw's rule; names stay
 * case-sensitive). A retained namespace is stored as `@retained.` + its name, which no
 * bounded name can be.
 */
export const NAMESPACE_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]*$/
/** The prefix of a retained namespace's stored name. */
export const RETAINED_PREFIX = "@retained."
/** The longest owner or namespace, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 128
/** The longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 512

/** The default limit of an encoded value, in UTF-8 bytes of JSON (1 MiB, as OpenClaw's store). */
export const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
/** The largest value limit a store may be given (64 MiB). */
export const MAX_VALUE_BYTES_SETTING = 64 * 1024 * 1024

/** How the valid timestamps read in an error. */
const EPOCH_RANGE = "epoch milliseconds from 0 to 8640000000000000"

/** The latest instant a timestamp may name: the largest JS `Date` (8.64e15 ms), which also fits a PostgreSQL BIGINT. */
export const MAX_EPOCH_MILLIS = 8_640_000_000_000_000

/** Store-wide settings shared by all backends. */
export interface StoreSettings {
  /**
   * Live rows one owner may hold across all its namespaces; none by default. Every namespace
   * is bounded by its own `maxEntries`, so an owner's total is bounded already; an aggregate
   * cap can only refuse a namespace that is within its own bound (OpenClaw dropped its
   * aggregate limit after exactly that starved a namespace). When set, it is exact and a full
   * owner refuses new rows (`LimitExceeded`) — it never evicts a sibling namespace.
   */
  readonly ownerMaxEntries: number | undefined
  /**
   * How long an operation waits out contention — a SQLite file locked by another process, a
   * PostgreSQL deadlock or serialization failure — retrying from the fiber with short sleeps
   * (the event loop keeps running), before failing with `Busy` (default 5 s).
   */
  readonly lockWait: Duration.DurationInput
  /** How often the background sweeper deletes expired rows (default 1 minute). */
  readonly sweepInterval: Duration.DurationInput
  /** Rows deleted per sweep statement (default 200: one batch blocks the event loop about 10 ms). */
  readonly sweepBatchSize: number
  /**
   * The largest value the store takes, in UTF-8 bytes of its JSON (default 1 MiB, at most
   * 64 MiB); a larger one is `LimitExceeded`. Every process sharing a database should use
   * the same limit: it is checked where a value is written.
   */
  readonly maxValueBytes: number
}

/** The defaults of {@link StoreSettings}. */
export const defaultStoreSettings: StoreSettings = {
  ownerMaxEntries: undefined,
  lockWait: Duration.seconds(5),
  sweepInterval: Duration.minutes(1),
  sweepBatchSize: 200,
  maxValueBytes: DEFAULT_MAX_VALUE_BYTES
}

/** What each store setting must be (see {@link StoreSettings}), for settings given as JSON. */
export const storeSettingRules = {
  ownerMaxEntries: optional(wholeNumber(1)),
  lockWait: optional(duration),
  sweepInterval: optional(duration),
  sweepBatchSize: optional(wholeNumber(1)),
  maxValueBytes: optional(wholeNumber(1, MAX_VALUE_BYTES_SETTING)),
  clock: optional(oneOf("database", "application"))
} as const

/** The resolved, validated form of {@link NamespaceOptions}. */
export interface ResolvedNamespace<A> {
  readonly owner: string
  readonly namespace: string
  readonly schema: Schema.Schema<A, unknown>
  /** The schema's encoder and decoder, built once per namespace. */
  readonly encode: (value: unknown) => Either.Either<unknown, ParseResult.ParseIssue>
  readonly decode: (value: unknown) => Either.Either<A, ParseResult.ParseIssue>
  /** The JSON of a value the flat-struct fast path takes, or `undefined` (see flatJson.ts). */
  readonly flatJson: ((value: unknown) => string | undefined) | undefined
  /** Whether parsed JSON is already exactly what `decode` returns for it (the flat-struct fast path, see flatJson.ts); `undefined` when the Schema has none. */
  readonly flatDecode: ((parsed: unknown) => boolean) | undefined
  /** `Number.MAX_SAFE_INTEGER` for a retained namespace. */
  readonly maxEntries: number
  readonly ttlMillis: number | undefined
  readonly overflow: OverflowPolicy
  /** No bound, no TTL: writes with a TTL or an expiry are refused. */
  readonly retained: boolean
  /** The largest value's JSON, in UTF-8 bytes (the store's `maxValueBytes`). */
  readonly maxValueBytes: number
}

/** The UTF-8 length of `s`, in bytes. */
export const utf8Bytes = (s: string): number => Buffer.byteLength(s, "utf8")

/** An `InvalidInput` of `operation`. */
export const invalid = (operation: string, detail: string, where: { owner?: string; namespace?: string; key?: string } = {}) =>
  new StateStoreError({ reason: "InvalidInput", operation, detail, ...where })

const checkName = (what: "owner" | "namespace", name: unknown): string | undefined => {
  if (typeof name !== "string") return `${what} must be a string, got ${typeof name}`
  const pattern = what === "owner" ? NAME_PATTERN : NAMESPACE_PATTERN
  if (!pattern.test(name)) return `${what} ${JSON.stringify(name)} must match ${pattern.source}`
  if (utf8Bytes(name) > MAX_NAME_BYTES) return `${what} is ${utf8Bytes(name)} bytes, the limit is ${MAX_NAME_BYTES}`
  return undefined
}

/**
 * A TTL in whole milliseconds: fractions are rounded to the nearest millisecond (the same on
 * every backend); it must come to at least 1 ms and at most {@link MAX_EPOCH_MILLIS}.
 */
export const ttlToMillis = (ttl: Duration.DurationInput | undefined): Either.Either<number | undefined, string> => {
  if (ttl === undefined) return Either.right(undefined)
  // A plain number is milliseconds; one too large for Duration (which throws on it) is out of range anyway.
  if (typeof ttl === "number" && !(Math.abs(ttl) <= MAX_EPOCH_MILLIS)) return Either.left(`ttl must be a duration from 1 ms to ${MAX_EPOCH_MILLIS} ms, got ${String(ttl)}`)
  let decoded: Option.Option<Duration.Duration>
  try {
    decoded = Duration.decodeUnknown(ttl)
  } catch {
    decoded = Option.none()
  }
  if (Option.isNone(decoded)) return Either.left(`ttl ${String(ttl)} is not a duration (or is too large for one)`)
  const millis = Math.round(Duration.toMillis(decoded.value))
  if (!(millis >= 1) || millis > MAX_EPOCH_MILLIS) {
    return Either.left(`ttl must be a duration from 1 ms to ${MAX_EPOCH_MILLIS} ms (after rounding to whole milliseconds), got ${Duration.format(decoded.value)}`)
  }
  return Either.right(millis)
}

/** An epoch-ms timestamp as stored: rounded to a whole millisecond, within 0 … {@link MAX_EPOCH_MILLIS}; `undefined` if it cannot be one. */
export const epochMillis = (value: unknown): number | undefined => {
  if (typeof value !== "number" || !Number.isFinite(value)) return undefined
  // `|| 0`: -0.4 rounds to -0, which every backend but memory would store as 0.
  const rounded = Math.round(value) || 0
  return rounded >= 0 && rounded <= MAX_EPOCH_MILLIS ? rounded : undefined
}

/**
 * Validates namespace options; fails with `InvalidInput` naming the bad field. A retained
 * namespace takes no `maxEntries`, `ttl` or `overflow`, and resolves to its stored name.
 */
export const resolveNamespace = <A, I>(
  options: NamespaceOptions<A, I>,
  maxValueBytes: number = DEFAULT_MAX_VALUE_BYTES
): Effect.Effect<ResolvedNamespace<A>, StateStoreError> =>
  Effect.suspend((): Effect.Effect<ResolvedNamespace<A>, StateStoreError> => {
    const op = "open"
    const ownerProblem = checkName("owner", options.owner)
    if (ownerProblem) return Effect.fail(invalid(op, ownerProblem))
    const where = { owner: options.owner }
    const nsProblem = checkName("namespace", options.namespace)
    if (nsProblem) return Effect.fail(invalid(op, nsProblem, where))
    const at = { owner: options.owner, namespace: options.namespace }
    if (!Schema.isSchema(options.schema)) return Effect.fail(invalid(op, "schema must be an effect Schema", at))
    const retention = options.retention ?? "bounded"
    if (retention !== "bounded" && retention !== "retained") return Effect.fail(invalid(op, `retention must be "bounded" or "retained", got ${String(retention)}`, at))
    const codec = {
      owner: options.owner,
      schema: options.schema as Schema.Schema<A, unknown>,
      encode: ParseResult.encodeUnknownEither(options.schema as Schema.Schema<A, unknown>),
      decode: ParseResult.decodeUnknownEither(options.schema as Schema.Schema<A, unknown>),
      flatJson: compileFlatJson(options.schema.ast),
      flatDecode: compileFlatDecode(options.schema.ast),
      maxValueBytes
    }
    if (options.retention === "retained") {
      if (options.maxEntries !== undefined || options.ttl !== undefined || options.overflow !== undefined) {
        return Effect.fail(invalid(op, "a retained namespace takes no maxEntries, ttl or overflow (it keeps every row until deleted)", at))
      }
      return Effect.succeed({ ...codec, namespace: `${RETAINED_PREFIX}${options.namespace}`, maxEntries: Number.MAX_SAFE_INTEGER, ttlMillis: undefined, overflow: "evict-oldest", retained: true })
    }
    if (!Number.isSafeInteger(options.maxEntries) || options.maxEntries < 1) {
      return Effect.fail(invalid(op, `maxEntries must be a positive integer, got ${String(options.maxEntries)}`, at))
    }
    const overflow = options.overflow ?? "evict-oldest"
    if (overflow !== "evict-oldest" && overflow !== "reject-new") {
      return Effect.fail(invalid(op, `overflow must be "evict-oldest" or "reject-new", got ${String(overflow)}`, at))
    }
    const ttl = ttlToMillis(options.ttl)
    if (Either.isLeft(ttl)) return Effect.fail(invalid(op, ttl.left, at))
    return Effect.succeed({ ...codec, namespace: options.namespace, maxEntries: options.maxEntries, ttlMillis: ttl.right, overflow, retained: false })
  })

/**
 * Remembers the options each namespace was opened with, so a second `open` with other
 * options is refused instead of silently applying two policies to one set of rows.
 */
export const makeNamespaceRegistry = () => {
  const opened = new Map<string, ResolvedNamespace<unknown>>()
  const same = (a: ResolvedNamespace<unknown>, b: ResolvedNamespace<unknown>) =>
    a.maxEntries === b.maxEntries &&
    a.ttlMillis === b.ttlMillis &&
    a.overflow === b.overflow &&
    (a.schema.ast === b.schema.ast || String(a.schema.ast) === String(b.schema.ast))
  return <A>(resolved: ResolvedNamespace<A>): Effect.Effect<void, StateStoreError> =>
    Effect.suspend(() => {
      const id = `${resolved.owner}\u0000${resolved.namespace}`
      const previous = opened.get(id)
      if (previous === undefined) {
        opened.set(id, resolved as ResolvedNamespace<unknown>)
        return Effect.void
      }
      return same(previous, resolved as ResolvedNamespace<unknown>)
        ? Effect.void
        : Effect.fail(
            invalid("open", "namespace is already open with different options (maxEntries, ttl, overflow or schema)", {
              owner: resolved.owner,
              namespace: resolved.namespace
            })
          )
    })
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what it looks for
const NEEDS_A_LOOK = /[\u0000\uD800-\uDFFF]/

/**
 * Whether `key` is a valid key on every backend with no more checks: not empty, at most a
 * third of {@link MAX_KEY_BYTES} UTF-16 units (so within the byte limit, at three UTF-8 bytes a
 * unit at most), no NUL and no surrogate. The common case; `false` only says "look closer".
 */
export const isPlainKey = (key: string): boolean => key.length > 0 && key.length <= MAX_KEY_BYTES / 3 && !NEEDS_A_LOOK.test(key)

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Whether `text` is well-formed Unicode without NUL: what every backend stores and compares alike. */
export const isWellFormedText = (text: string): boolean => !NEEDS_A_LOOK.test(text) || (!text.includes("\u0000") && !LONE_SURROGATE.test(text))

/** Checks a key: a non-empty string of at most 512 UTF-8 bytes without NUL. */
export const checkKey = <A>(ns: ResolvedNamespace<A>, operation: string, key: unknown): StateStoreError | undefined => {
  // The common case — a short key with no NUL and no surrogate at all — needs no more checks.
  if (typeof key === "string" && isPlainKey(key)) return undefined
  const at = { owner: ns.owner, namespace: ns.namespace }
  if (typeof key !== "string") return invalid(operation, `key must be a string, got ${typeof key}`, at)
  if (key.length === 0) return invalid(operation, "key must not be empty", at)
  if (key.includes("\u0000")) return invalid(operation, "key must not contain NUL characters", at)
  if (LONE_SURROGATE.test(key)) return invalid(operation, "key must be well-formed Unicode (it contains a lone surrogate)", at)
  const bytes = utf8Bytes(key)
  if (bytes > MAX_KEY_BYTES) return invalid(operation, `key is ${bytes} bytes, the limit is ${MAX_KEY_BYTES}`, at)
  return undefined
}

/** A refused timestamp's `InvalidInput`. */
const refuseTimes = <A>(ns: ResolvedNamespace<A>, operation: string, detail: string) => invalid(operation, detail, { owner: ns.owner, namespace: ns.namespace })

/**
 * Resolves the timestamps of a write: explicit `expiresAt`, else `ttl`, else the namespace
 * TTL. Timestamps are whole epoch milliseconds (fractions rounded to the nearest) from 0 to
 * {@link MAX_EPOCH_MILLIS}, the same rule on every backend; anything else is `InvalidInput`.
 */
export const writeTimesOf = <A>(
  ns: ResolvedNamespace<A>,
  operation: string,
  now: number,
  options: WriteOptions | undefined
): { createdAt: number; expiresAt: number | undefined } | StateStoreError => {
  const createdAt = epochMillis(options?.createdAt ?? now)
  if (createdAt === undefined) return refuseTimes(ns, operation, `createdAt must be ${EPOCH_RANGE}, got ${String(options?.createdAt)}`)
  if (ns.retained) {
    return options?.expiresAt === undefined && options?.ttl === undefined
      ? { createdAt, expiresAt: undefined }
      : refuseTimes(ns, operation, "a retained namespace takes no ttl or expiresAt (its rows stay until deleted)")
  }
  if (options?.expiresAt !== undefined) {
    const expiresAt = epochMillis(options.expiresAt)
    return expiresAt === undefined ? refuseTimes(ns, operation, `expiresAt must be ${EPOCH_RANGE}, got ${String(options.expiresAt)}`) : { createdAt, expiresAt }
  }
  const ttl = ttlToMillis(options?.ttl)
  if (Either.isLeft(ttl)) return refuseTimes(ns, operation, ttl.left)
  const millis = ttl.right ?? ns.ttlMillis
  if (millis === undefined) return { createdAt, expiresAt: undefined }
  if (createdAt + millis > MAX_EPOCH_MILLIS) return refuseTimes(ns, operation, `the expiry (createdAt + ttl) would be past ${MAX_EPOCH_MILLIS}, the largest date`)
  return { createdAt, expiresAt: createdAt + millis }
}

/** {@link writeTimesOf} as an `Either`. */
export const writeTimes = <A>(
  ns: ResolvedNamespace<A>,
  operation: string,
  now: number,
  options: WriteOptions | undefined
): Either.Either<{ createdAt: number; expiresAt: number | undefined }, StateStoreError> => {
  const times = writeTimesOf(ns, operation, now, options)
  return times instanceof StateStoreError ? Either.left(times) : Either.right(times)
}

/**
 * The `LimitExceeded` of a write that found its namespace full (`reject-new`) or its owner at
 * `ownerMaxEntries`; the same words on every backend.
 */
export const capExceeded = <A>(
  ns: ResolvedNamespace<A>,
  ownerMaxEntries: number | undefined,
  operation: string,
  key: string | undefined,
  what: "namespace" | "owner"
): StateStoreError =>
  new StateStoreError({
    reason: "LimitExceeded",
    operation,
    detail:
      what === "namespace"
        ? `namespace is full (${ns.maxEntries} live entries, overflow "reject-new")`
        : `owner holds ${ownerMaxEntries} live entries, its cap (other namespaces are never evicted for it)`,
    owner: ns.owner,
    namespace: ns.namespace,
    ...(key === undefined ? {} : { key })
  })

/** Whether a row with this expiry is live at `now`. */
export const isLive = (expiresAt: number | undefined | null, now: number): boolean =>
  expiresAt === undefined || expiresAt === null || expiresAt > now

/**
 * Oldest first: by creation time, then key in UTF-8 byte order (as SQLite and PostgreSQL's
 * "C" collation compare) — the eviction and listing order of every backend.
 */
export const oldestFirst = (a: { createdAt: number; key: string }, b: { createdAt: number; key: string }): number =>
  a.createdAt - b.createdAt || Buffer.compare(Buffer.from(a.key, "utf8"), Buffer.from(b.key, "utf8"))

/** Collapses a batch to its last step per key (each key placed where its last step was). */
export const lastStepPerKey = <T extends { readonly key: string }>(ops: ReadonlyArray<T>): ReadonlyArray<T> => {
  // Most batches (a flush is already collapsed) name each key once: then they are their own answer.
  // Keys in strictly increasing order (time-ordered ids written in order) are distinct: one
  // comparison a step says so, without building the set (about a tenth of its cost).
  let i = 1
  while (i < ops.length) {
    const before = ops[i - 1]!.key
    const key = ops[i]!.key
    if (typeof before !== "string" || typeof key !== "string" || !(before < key)) break
    i++
  }
  if (i >= ops.length) return ops
  const seen = new Set<string>()
  for (const op of ops) seen.add(op.key)
  if (seen.size === ops.length) return ops
  const last = new Map<string, T>()
  for (const op of ops) {
    last.delete(op.key)
    last.set(op.key, op)
  }
  return [...last.values()]
}


/** The prefix of a key stored as a digest of the caller's id (see {@link storageKey}). */
export const DIGEST_PREFIX = "#sha256:"


/**
 * The key a channel cache stores an external id under: the id itself when the store takes
 * it as a key, else `#sha256:` + the SHA-256 of the id's UTF-16 code units (71 characters).
 * An id that itself starts with `#sha256:` is digested too, so a stored key starting with
 * the prefix is always a digest: two different ids never share a key.
 * A channel cache never refuses an id for its length or content: ids past 512 bytes, or with
 * NUL or lone surrogates, are tracked by their digest. Sync; the common case (a short id)
 * costs a length check and one regular-expression test.
 */
export const storageKey = (key: string): string => {
  const literal =
    key.length > 0 &&
    !key.startsWith(DIGEST_PREFIX) &&
    (isPlainKey(key) || (!key.includes("\u0000") && !LONE_SURROGATE.test(key) && utf8Bytes(key) <= MAX_KEY_BYTES))
  return literal ? key : `${DIGEST_PREFIX}${createHash("sha256").update(key, "utf16le").digest("hex")}`
}
