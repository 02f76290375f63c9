/**
 * What a mirror does with store failures: count every one (by reason), log them once per
 * burst, and back off after repeated *outages* — never after a caller's own mistake.
 *
 * A burst is failures not separated by a quiet `failureLogInterval`: it is logged when it
 * starts, summarised at most once per interval, and its end is logged by the first success
 * after the quiet interval. Back-off counts consecutive outages only.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { StateStoreError, StateStoreErrorReason } from "../../StateStoreError.js"
import type { CacheMetrics } from "./CacheMetrics.js"

/**
 * Reasons that say the store is out of reach or its disk is failing: the ones back-off counts.
 * `Busy` is contention (waited out by the store already), and `InvalidInput`,
 * `LimitExceeded` and `Corrupt` are about one operation, not the store.
 */
export const OUTAGE_REASONS: ReadonlySet<StateStoreErrorReason> = new Set(["Unavailable", "OpenFailed", "SchemaUnsupported", "ReadFailed", "WriteFailed"])

/** Back-off and log pacing. */
export interface FailureLogSettings {
  readonly failuresBeforeBackoff: number
  readonly backoffBase: Duration.DurationInput
  readonly backoffMax: Duration.DurationInput
  readonly failureLogInterval: Duration.DurationInput
}

/** The failure log of one mirror; its state is written only through `report` and `recovered`. */
export const makeFailureLog = (settings: FailureLogSettings, metrics: CacheMetrics, annotations: Record<string, string>) => {
  const backoffBase = Duration.toMillis(settings.backoffBase)
  const backoffMax = Duration.toMillis(settings.backoffMax)
  const logEvery = Duration.toMillis(settings.failureLogInterval)
  let consecutiveOutages = 0
  let burstFailures = 0
  let lastFailureAt = Number.NEGATIVE_INFINITY
  let lastLogAt = Number.NEGATIVE_INFINITY
  let backoffUntil = 0

  /** Counts, logs (once per burst) and — for outages — backs off. `consequence` says what the cache did instead. */
  const report = (operation: string, error: StateStoreError, consequence = "serving from memory") =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (OUTAGE_REASONS.has(error.reason)) {
        consecutiveOutages++
        if (consecutiveOutages >= settings.failuresBeforeBackoff) {
          backoffUntil = now + Math.min(backoffMax, backoffBase * 2 ** (consecutiveOutages - settings.failuresBeforeBackoff))
        }
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
            ? `channel-state: store operation failed; ${consequence}`
            : `channel-state: store still failing (${burstFailures} failures in this burst); ${consequence}`
        ).pipe(Effect.annotateLogs({ ...annotations, operation, reason: error.reason, detail: error.detail }))
      }
    })

  /** A store operation succeeded: the outage streak ends; a burst that went quiet is reported over. */
  const recovered = Effect.suspend(() => {
    consecutiveOutages = 0
    if (burstFailures === 0) return Effect.void
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (now - lastFailureAt < logEvery) return Effect.void
      const failures = burstFailures
      burstFailures = 0
      return Effect.logInfo(`channel-state: store recovered after ${failures} failed operations`).pipe(Effect.annotateLogs(annotations))
    })
  })

  /** Whether the store is being left alone for now (after repeated outages). */
  const backingOff = Effect.map(Clock.currentTimeMillis, (now) => now < backoffUntil)
  /** The same, at `now` (epoch ms), for synchronous callers. */
  const backingOffAt = (now: number) => now < backoffUntil

  return { report, recovered, backingOff, backingOffAt }
}

/** The failure log of one mirror. */
export type FailureLog = ReturnType<typeof makeFailureLog>
