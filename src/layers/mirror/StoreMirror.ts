/**
 * The persistent half of a cache: a write-behind queue flushed in batches by a background
 * fiber, and a guard that turns every store failure into "answer from memory" — logged once
 * per burst, counted, and backed off after repeated failures.
 *
 * @internal
 */
import { Clock, Deferred, Duration, Effect, FiberId, Option } from "effect"
import type { BatchOp, NamespaceHandle } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import type { CacheMetrics } from "./CacheMetrics.js"
import { lastStepPerKey } from "../store/storeRules.js"

/** Tuning of the write-behind mirror. Every field has a default. */
export interface MirrorSettings {
  /** How often the flusher writes queued changes (default 100 ms). At most this much is lost on a crash. */
  readonly flushInterval: Duration.DurationInput
  /** Writes per store transaction (default 1 000). */
  readonly maxBatch: number
  /** Queued writes before new ones are dropped and counted (default 10 000); the caller never waits. */
  readonly maxQueue: number
  /** Consecutive failures before the mirror stops calling the store for a while (default 3). */
  readonly failuresBeforeBackoff: number
  /** First back-off pause (default 1 s), doubled per further failure up to `backoffMax` (default 30 s). */
  readonly backoffBase: Duration.DurationInput
  readonly backoffMax: Duration.DurationInput
  /** How long shutdown waits for the final flush (default 5 s). */
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

/** Who is mirroring, for logs and metrics. */
export interface MirrorIdentity {
  readonly plugin: string
  readonly feature: string
}

const NON_RETRYABLE = new Set(["InvalidInput", "LimitExceeded", "Corrupt"])

/** A defect from a store operation, as a failure the mirror reports, counts and retries. */
const unexpected = (operation: string, defect: unknown) =>
  new StateStoreError({ reason: "WriteFailed", operation, detail: `unexpected store error: ${defect instanceof Error ? defect.message : String(defect)}`, cause: defect })

/**
 * Starts the mirror of `handle` in the current scope: the flusher fiber, and a finalizer that
 * flushes what is queued (bounded by `shutdownFlushTimeout`) before the scope closes.
 */
export const makeStoreMirror = <A>(
  handle: NamespaceHandle<A>,
  identity: MirrorIdentity,
  metrics: CacheMetrics,
  overrides: Partial<MirrorSettings> = {}
) =>
  Effect.gen(function* () {
    const settings = { ...defaultMirrorSettings, ...overrides }
    const backoffBase = Duration.toMillis(settings.backoffBase)
    const backoffMax = Duration.toMillis(settings.backoffMax)
    const logEvery = Duration.toMillis(settings.failureLogInterval)
    const annotations = { plugin: identity.plugin, feature: identity.feature, namespace: handle.namespace }

    // Plain arrays, swapped out by the flusher: a push is the whole cost on the sync path.
    let queue: Array<BatchOp<A>> = []
    let inflight: ReadonlyArray<BatchOp<A>> | undefined
    // Completed when the flush writing `inflight` ends (committed, or put back on failure).
    let inflightSettled: Deferred.Deferred<void> | undefined
    const newestIn = (ops: ReadonlyArray<BatchOp<A>> | undefined, key: string): BatchOp<A> | undefined => {
      if (ops === undefined) return undefined
      for (let i = ops.length - 1; i >= 0; i--) if (ops[i]!.key === key) return ops[i]
      return undefined
    }

    // Failure state. A burst is failures not separated by a quiet `failureLogInterval`: it is
    // logged when it starts, summarised at most once per interval, and its end is logged by
    // the first success after the quiet interval. Back-off counts consecutive failures only.
    let consecutiveFailures = 0
    let burstFailures = 0
    let lastFailureAt = Number.NEGATIVE_INFINITY
    let lastLogAt = Number.NEGATIVE_INFINITY
    let backoffUntil = 0

    const report = (operation: string, error: StateStoreError) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        consecutiveFailures++
        if (consecutiveFailures >= settings.failuresBeforeBackoff) {
          const pause = Math.min(backoffMax, backoffBase * 2 ** (consecutiveFailures - settings.failuresBeforeBackoff))
          backoffUntil = now + pause
        }
        const startsBurst = now - lastFailureAt >= logEvery
        if (startsBurst) burstFailures = 0
        burstFailures++
        lastFailureAt = now
        yield* metrics.failure(error.reason)
        if (startsBurst || now - lastLogAt >= logEvery) {
          lastLogAt = now
          yield* Effect.logWarning(
            startsBurst
              ? "channel-state: store operation failed; serving from memory"
              : `channel-state: store still failing (${burstFailures} failures in this burst); serving from memory`
          ).pipe(Effect.annotateLogs({ ...annotations, operation, reason: error.reason, detail: error.detail }))
        }
      })

