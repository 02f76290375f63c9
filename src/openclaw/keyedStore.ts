/**
 * One OpenClaw keyed store over a channel-state namespace: OpenClaw's argument rules (keys
 * trimmed, TTLs in whole milliseconds, ranges and comparisons checked) and its error codes,
 * each member one atomic operation of the keyed store.
 *
 * @internal
 */
import { createHash } from "node:crypto"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type Change, KeyedStore, MAX_KEYS_PER_CALL, type NamespaceHandle, type StoredEntry } from "../KeyedStore.js"
import { isPlainKey, MAX_KEY_BYTES, type ResolvedNamespace, resolveNamespace, utf8Bytes } from "../layers/store/storeRules.js"
import { encodeJson } from "../layers/store/valueRules.js"
import { StateStoreError } from "../StateStoreError.js"
import { fromStoreError, invalidInput, PluginStateStoreError, type PluginStateStoreOperation } from "./PluginStateStoreError.js"
import type { OpenAsyncKeyedStoreOptions, PluginStateEntry, PluginStateKeyedStore, PluginStateKeyRange, PluginStateObservation } from "./types.js"

/** What every store of one {@link createOpenClawState} shares. */
export interface AdapterContext {
  readonly pluginId: string
  readonly runtime: ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>
  /** Names the database in comparisons, so one from another database is refused. */
  readonly identity: string
  /** The SQLite file, for `path` on errors about it. */
  readonly path: string | undefined
  readonly maxValueBytes: number | undefined
}

const LONE_SURROGATES = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

const COMPARISON = /^1:([a-f0-9]{64}):([a-f0-9]{64}|-)$/

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

/** A key as OpenClaw takes it: trimmed, not empty, at most 512 UTF-8 bytes; lone surrogates become U+FFFD (as a SQLite TEXT column would store them). */
const normalizeKey = (operation: PluginStateStoreOperation, key: unknown): string | PluginStateStoreError => {
  if (typeof key !== "string") return invalidInput(operation, `plugin state entry key must be a string, got ${typeof key}`)
  const bare = key.trim()
  // The common case — short, no NUL, no surrogate — needs no more checks (a lookupMany takes a thousand keys).
  if (isPlainKey(bare)) return bare
  const trimmed = bare.replace(LONE_SURROGATES, "\uFFFD")
  if (trimmed === "") return invalidInput(operation, "plugin state entry key must not be empty")
  // PostgreSQL text cannot hold NUL: one rule on both backends.
  if (trimmed.includes("\u0000")) return invalidInput(operation, "plugin state entry key must not contain NUL characters (channel-state keeps keys portable to PostgreSQL)")
  if (utf8Bytes(trimmed) > MAX_KEY_BYTES) return invalidInput(operation, `plugin state entry key must be <= ${MAX_KEY_BYTES} bytes`)
  return trimmed
}

/** A TTL as OpenClaw takes it: a positive safe integer of milliseconds, none in a retained store. */
const checkTtl = (retained: boolean, ttlMs: unknown, operation: PluginStateStoreOperation = "register"): number | undefined | PluginStateStoreError => {
  if (ttlMs === undefined || ttlMs === null) return undefined
  if (retained) return invalidInput(operation, "Retained plugin state does not accept a TTL.")
  if (!Number.isSafeInteger(ttlMs) || (ttlMs as number) < 1) return invalidInput(operation, "plugin state ttlMs must be a positive safe integer")
  return ttlMs as number
}

/** A failure to open the namespace (reported with operation `open`, whichever member met it). */
class OpenFailure {
  constructor(readonly error: StateStoreError) {}
}

const entryOf = <T>(entry: StoredEntry<unknown>): PluginStateEntry<T> =>
  entry.expiresAt === undefined ? { key: entry.key, value: entry.value as T, createdAt: entry.createdAt } : { key: entry.key, value: entry.value as T, createdAt: entry.createdAt, expiresAt: entry.expiresAt }

/** The operation each member's errors carry (OpenClaw's names). */
const OPERATION_OF: { readonly [K in keyof PluginStateKeyedStore<unknown>]: PluginStateStoreOperation } = {
  observe: "lookup",
  compareAndApply: "register",
  register: "register",
  registerIfAbsent: "register",
  deleteIfEqual: "delete",
  lookup: "lookup",
  lookupMany: "lookup",
  consume: "consume",
  delete: "delete",
  entries: "entries",
  entriesInKeyRange: "entries",
  count: "count",
  clear: "clear"
}

