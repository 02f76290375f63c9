/**
 * The persistent half of a cache: a write-behind queue whose one owner is a background
 * flusher fiber, and the guard that turns every store failure into a counted, logged answer
 * from memory (or, for decisions, a typed failure the caller turns into its policy).
 *
 * Lifetime: the flusher writes what is queued one flush interval after it is queued; its
 * timers never keep the process alive, and when the event loop runs dry (`beforeExit`) it
 * writes what is still queued at once. Closing the scope tells the flusher to finish: it
 * writes everything queued or in flight, bounded by `shutdownFlushTimeout`; what that bound
 * cuts off is counted and logged as lost.
 *
 * @internal
 */
import { fairly } from "../fairScheduler.js"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import type { BatchOp, NamespaceHandle } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { realSleep } from "../store/retry.js"
import type { CacheMetrics } from "./CacheMetrics.js"
import { makeFailureLog } from "./failureLog.js"
import { backgroundSleep, onBeforeExit, yieldToEventLoop } from "../lifetime.js"
import { WriteQueue } from "./writeQueue.js"
import { duration, optional, wholeNumber } from "../settingsCheck.js"

/** Tuning of the write-behind mirror. Every field has a default. */
export interface MirrorSettings {
  /** How long a queued change waits for others to join its batch (default 100 ms). About this much is lost on a crash. */
  readonly flushInterval: Duration.DurationInput
  /** Writes per store transaction (default 1 000). */
  readonly maxBatch: number
  /** Distinct queued keys before changes to new keys are dropped and counted (default 10 000); the caller never waits. */
  readonly maxQueue: number
  /** Consecutive outages (not caller mistakes, not contention) before the mirror stops calling the store for a while (default 3). */
  readonly failuresBeforeBackoff: number
  /** First back-off pause (default 1 s), doubled per further outage up to `backoffMax` (default 30 s). */
  readonly backoffBase: Duration.DurationInput
  readonly backoffMax: Duration.DurationInput
  /** How long shutdown waits for the queue to be written (default 5 s, real time). */
  readonly shutdownFlushTimeout: Duration.DurationInput
  /** A failure burst ends after this long without failures; it is summarised at most this often (default 1 minute). */
  readonly failureLogInterval: Duration.DurationInput
}

/** The defaults of {@link MirrorSettings}. */
export const defaultMirrorSettings: MirrorSettings = {
  flushInterval: Duration.millis(100),
  maxBatch: 1000,
  maxQueue: 10_000,
  failuresBeforeBackoff: 3,
  backoffBase: Duration.seconds(1),
  backoffMax: Duration.seconds(30),
  shutdownFlushTimeout: Duration.seconds(5),
  failureLogInterval: Duration.minutes(1)
}

/** What each mirror setting must be (see {@link MirrorSettings}), for settings given as JSON. */
export const mirrorSettingRules = {
  flushInterval: optional(duration),
  maxBatch: optional(wholeNumber(1)),
  maxQueue: optional(wholeNumber(1)),
  failuresBeforeBackoff: optional(wholeNumber(1)),
  backoffBase: optional(duration),
  backoffMax: optional(duration),
  shutdownFlushTimeout: optional(duration),
  failureLogInterval: optional(duration)
} as const

/** Who is mirroring, for logs and metrics. */
export interface MirrorIdentity {
  readonly plugin: string
  readonly feature: string
}

/** A store failure that made the mirror answer without the store. */
const backingOffError = (operation: string, namespace: string) =>
  new StateStoreError({
    reason: "Unavailable",
    operation,
    namespace,
    detail: "not tried: the store is being left alone after repeated failures (back-off); it is probed again later"
  })

/** A queued upsert: a batch step whose expiry is set, so it is also a timed entry. */
type QueuedWrite<A> = Extract<BatchOp<A>, { readonly _tag: "Register" }> & { readonly expiresAt: number }

/** How a flush ended: everything written, or the store contended (`Busy`), or out of reach / backing off. */
type FlushOutcome = "written" | "contended" | "outage"

/** A pause between attempts to write the queue at shutdown while the store fails. */
const SHUTDOWN_RETRY_MILLIS = 50

/**
 * Starts the mirror of `handle` in the current scope: the flusher fiber, and a finalizer that
 * has it write everything queued (bounded by `shutdownFlushTimeout`) before the scope closes.
 */