    const recovered = Effect.suspend(() => {
      consecutiveFailures = 0
      if (burstFailures === 0) return Effect.void
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (now - lastFailureAt < logEvery) return Effect.void
        const failures = burstFailures
        burstFailures = 0
        return Effect.logInfo(`channel-state: store recovered after ${failures} failed operations`).pipe(Effect.annotateLogs(annotations))
      })
    })

    /** Whether the store is being left alone for now (backing off after repeated failures). */
    const backingOff = Effect.map(Clock.currentTimeMillis, (now) => now < backoffUntil)

    /**
     * Runs a store operation; on failure (or while backing off) answers `fallback`. Never fails.
     */
    const guard = <R>(operation: string, effect: Effect.Effect<R, StateStoreError>, fallback: R): Effect.Effect<R> =>
      Effect.flatMap(backingOff, (paused) =>
        paused
          ? Effect.succeed(fallback)
          : effect.pipe(
              Effect.tap(() => recovered),
              Effect.catchAll((error) => Effect.as(report(operation, error), fallback)),
              Effect.catchAllDefect((defect) => Effect.as(report(operation, unexpected(operation, defect)), fallback)),
              Effect.annotateLogs(annotations)
            )
      )

    // The flusher sleeps on this latch while there is nothing to write, so an idle cache
    // schedules no timers (and TestClock can jump hours without stepping through flushes).
    const work = yield* Effect.makeLatch(false)
    let workSignalled = false
    const signalWork = () => {
      if (workSignalled) return
      workSignalled = true
      work.unsafeOpen()
    }

    const enqueue = (op: BatchOp<A>): void => {
      if (queue.length >= settings.maxQueue) {
        metrics.stats.droppedWrites++
        return
      }
      queue.push(op)
      metrics.stats.queuedWrites++
      signalWork()
    }

    /** Writes what is queued, in batches. `force` ignores the back-off (shutdown). */
    const flush = (force: boolean) =>
      Effect.gen(function* () {
        if (queue.length === 0 || (!force && (yield* backingOff))) return
        // One step per key for the whole flush, so a write and a later delete of the same key
        // never land in different transactions (a crash between them would resurrect it).
        const ops = lastStepPerKey(queue)
        inflight = ops
        inflightSettled = Deferred.unsafeMake(FiberId.none)
        queue = []
        for (let start = 0; start < ops.length; start += settings.maxBatch) {
          const chunk = ops.slice(start, start + settings.maxBatch)
          const began = yield* Clock.currentTimeMillis
          const result = yield* Effect.either(handle.writeBatch(chunk).pipe(Effect.catchAllDefect((defect) => Effect.fail(unexpected("flush", defect)))))
          if (result._tag === "Right") {
            yield* recovered
            yield* metrics.flushed(chunk.length, (yield* Clock.currentTimeMillis) - began)
            continue
          }
          yield* report("flush", result.left)
          if (NON_RETRYABLE.has(result.left.reason)) {
            metrics.stats.droppedWrites += chunk.length
            continue
          }
          // Put back what was not written, before what was queued meanwhile (order is kept, so
          // the newest change to a key still wins); past the bound, the oldest are dropped.
          const requeue = ops.slice(start).concat(queue)
          const excess = requeue.length - settings.maxQueue
          if (excess > 0) metrics.stats.droppedWrites += excess
          queue = excess > 0 ? requeue.slice(excess) : requeue
          break
        }
        inflight = undefined
      }).pipe(
        Effect.ensuring(
          Effect.suspend(() => {
            const settled = inflightSettled
            inflight = undefined
            inflightSettled = undefined
            return settled === undefined ? Effect.void : Deferred.succeed(settled, undefined)
          })
        ),
        Effect.withSpan("StoreMirror.flush", { attributes: annotations })
      )

    // Wait for work, let it gather for one interval, write it; what could not be written (or
    // arrived meanwhile) signals the next round.
    yield* Effect.gen(function* () {
      yield* work.await
      yield* Effect.sleep(settings.flushInterval)
      work.unsafeClose()
      workSignalled = false
      yield* flush(false)
      yield* metrics.publish
      if (queue.length > 0) signalWork()
    }).pipe(Effect.forever, Effect.forkScoped)
    yield* Effect.addFinalizer(() =>
      flush(true).pipe(
        Effect.zipRight(metrics.publish),
        Effect.timeoutOption(settings.shutdownFlushTimeout),
        Effect.flatMap((done) =>
          Option.isNone(done) || queue.length > 0
            ? Effect.logWarning(`channel-state: ${queue.length} queued writes not flushed at shutdown`).pipe(Effect.annotateLogs(annotations))
            : Effect.void
        )
      )
    )

    return {
      handle,
      guard,
      /** Queues an upsert with its original timestamps. Sync, O(1), never blocks or throws. */
      register: (key: string, value: A, createdAt: number, expiresAt: number): void =>
        enqueue({ _tag: "Register", key, value, createdAt, expiresAt }),
      /** Queues a delete. Sync, O(1), never blocks or throws. */
      delete: (key: string): void => enqueue({ _tag: "Delete", key }),
      /** The newest change to `key` not yet committed (queued or being written), if any: a scan of the queue, newest first. */
      pending: (key: string): BatchOp<A> | undefined => newestIn(queue, key) ?? newestIn(inflight, key),
      /** Whether the flush running now is writing a change to `key`. */
      isBeingWritten: (key: string): boolean => newestIn(inflight, key) !== undefined,
      /** Waits until the flush running now (if any) has committed or put back its batch. Never fails. */
      settled: Effect.suspend(() => (inflightSettled === undefined ? Effect.void : Deferred.await(inflightSettled)))
    }
  })

/** A running mirror: the guard, the write-behind queue, and what is pending. */
export type StoreMirror<A> = Effect.Effect.Success<ReturnType<typeof makeStoreMirror<A>>>
