/**
 * A keyed store that opens its database on demand and again when needed: after the SQLite
 * file was removed or replaced, or when the database could not be reached at start and has
 * come back. Namespaces are validated and handed out at once; each operation runs on the
 * database open at that moment.
 *
 * @internal
 */
import { fairly, fairlyUnlessInline } from "../fairScheduler.js"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { KeyedStore, type NamespaceHandle, type NamespaceOptions, type StoreBackend } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { makeInFlight } from "./inFlight.js"
import { realSleep } from "./retry.js"
import { unexpectedFailure } from "./handleGuard.js"
import { makeNamespaceRegistry, resolveNamespace } from "./storeRules.js"

/** One opened database: its store, and whether it no longer matches what it was opened from. */
export interface OpenedDatabase {
  readonly store: KeyedStore["Type"]
  /**
   * Why this database must be reopened before the next operation (said in the log), or
   * `undefined` while it is fine. Checked before every operation, so it must be cheap (one
   * `stat` at most).
   */
  readonly stale: () => string | undefined
}

/** What to open, and whether a failed first open is retried later. */
export interface ReopeningOptions {
  readonly backend: StoreBackend
  /** Where, for log lines (never a password). */
  readonly location: string
  /** Opens the database in the given scope. */
  readonly open: (scope: Scope.Scope) => Effect.Effect<OpenedDatabase, StateStoreError>
  /**
   * `false` (default): the first open must succeed, or building the store fails with its
   * error. `true`: a failed first open is logged and retried on use, operations failing with
   * `Unavailable` meanwhile — for plugins that must start while the database is down.
   */
  readonly retryOpen?: boolean | undefined
  /**
   * Whether the store's reads never wait once the database is open (SQLite with its reader
   * connection): they then skip the fair scheduler's switch while operations may run inline
   * (see `fairlyUnlessInline`). Their waiting paths are fair on their own.
   */
  readonly readsNeverWait?: boolean | undefined
  /** The least time between two failed open attempts (default 1 s); operations in between fail at once. */
  readonly retryAfter?: Duration.DurationInput | undefined
}

/** How long closing waits for running operations before it closes the connections anyway. */
const CLOSE_WAIT_MILLIS = 5_000