const unreadable = (operation: PluginStateStoreOperation, error: unknown) =>
  invalidInput(operation, `plugin state arguments could not be read (${error instanceof Error ? error.name : typeof error} thrown while reading them)`)

/** A store whose every member rejects with `error`. */
const rejecting = <T>(error: PluginStateStoreError): PluginStateKeyedStore<T> =>
  Object.fromEntries(Object.keys(OPERATION_OF).map((name) => [name, () => Promise.reject(error)])) as unknown as PluginStateKeyedStore<T>

/** `store` with every member's synchronous throw (an argument whose getter throws, a hostile proxy) turned into a rejection. */
const neverThrowing = <T>(store: PluginStateKeyedStore<T>): PluginStateKeyedStore<T> =>
  Object.fromEntries(
    Object.entries(OPERATION_OF).map(([name, operation]) => {
      const member = store[name as keyof PluginStateKeyedStore<T>] as (...args: ReadonlyArray<unknown>) => Promise<unknown>
      return [
        name,
        (...args: ReadonlyArray<unknown>) => {
          try {
            return member(...args)
          } catch (error) {
            return Promise.reject(unreadable(operation, error))
          }
        }
      ]
    })
  ) as unknown as PluginStateKeyedStore<T>

/** Opens OpenClaw's keyed store `options` for the context's plugin. Never throws: a bad option makes every member reject with it; no member throws. */
export const openOpenClawStore = <T>(ctx: AdapterContext, options: OpenAsyncKeyedStoreOptions): PluginStateKeyedStore<T> => {
  try {
    return neverThrowing(makeOpenClawStore<T>(ctx, options))
  } catch (error) {
    return rejecting(unreadable("open", error))
  }
}