export const makeStoreMirror = <A>(handle: NamespaceHandle<A>, identity: MirrorIdentity, metrics: CacheMetrics, overrides: Partial<MirrorSettings> = {}) =>
  Effect.gen(function* () {
    const settings = { ...defaultMirrorSettings, ...overrides }
    const annotations = { plugin: identity.plugin, feature: identity.feature, namespace: handle.namespace }
    const failures = makeFailureLog(settings, metrics, annotations)
    const queue = new WriteQueue<A>(settings.maxQueue, metrics.dropped)

    /**
     * Runs a store operation and hands back its outcome, never failing: a failure is counted,
     * logged once per burst (saying `consequence`) and — an outage — counted toward back-off.
     * While backing off the store is not called, and the outcome is an `Unavailable` failure.
     */
    const attempt = <R>(operation: string, effect: Effect.Effect<R, StateStoreError>, consequence: (error: StateStoreError) => string) =>
      Effect.flatMap(failures.backingOff, (paused) =>
        paused
          ? Effect.succeed<Either.Either<R, StateStoreError>>(Either.left(backingOffError(operation, handle.namespace)))
          : Effect.either(effect).pipe(
              Effect.tap((outcome) => (Either.isRight(outcome) ? failures.recovered : failures.report(operation, outcome.left, consequence(outcome.left)))),
              Effect.annotateLogs(annotations)
            )
      )

    /** Runs a store operation; on failure (or while backing off) answers `fallback`. Never fails. */
    const guard = <R>(operation: string, effect: Effect.Effect<R, StateStoreError>, fallback: R): Effect.Effect<R> =>
      Effect.map(
        attempt(operation, effect, () => "serving from memory"),
        Either.getOrElse(() => fallback)
      )

    // The flusher sleeps on `work` while there is nothing to do, so an idle cache schedules no
    // timers (and TestClock can jump hours without stepping through flushes). `now` cuts the
    // flush interval short: at shutdown, and when the event loop runs dry.
    const work = yield* Effect.makeLatch(false)
    const now = yield* Effect.makeLatch(false)
    let workSignalled = false
    const signalWork = () => {
      if (workSignalled) return
      workSignalled = true
      work.unsafeOpen()
    }
    let stopping = false
    let stopped = false

    /**
     * Writes what is queued, in batches of `maxBatch`. `force` ignores the back-off. Whatever
     * was not written — a failed batch, or an interruption — goes back to the queue. Refused
     * changes are dropped alone, counted by reason and logged. `true` unless the store failed.
     */
    const flush = (force: boolean): Effect.Effect<FlushOutcome> =>
      Effect.gen(function* () {
        if (queue.size === 0) return "written"
        if (!force && (yield* failures.backingOff)) return "outage"
        // Taking the batch into flight and guarding it are one uninterruptible step: an
        // interruption between them would lose the batch and leave its waiters hanging.
        return yield* Effect.uninterruptibleMask((restore) => {
          const ops = queue.startFlight()
          let written = 0
          const writeAll = Effect.gen(function* () {
            while (written < ops.length) {
              // Timers and I/O run between batches (SQLite batches are synchronous).
              if (written > 0) yield* yieldToEventLoop
              const chunk = ops.slice(written, written + settings.maxBatch)
              const began = performance.now()
              const outcome = yield* Effect.either(handle.writeBatch(chunk))
              if (Either.isLeft(outcome)) {
                yield* failures.report("flush", outcome.left, "the batch stays queued and is retried")
                queue.putBack(ops.slice(written))
                return outcome.left.reason === "Busy" ? ("contended" as const) : ("outage" as const)
              }
              written += chunk.length
              yield* failures.recovered
              for (const refused of outcome.right.refused) {
                metrics.dropped(refused.error.reason === "LimitExceeded" || refused.error.reason === "Corrupt" ? refused.error.reason : "InvalidInput", 1)
                yield* failures.report("flush", refused.error, "this write was refused by the store and dropped; the rest of its batch landed")
              }
              yield* metrics.flushed(chunk.length - outcome.right.refused.length, performance.now() - began)
            }
            return "written" as const
          })
          return restore(writeAll).pipe(
            Effect.onInterrupt(() => Effect.sync(() => queue.putBack(ops.slice(written)))),
            Effect.ensuring(Effect.suspend(() => queue.endFlight()))
          )
        })
      }).pipe(Effect.withSpan("StoreMirror.flush", { attributes: annotations }), Effect.annotateLogs(annotations))

    /** At shutdown: write until the queue is empty, retrying a failing store (until the finalizer's bound). */
    const drain: Effect.Effect<void> = Effect.suspend(() =>
      queue.size === 0
        ? Effect.void
        : Effect.flatMap(flush(true), (outcome) => Effect.zipRight(outcome === "written" ? Effect.void : realSleep(SHUTDOWN_RETRY_MILLIS), drain))
    )

    // One round: wait for work, let it gather for one interval (or less when `now` opens),
    // write it, publish the counters; what could not be written signals the next round.
    const round = Effect.gen(function* () {
      yield* work.await
      if (!stopping) yield* Effect.raceFirst(backgroundSleep(settings.flushInterval), now.await)
      work.unsafeClose()
      now.unsafeClose()
      workSignalled = false
      const outcome = yield* flush(false)
      yield* metrics.publish
      if (queue.size === 0) exitingSince = undefined
      else if (exitingSince !== undefined && outcome === "contended") yield* keepAliveWhileContended
      if (queue.size > 0) signalWork()
    })
    const flusher = Effect.gen(function* () {
      while (!stopping) yield* round
      yield* drain
    })

    const shutdownBound = Duration.toMillis(settings.shutdownFlushTimeout)
    // When the event loop runs dry: write what is queued now — unless the store is being left
    // alone after outages (the process then exits; what is queued is lost, as on a crash).
    // While the store is only contended, the process is kept alive (a referenced timer) for up
    // to `shutdownFlushTimeout`, retrying, and what is still queued then is logged as lost.
    const clock = yield* Effect.clock
    let exitingSince: number | undefined
    let exitGiveUpLogged = false
    const keepAliveWhileContended = Effect.suspend(() => {
      if (performance.now() - (exitingSince ?? 0) < shutdownBound) return Effect.zipRight(realSleep(SHUTDOWN_RETRY_MILLIS), Effect.sync(() => now.unsafeOpen()))
      if (exitGiveUpLogged) return Effect.void
      exitGiveUpLogged = true
      return Effect.logWarning(
        `channel-state: the process is ending without dispose() while the store stays contended; ${queue.size} queued writes are lost`
      ).pipe(Effect.annotateLogs(annotations))
    })
    const stopBeforeExit = onBeforeExit(() => {
      if (queue.size > 0 && !stopping && !failures.backingOffAt(clock.unsafeCurrentTimeMillis())) {
        exitingSince ??= performance.now()
        now.unsafeOpen()
        signalWork()
      }
    })
    // Forked from an uninterruptible acquire: the flusher itself must stay interruptible (its
    // races cut sleeps short; the shutdown bound interrupts it), and so must the bound's race.
    yield* Effect.acquireRelease(Effect.forkDaemon(fairly(Effect.interruptible(flusher))), (fiber) =>
      Effect.gen(function* () {
        stopBeforeExit()
        stopping = true
        now.unsafeOpen()
        signalWork()
        const finished = yield* Effect.interruptible(Effect.raceFirst(Effect.as(Fiber.await(fiber), true), Effect.as(realSleep(shutdownBound), false)))
        if (!finished) yield* Fiber.interrupt(fiber)
        stopped = true
        const lost = queue.dropAll("shutdown")
        yield* metrics.publish
        if (lost > 0) {
          yield* Effect.logWarning(
            `channel-state: ${lost} queued writes were not written at shutdown (the store did not take them within ${Duration.format(settings.shutdownFlushTimeout)}); they are lost`
          ).pipe(Effect.annotateLogs(annotations))
        }
      })
    )

    // A change made after the flusher finished can only be dropped: said once, in the log.
    const runtime = yield* Effect.runtime<never>()
    let droppedAfterStop = 0
    const enqueue = <Op extends BatchOp<A>>(op: Op): Op => {
      if (stopped) {
        metrics.dropped("shutdown", 1)
        if (droppedAfterStop++ === 0) {
          Runtime.runFork(runtime)(
            Effect.logWarning("channel-state: a change was made after the runtime was disposed; it is not written (counted as dropped, reason shutdown)").pipe(
              Effect.annotateLogs(annotations)
            )
          )
        }
        return op
      }
      if (queue.enqueue(op)) {
        metrics.stats.queuedWrites++
        signalWork()
      }
      return op
    }

    return {
      handle,
      guard,
      attempt,
      /**
       * Queues an upsert with its original timestamps (conditional with `ifAbsentOr`) and
       * returns the queued step (a timed entry: memory may keep the same object). Sync, O(1),
       * never blocks or throws.
       */
      register: (key: string, value: A, createdAt: number, expiresAt: number, ifAbsentOr?: A) =>
        enqueue<QueuedWrite<A>>(
          ifAbsentOr === undefined ? { _tag: "Register", key, value, createdAt, expiresAt } : { _tag: "Register", key, value, createdAt, expiresAt, ifAbsentOr }
        ),
      /** Queues a delete (conditional with `ifEqual`). Sync, O(1), never blocks or throws. */
      delete: (key: string, ifEqual?: A): void => {
        enqueue(ifEqual === undefined ? { _tag: "Delete", key } : { _tag: "Delete", key, ifEqual })
      },
      /** The newest change to `key` not yet committed (queued or being written), if any. O(1). */
      pending: (key: string): BatchOp<A> | undefined => queue.pending(key),
      /** Whether the flush running now is writing a change to `key`. */
      isBeingWritten: (key: string): boolean => queue.isBeingWritten(key),
      /** Waits until the flush running now (if any) has committed or put back its batch. Never fails. */
      settled: queue.settled,
      /** Sync-path counters changed: they are published within one flush interval. Sync, O(1). */
      touched: signalWork,
      /** Whether a change queued now can still reach the store (false once shutdown has begun). Sync. */
      accepting: (): boolean => !stopping
    }
  })

/** A running mirror: the guard, the write-behind queue, and what is pending. */
export type StoreMirror<A> = Effect.Effect.Success<ReturnType<typeof makeStoreMirror<A>>>