/** Builds the store in the current scope; every database it opens is closed with it. */
export const make = (options: ReopeningOptions): Effect.Effect<KeyedStore["Type"], StateStoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const outer = yield* Effect.scope
    const retryAfter = Duration.toMillis(options.retryAfter ?? Duration.seconds(1))
    const registerNamespace = makeNamespaceRegistry()
    const opening = yield* Effect.makeSemaphore(1)
    let current: { readonly db: OpenedDatabase; readonly scope: Scope.CloseableScope } | undefined
    let generation = 0
    let lastFailure: { readonly at: number; readonly error: StateStoreError } | undefined
    // Every database is opened in a scope forked from `databases`, which the finalizer below
    // closes itself: first no new operation may start (`closed`), then the operations still
    // running finish (bounded), and only then do the connections close — a query waiting for
    // a pooled connection when the pool ends would otherwise never settle.
    const databases = yield* Scope.fork(outer, ExecutionStrategy.sequential)
    let closed = false
    const inFlight = makeInFlight()
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        closed = true
        if (inFlight.running() > 0) yield* Effect.interruptible(Effect.raceFirst(inFlight.drained, realSleep(CLOSE_WAIT_MILLIS)))
        yield* Scope.close(databases, Exit.void)
      })
    )
    const closedError = new StateStoreError({ reason: "Unavailable", operation: "open", detail: `the store at ${options.location} is closed (its runtime was disposed)` })
    /** Runs an operation, counted while it runs so that closing waits for it. */
    const tracked = inFlight.tracked

    /**
     * An open failure, as operations see it while the database cannot be opened: an outage
     * (`Unavailable`) — except contention, which stays `Busy` (another process holds the
     * database: a claim must not be decided locally because of it).
     */
    const unavailable = (error: StateStoreError) =>
      new StateStoreError({
        ...error,
        reason: error.reason === "Busy" ? "Busy" : "Unavailable",
        detail: `cannot open the database at ${options.location} (${error.reason}): ${error.detail}`
      })

    const openFresh = Effect.gen(function* () {
      const scope = yield* Scope.fork(databases, ExecutionStrategy.sequential)
      const db = yield* options.open(scope).pipe(
        Effect.catchAllDefect((defect) => Effect.fail(new StateStoreError({ ...unexpectedFailure("open", "write", defect), reason: "OpenFailed" }))),
        Effect.tapError(() => Scope.close(scope, Exit.void))
      )
      return { db, scope }
    })

    const connect = opening.withPermits(1)(
      Effect.gen(function* () {
        const stale = current?.db.stale()
        if (current !== undefined && stale === undefined) return current
        const now = yield* Clock.currentTimeMillis
        if (lastFailure !== undefined && now - lastFailure.at < retryAfter) return yield* Effect.fail(lastFailure.error)
        // Said once per outage: while reopening keeps failing, the failure itself is what is logged.
        if (current !== undefined && lastFailure === undefined) {
          yield* Effect.logWarning(`channel-state: the database at ${options.location} ${stale ?? "must be reopened"}; reopening it`)
        }
        const opened = yield* Effect.either(openFresh)
        if (opened._tag === "Left") {
          const error = unavailable(opened.left)
          if (lastFailure === undefined) yield* Effect.logWarning(`channel-state: ${error.detail}; will retry on use`)
          lastFailure = { at: now, error }
          return yield* Effect.fail(error)
        }
        if (lastFailure !== undefined) yield* Effect.logInfo(`channel-state: the database at ${options.location} is open again`)
        lastFailure = undefined
        const previous = current
        current = opened.right
        generation++
        if (previous !== undefined) yield* Scope.close(previous.scope, Exit.void)
        return opened.right
      })
    )
    const database = Effect.suspend(() =>
      closed ? Effect.fail(closedError) : current !== undefined && current.db.stale() === undefined ? Effect.succeed(current) : connect
    )

    const first = yield* Effect.either(openFresh)
    if (first._tag === "Left") {
      if (options.retryOpen !== true) return yield* Effect.fail(first.left)
      lastFailure = { at: yield* Clock.currentTimeMillis, error: unavailable(first.left) }
      yield* Effect.logWarning(`channel-state: ${lastFailure.error.detail}; will retry on use`)
    } else {
      current = first.right
      generation = 1
    }

    const open = <A, I>(namespaceOptions: NamespaceOptions<A, I>): Effect.Effect<NamespaceHandle<A>, StateStoreError> =>
      Effect.gen(function* () {
        const ns = yield* resolveNamespace(namespaceOptions)
        yield* registerNamespace(ns)
        let opened: { readonly generation: number; readonly handle: NamespaceHandle<A> } | undefined
        /** The namespace on the database open now (opened there on first use after each (re)open). */
        const handle = Effect.flatMap(database, (db) =>
          opened !== undefined && opened.generation === generation
            ? Effect.succeed(opened.handle)
            : Effect.map(db.db.store.open(namespaceOptions), (fresh) => {
                opened = { generation, handle: fresh }
                return fresh
              })
        )
        /** The namespace's handle when the database open now is fine and the namespace is open on it (no reopening to wait for). */
        const ready = (): NamespaceHandle<A> | undefined =>
          !closed && opened !== undefined && opened.generation === generation && current !== undefined && current.db.stale() === undefined ? opened.handle : undefined
        // Every failure is typed: a throw from a file-system check becomes a failure too, never a
        // defect. A (re)opening waits (for the opening lock, for the database): fair on its own,
        // even under a read that runs inline.
        const attempt = <R>(f: (h: NamespaceHandle<A>) => Effect.Effect<R, StateStoreError>) =>
          Effect.catchAllDefect(
            Effect.suspend(() => {
              const h = ready()
              return h === undefined ? fairly(Effect.flatMap(handle, f)) : f(h)
            }),
            (defect) => Effect.fail(unexpectedFailure("open", "write", defect, { owner: ns.owner, namespace: ns.namespace }))
          )
        // A failure that made the database stale (its connection must be replaced) is tried
        // once more, on the reopened database.
        const tried = <R>(f: (h: NamespaceHandle<A>) => Effect.Effect<R, StateStoreError>) =>
          tracked(Effect.catchIf(attempt(f), () => !closed && current !== undefined && current.db.stale() !== undefined, () => attempt(f)))
        const via = <R>(f: (h: NamespaceHandle<A>) => Effect.Effect<R, StateStoreError>) => fairly(tried(f))
        /** A read: on a store whose reads never wait, fair only past the inline window (its reopening is fair in `attempt`). */
        const viaRead = !options.readsNeverWait ? via : <R>(f: (h: NamespaceHandle<A>) => Effect.Effect<R, StateStoreError>) => fairlyUnlessInline(tried(f))
        return {
          owner: ns.owner,
          namespace: ns.namespace,
          register: (key, value, writeOptions) => via((h) => h.register(key, value, writeOptions)),
          registerIfAbsent: (key, value, writeOptions) => via((h) => h.registerIfAbsent(key, value, writeOptions)),
          replaceIfEqual: (key, expected, value, writeOptions) => via((h) => h.replaceIfEqual(key, expected, value, writeOptions)),
          deleteIfEqual: (key, expected) => via((h) => h.deleteIfEqual(key, expected)),
          lookup: (key) => viaRead((h) => h.lookup(key)),
          lookupEntry: (key) => viaRead((h) => h.lookupEntry(key)),
          consume: (key) => via((h) => h.consume(key)),
          delete: (key) => via((h) => h.delete(key)),
          writeBatch: (ops) => via((h) => h.writeBatch(ops)),
          lookupMany: (keys) => viaRead((h) => h.lookupMany(keys)),
          deleteMany: (keys) => via((h) => h.deleteMany(keys)),
          entriesInRange: (range) => viaRead((h) => h.entriesInRange(range)),
          observe: (key) => viaRead((h) => h.observe(key)),
          compareAndSet: (key, revision, change) => via((h) => h.compareAndSet(key, revision, change)),
          entries: viaRead((h) => h.entries),
          size: viaRead((h) => h.size),
          clear: via((h) => h.clear)
        }
      })

    return KeyedStore.of({ backend: options.backend, open })
  })