const makeOpenClawStore = <T>(ctx: AdapterContext, options: OpenAsyncKeyedStoreOptions): PluginStateKeyedStore<T> => {
  const retained = options?.retention === "retained"
  const namespace = typeof options?.namespace === "string" ? options.namespace.trim() : options?.namespace
  const openProblem = (): PluginStateStoreError | undefined => {
    if (typeof options !== "object" || options === null) return invalidInput("open", "plugin state store options must be an object")
    if (options.retention !== undefined && options.retention !== "bounded" && options.retention !== "retained") return invalidInput("open", 'plugin state retention must be "bounded" or "retained"')
    if (retained && (options.maxEntries !== undefined || options.overflowPolicy !== undefined || options.defaultTtlMs !== undefined)) {
      return invalidInput("open", "Retained plugin state does not accept count, overflow or TTL options.")
    }
    if (!retained && (!Number.isInteger(options.maxEntries) || options.maxEntries < 1)) return invalidInput("open", "plugin state maxEntries must be an integer >= 1")
    const ttl = checkTtl(retained, options.defaultTtlMs, "open")
    return ttl instanceof PluginStateStoreError ? ttl : undefined
  }
  const problem = openProblem()
  const storeOptions = retained
    ? { owner: ctx.pluginId, namespace: namespace as string, schema: Schema.Unknown, retention: "retained" as const }
    : {
        owner: ctx.pluginId,
        namespace: namespace as string,
        schema: Schema.Unknown,
        maxEntries: options?.maxEntries as number,
        ttl: options?.defaultTtlMs ?? undefined,
        overflow: options?.overflowPolicy
      }
  // Resolved here, synchronously, so values are checked and copied when a member is called.
  const resolved: Either.Either<ResolvedNamespace<unknown>, PluginStateStoreError> =
    problem === undefined
      ? Either.mapLeft(Effect.runSync(Effect.either(resolveNamespace(storeOptions, ctx.maxValueBytes))), (error) => fromStoreError(error, "open", "write"))
      : Either.left(problem)
  const opening = Effect.runSync(Effect.cached(Effect.flatMap(KeyedStore, (store) => store.open(storeOptions))))
  const storedNamespace = Either.match(resolved, { onLeft: () => "", onRight: (ns) => ns.namespace })
  const scopeOf = (key: string) => sha256(JSON.stringify([ctx.identity, ctx.pluginId, storedNamespace, key]))

  /** Runs `f` on the namespace: a Promise that resolves with its value or rejects with the OpenClaw error. */
  const call = <R>(operation: PluginStateStoreOperation, kind: "read" | "write", f: (h: NamespaceHandle<unknown>) => Effect.Effect<R, StateStoreError>): Promise<R> => {
    if (Either.isLeft(resolved)) return Promise.reject(resolved.left)
    const opened = Effect.mapError(opening, (error) => new OpenFailure(error))
    return ctx.runtime.runPromiseExit(Effect.flatMap(opened, f)).then((exit) => {
      if (Exit.isSuccess(exit)) return exit.value
      const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
      if (failure instanceof OpenFailure) throw fromStoreError(failure.error, "open", "write", ctx.path)
      const error = failure ?? new StateStoreError({ reason: kind === "read" ? "ReadFailed" : "WriteFailed", operation, detail: Cause.pretty(exit.cause) })
      throw fromStoreError(error, operation, kind, ctx.path)
    })
  }
  /** Checks and copies a value now (a caller changing it afterwards changes nothing stored). */
  const snapshot = (operation: PluginStateStoreOperation, key: string, value: unknown): unknown | PluginStateStoreError => {
    if (Either.isLeft(resolved)) return resolved.left
    const json = encodeJson(resolved.right, operation, key, value)
    return typeof json === "string" ? JSON.parse(json) : fromStoreError(json, operation, "write")
  }
  /** Validates a write's key, value and TTL, then runs it. */
  const write = <R>(key: string, value: unknown, ttlMs: unknown, f: (h: NamespaceHandle<unknown>, key: string, value: unknown, ttl: number | undefined) => Effect.Effect<R, StateStoreError>) => {
    const k = normalizeKey("register", key)
    if (k instanceof PluginStateStoreError) return Promise.reject(k)
    const ttl = checkTtl(retained, ttlMs)
    if (ttl instanceof PluginStateStoreError) return Promise.reject(ttl)
    const copy = snapshot("register", k, value)
    if (copy instanceof PluginStateStoreError) return Promise.reject(copy)
    return call("register", "write", (h) => f(h, k, copy, ttl))
  }
  const withKey = <R>(operation: PluginStateStoreOperation, kind: "read" | "write", key: string, f: (h: NamespaceHandle<unknown>, key: string) => Effect.Effect<R, StateStoreError>) => {
    const k = normalizeKey(operation, key)
    return k instanceof PluginStateStoreError ? Promise.reject(k) : call(operation, kind, (h) => f(h, k))
  }
  const observation = (key: string, entry: Option.Option<StoredEntry<unknown>>, revision: string): PluginStateObservation<T> => ({
    value: Option.getOrUndefined(Option.map(entry, (e) => e.value as T)),
    comparison: `1:${scopeOf(key)}:${revision}`
  })

  return {
    observe: (key) => withKey("lookup", "read", key, (h, k) => Effect.map(h.observe(k), (seen) => observation(k, seen.entry, seen.revision))),
    compareAndApply: (key, comparison, intent, compareOptions) => {
      const kind = intent?.operation
      if (kind !== "update" && kind !== "delete") return Promise.reject(invalidInput("register", "Plugin state comparison requires an update or delete intent."))
      const operation = kind === "update" ? "register" : "delete"
      const k = normalizeKey(operation, key)
      if (k instanceof PluginStateStoreError) return Promise.reject(k)
      const parsed = typeof comparison === "string" ? COMPARISON.exec(comparison) : null
      if (parsed === null) return Promise.reject(invalidInput(operation, "Plugin state comparison must be an observation returned by this store."))
      if ((compareOptions?.conditions?.length ?? 0) > 0) return Promise.reject(invalidInput(operation, "Plugin state comparison conditions are not supported by channel-state."))
      let change: Change<unknown>
      if (intent.operation === "update" && intent.action === "set") {
        const ttl = checkTtl(retained, intent.ttlMs)
        if (ttl instanceof PluginStateStoreError) return Promise.reject(ttl)
        const copy = snapshot("register", k, intent.value)
        if (copy instanceof PluginStateStoreError) return Promise.reject(copy)
        change = { _tag: "Set", value: copy, options: { ttl } }
      } else if (intent.action === "keep") change = { _tag: "Keep" }
      else if (intent.operation === "delete" && intent.action === "delete") change = { _tag: "Delete" }
      else return Promise.reject(invalidInput(operation, "Plugin state comparison has an invalid mutation action."))
      if (parsed[1] !== scopeOf(k)) return Promise.reject(invalidInput(operation, "Plugin state observation belongs to another database, namespace or key."))
      return call(operation, "write", (h) =>
        Effect.map(h.compareAndSet(k, parsed[2]!, change), (result) =>
          result._tag === "Conflict" ? { status: "conflict" as const, current: observation(k, result.current.entry, result.current.revision) } : { status: result._tag === "Applied" ? ("applied" as const) : ("unchanged" as const) }
        )
      )
    },
    register: (key, value, opts) => write(key, value, opts?.ttlMs, (h, k, v, ttl) => h.register(k, v, { ttl })),
    registerIfAbsent: (key, value, opts) => write(key, value, opts?.ttlMs, (h, k, v, ttl) => h.registerIfAbsent(k, v, { ttl })),
    deleteIfEqual: (key, expected) => {
      if (expected !== null && typeof expected !== "string" && typeof expected !== "number" && typeof expected !== "boolean") {
        return Promise.reject(invalidInput("delete", "plugin state conditional deletion requires a JSON scalar"))
      }
      if (typeof expected === "number" && !Number.isFinite(expected)) return Promise.reject(invalidInput("delete", "plugin state conditional deletion requires a JSON scalar"))
      return withKey("delete", "write", key, (h, k) => h.deleteIfEqual(k, expected))
    },
    lookup: (key) => withKey("lookup", "read", key, (h, k) => Effect.map(h.lookup(k), (value) => Option.getOrUndefined(value) as T | undefined)),
    lookupMany: (keys) => {
      if (!Array.isArray(keys)) return Promise.reject(invalidInput("lookup", "plugin state lookupMany takes an array of keys"))
      if (keys.length > MAX_KEYS_PER_CALL) return Promise.reject(invalidInput("lookup", `plugin state lookupMany accepts at most ${MAX_KEYS_PER_CALL} keys`))
      const normalized: Array<string> = []
      for (const key of keys) {
        const k = normalizeKey("lookup", key)
        if (k instanceof PluginStateStoreError) return Promise.reject(k)
        normalized.push(k)
      }
      if (normalized.length === 0) return Promise.resolve([])
      return call("lookup", "read", (h) =>
        Effect.map(h.lookupMany(normalized), (results) =>
          results.map((result) =>
            Either.isRight(result) ? { ok: true as const, value: Option.getOrUndefined(result.right) as T | undefined } : { ok: false as const, error: fromStoreError(result.left, "lookup", "read", ctx.path) }
          )
        )
      )
    },
    consume: (key) => withKey("consume", "read", key, (h, k) => Effect.map(h.consume(k), (value) => Option.getOrUndefined(value) as T | undefined)),
    delete: (key) => withKey("delete", "write", key, (h, k) => h.delete(k)),
    entries: () => call("entries", "read", (h) => Effect.map(h.entries, (entries) => entries.map(entryOf<T>))),
    entriesInKeyRange: (range: PluginStateKeyRange) => {
      const { keyStartInclusive: from, keyEndExclusive: to, limit, order = "asc" } = range ?? ({} as PluginStateKeyRange)
      if (!Number.isSafeInteger(limit) || limit < 1) return Promise.reject(invalidInput("entries", "Plugin state key-range limit must be a positive safe integer."))
      if (typeof from !== "string" || typeof to !== "string" || Buffer.compare(Buffer.from(from), Buffer.from(to)) >= 0) {
        return Promise.reject(invalidInput("entries", "Plugin state key range must have an increasing exclusive upper bound."))
      }
      if (order !== "asc" && order !== "desc") return Promise.reject(invalidInput("entries", "Plugin state key-range order must be asc or desc."))
      if (from.includes("\u0000") || to.includes("\u0000")) return Promise.reject(invalidInput("entries", "Plugin state key-range bounds must not contain NUL characters."))
      // Pages of at most MAX_KEYS_PER_CALL, resumed by cursor: one statement each.
      return call("entries", "read", (h) =>
        Effect.gen(function* () {
          const found: Array<PluginStateEntry<T>> = []
          let cursor: string | undefined
          do {
            const page = yield* h.entriesInRange({ from, to, order, cursor, limit: Math.min(MAX_KEYS_PER_CALL, limit - found.length) })
            for (const entry of page.entries) found.push(entryOf<T>(entry))
            cursor = page.cursor
          } while (cursor !== undefined && found.length < limit)
          return found
        })
      )
    },
    count: () => call("count", "read", (h) => h.size),
    clear: () => call("clear", "write", (h) => Effect.asVoid(h.clear))
  }
}
