/**
 * Metrics of one persistent cache, tagged by plugin and namespace. Counters touched on the
 * synchronous path are plain numbers there and published as deltas by the background
 * fiber, so the sync path never runs an Effect.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type { StateStoreErrorReason } from "../../StateStoreError.js"
import type { DropReason } from "./writeQueue.js"

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** The metric families every persistent cache reports (names as exported). */
export const CacheMetricFamilies = {
  memoryHits: counter("channel_state_memory_hits", "lookups answered from process memory"),
  storeHits: counter("channel_state_store_hits", "lookups that missed memory and were found in the store"),
  misses: counter("channel_state_misses", "lookups found nowhere"),
  backfills: counter("channel_state_backfills", "store hits put back into memory"),
  queuedWrites: counter("channel_state_queued_writes", "writes queued for the write-behind flusher"),
  flushedWrites: counter("channel_state_flushed_writes", "writes committed to the store by the flusher"),
  droppedWrites: counter("channel_state_dropped_writes", "writes dropped before reaching the store (tag reason: queue-full, shutdown, or the store's refusal: InvalidInput, LimitExceeded, Corrupt)"),
  failures: counter("channel_state_failures", "store operations that failed (tag: reason)"),
  undecidedClaims: counter(
    "channel_state_undecided_claims",
    "claims and one-shot consumes the store could not decide (tag reason: contended, unreachable, refused; tag answer: in-flight, claimed-locally)"
  ),
  flushBatchSize: Metric.histogram(
    "channel_state_flush_batch_size",
    MetricBoundaries.exponential({ start: 1, factor: 4, count: 8 }),
    "writes per flushed batch"
  ),
  flushLatencyMs: Metric.histogram(
    "channel_state_flush_latency_ms",
    MetricBoundaries.exponential({ start: 0.5, factor: 2, count: 14 }),
    "milliseconds per flushed batch"
  )
} as const

/** Counts of one cache since it started; what `demo --stats` prints. */
export interface CacheStats {
  memoryHits: number
  storeHits: number
  misses: number
  backfills: number
  queuedWrites: number
  flushedWrites: number
  droppedWrites: number
  failures: number
  undecidedClaims: number
}

/** Why a claim was undecided: the lock stayed held past the deadline, the store was out of reach, or it refused the claim. */
export type UndecidedReason = "contended" | "unreachable" | "refused"
/** What an undecided claim answered. */
export type UndecidedAnswer = "in-flight" | "claimed-locally"

/** The metrics of one cache: plain counts for the sync path, tagged metrics for the rest. */
export const makeCacheMetrics = (plugin: string, namespace: string) => {
  const tag = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>) =>
    Metric.tagged(Metric.tagged(metric, "plugin", plugin), "namespace", namespace)
  const f = CacheMetricFamilies
  const tagged = {
    memoryHits: tag(f.memoryHits),
    storeHits: tag(f.storeHits),
    misses: tag(f.misses),
    backfills: tag(f.backfills),
    queuedWrites: tag(f.queuedWrites),
    flushedWrites: tag(f.flushedWrites),
    droppedWrites: tag(f.droppedWrites),
    failures: tag(f.failures),
    undecidedClaims: tag(f.undecidedClaims),
    flushBatchSize: tag(f.flushBatchSize),
    flushLatencyMs: tag(f.flushLatencyMs)
  }
  /** Totals, updated in place (plain numbers: cheap on the sync path). */
  const stats: CacheStats = { memoryHits: 0, storeHits: 0, misses: 0, backfills: 0, queuedWrites: 0, flushedWrites: 0, droppedWrites: 0, failures: 0, undecidedClaims: 0 }
  const published = { memoryHits: 0, queuedWrites: 0, misses: 0 }
  // Drops by reason, counted on the sync path (queue full) and by the flusher; published as deltas.
  const drops = new Map<DropReason, { count: number; published: number; metric: Metric.Metric.Counter<number> }>()

  /** Counts `count` writes dropped for `reason`. Sync. */
  const dropped = (reason: DropReason, count: number): void => {
    stats.droppedWrites += count
    let entry = drops.get(reason)
    if (entry === undefined) {
      entry = { count: 0, published: 0, metric: Metric.tagged(tagged.droppedWrites, "reason", reason) }
      drops.set(reason, entry)
    }
    entry.count += count
  }

  /** Pushes the sync-path counts accumulated since the last call into the metrics. */
  const publish = Effect.suspend(() => {
    const updates: Array<Effect.Effect<void>> = []
    for (const name of ["memoryHits", "queuedWrites", "misses"] as const) {
      const delta = stats[name] - published[name]
      if (delta > 0) {
        published[name] = stats[name]
        updates.push(Metric.incrementBy(tagged[name], delta))
      }
    }
    for (const entry of drops.values()) {
      const delta = entry.count - entry.published
      if (delta > 0) {
        entry.published = entry.count
        updates.push(Metric.incrementBy(entry.metric, delta))
      }
    }
    return Effect.all(updates, { discard: true })
  })

  /** Counts an async-path event in both the totals and the metric. */
  const count = (name: "storeHits" | "backfills" | "flushedWrites", by = 1) =>
    Effect.suspend(() => {
      stats[name] += by
      return Metric.incrementBy(tagged[name], by)
    })

  // Tagged variants built once per tag value, not per update.
  const failureByReason = new Map<StateStoreErrorReason, Metric.Metric.Counter<number>>()
  const failure = (reason: StateStoreErrorReason) =>
    Effect.suspend(() => {
      stats.failures++
      let metric = failureByReason.get(reason)
      if (metric === undefined) {
        metric = Metric.tagged(tagged.failures, "reason", reason)
        failureByReason.set(reason, metric)
      }
      return Metric.increment(metric)
    })

  const undecidedByTags = new Map<string, Metric.Metric.Counter<number>>()
  /** Counts a claim (or one-shot) the store could not decide, and what it answered. */
  const undecided = (reason: UndecidedReason, answer: UndecidedAnswer) =>
    Effect.suspend(() => {
      stats.undecidedClaims++
      const id = `${reason}/${answer}`
      let metric = undecidedByTags.get(id)
      if (metric === undefined) {
        metric = Metric.tagged(Metric.tagged(tagged.undecidedClaims, "reason", reason), "answer", answer)
        undecidedByTags.set(id, metric)
      }
      return Metric.increment(metric)
    })

  const flushed = (size: number, millis: number) =>
    Effect.all([count("flushedWrites", size), Metric.update(tagged.flushBatchSize, size), Metric.update(tagged.flushLatencyMs, millis)], {
      discard: true
    })

  return { stats, publish, count, failure, flushed, dropped, undecided }
}

/** @see makeCacheMetrics */
export type CacheMetrics = ReturnType<typeof makeCacheMetrics>
