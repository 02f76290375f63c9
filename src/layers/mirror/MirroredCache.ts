/**
 * The engine under the channel caches: a bounded in-memory map (the sync fast path) and,
 * when persistence is on, a store mirror behind it. Memory layers are this with no mirror.
 *
 * With a mirror, every key is first made one the store takes ({@link storageKey}: long or
 * odd ids become a digest) and every expiry a whole millisecond within the largest date, on
 * the sync path, so the queue only holds writes the store can take.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { MAX_EPOCH_MILLIS, storageKey } from "../store/storeRules.js"
import type { TimedEntry } from "./BoundedTtlMap.js"
import { BoundedTtlMap } from "./BoundedTtlMap.js"
import type { CacheMetrics } from "./CacheMetrics.js"
import { type ClaimAttempt, type LocalChanges, makeDecisions, type SettleOutcome, type UndecidedPolicy } from "./storeDecisions.js"
import type { StoreMirror } from "./StoreMirror.js"

export type { ClaimAttempt, SettleOutcome, UndecidedPolicy } from "./storeDecisions.js"

/** Reads the current time synchronously (the layer's `Clock`, so `TestClock` drives it). */
export type Now = () => number

/** A channel cache's memory fast path, with the store behind it when persistence is on. */
export interface MirroredCache<A> {
  /** The current time in epoch ms, from the cache's clock. */
  readonly now: Now
  /** The live entry in memory. Sync, memory only. */
  readonly get: (key: string) => TimedEntry<A> | undefined
  /** Stores in memory and queues the store write. Sync; never blocks, never throws. */
  readonly set: (key: string, value: A, createdAt: number, expiresAt: number) => void
  /** Removes from memory and queues the store delete. Sync; never blocks, never throws. */
  readonly delete: (key: string) => void
  /** Drops from memory only (a memory bound), leaving the store row for later lookups. Sync. */
  readonly forget: (key: string) => void
  /**
   * Memory, then queued writes, then the store; a store hit is put back in memory with its
   * original timestamps. A store failure reads as a miss. Never fails.
   */
  readonly lookup: (key: string) => Effect.Effect<Option.Option<TimedEntry<A>>>
  /** Like `lookup`, but a store hit is not put back in memory (for entries another process may still change). Never fails. */
  readonly peek: (key: string) => Effect.Effect<Option.Option<TimedEntry<A>>>
  /**
   * One-shot get-and-delete. With a store, the store's atomic consume decides (of two
   * instances, one gets it); when the store cannot decide, the cache's undecided policy
   * answers (see {@link UndecidedPolicy}). Never fails.
   */
  readonly take: (key: string) => Effect.Effect<Option.Option<A>>
  /**
   * Atomic claim of `key` for `ttlMillis`: `Won` when no live entry existed in memory nor
   * (atomically, across processes) in the store; `Held` with what holds it; `Undecided`
   * when the store could not decide and the policy says to answer "in flight". Never fails.
   */
  readonly claim: (key: string, value: A, ttlMillis: number) => Effect.Effect<ClaimAttempt<A>>
  /**
   * Fenced replace: writes `value` (memory and store) only while `key` still holds
   * `expected` — or holds nothing live (a claim that expired unclaimed can still be
   * finalized). `stale` when someone else holds it now. Never fails.
   */
  readonly replaceIfHeld: (key: string, expected: A, value: A, ttlMillis: number) => Effect.Effect<SettleOutcome>
  /** Fenced delete: removes `key` (memory and store) only while it still holds `expected`. Never fails. */
  readonly removeIfHeld: (key: string, expected: A) => Effect.Effect<SettleOutcome>
  /** The cache's counters. */
  readonly metrics: CacheMetrics
}

/** What builds a cache. */
export interface MirroredCacheOptions<A> {
  readonly maxEntries: number
  readonly now: Now
  readonly metrics: CacheMetrics
  /** The store mirror; without one the cache is memory only (nothing is opened or written). */
  readonly mirror: StoreMirror<A> | undefined
  /** What a claim or one-shot answers when the store is out of reach (default `claim-locally`). */
  readonly whenUnreachable?: UndecidedPolicy | undefined
  /** Whether two values are the same claim (fencing in memory); default: the same object. */
  readonly sameValue?: ((a: A, b: A) => boolean) | undefined
}

const identity = (key: string) => key

/**
 * Which keys this process changed while an async step (a store read, a one-shot waiting on a
 * flush) was away: such a step must not put a store answer back into memory over a change
 * made meanwhile — a delete queued and already committed would otherwise be undone by a
 * late read. Changes are remembered only while some step is away, so memory stays bounded.
 */
const makeLocalChanges = (): LocalChanges => {
  let mark = 0
  let away = 0
  const changedAt = new Map<string, number>()
  return {
    changed: (key) => {
      mark++
      if (away > 0) changedAt.set(key, mark)
    },
    // Counted in and out with interruption masked: a step interrupted at its first step would
    // otherwise stay away for good, and every change after it be remembered forever.
    watching: (effect) =>
      Effect.uninterruptibleMask((restore) => {
        away++
        return Effect.ensuring(
          restore(effect(mark)),
          Effect.sync(() => {
            away--
            if (away === 0) changedAt.clear()
          })
        )
      }),
    changedSince: (key, since) => (changedAt.get(key) ?? 0) > since
  }
}

/**
 * An expiry as the store keeps it: a whole millisecond, at most the largest date. Rounded up:
 * clocks read whole milliseconds, so an entry is live at exactly the same readings as with its
 * fractional expiry (memory holds this same value, and agrees with the memory-only cache).
 */
const storedExpiry = (expiresAt: number) => (expiresAt >= MAX_EPOCH_MILLIS ? MAX_EPOCH_MILLIS : Math.ceil(expiresAt))

/** Builds the cache. */
export const makeMirroredCache = <A>(options: MirroredCacheOptions<A>): MirroredCache<A> => {
  const { now, metrics, mirror } = options
  const memory = new BoundedTtlMap<A>(options.maxEntries)
  const stats = metrics.stats
  const none = Effect.succeed(Option.none())
  const keyOf = mirror === undefined ? identity : storageKey
  const changes = makeLocalChanges()

  const getStored = (key: string) => {
    const hit = memory.get(key, now())
    if (hit !== undefined) {
      stats.memoryHits++
      mirror?.touched()
    }
    return hit
  }

  const fromPending = (key: string): TimedEntry<A> | null | undefined => {
    const pending = mirror?.pending(key)
    if (pending === undefined) return undefined
    if (pending._tag === "Delete") return null
    return { value: pending.value, createdAt: pending.createdAt, expiresAt: pending.expiresAt ?? Number.POSITIVE_INFINITY }
  }

  /** Memory, then queued writes, then the store; `backfill` puts a store hit back in memory. */
  const read = (key: string, backfill: boolean): Effect.Effect<Option.Option<TimedEntry<A>>> =>
    Effect.suspend(() => {
      const hit = getStored(key)
      if (hit !== undefined) return Effect.succeed(Option.some(hit))
      const pending = fromPending(key)
      if (pending !== undefined) return Effect.succeed(Option.fromNullable(pending).pipe(Option.filter((e) => e.expiresAt > now())))
      if (mirror === undefined) {
        stats.misses++
        return none
      }
      return changes.watching((mark) =>
        Effect.flatMap(mirror.guard("lookup", mirror.handle.lookupEntry(key), Option.none()), (found) => {
        if (Option.isNone(found)) {
          stats.misses++
          mirror.touched()
          return none
        }
        // The read was async: a delete or a newer write may have happened meanwhile — queued
        // still, or queued and already written. This process's own change wins.
        const later = fromPending(key)
        if (later === null) return none
        const fresher = memory.get(key, now())
        if (fresher !== undefined) return Effect.succeed(Option.some(fresher))
        if (changes.changedSince(key, mark)) return none
        const entry: TimedEntry<A> = {
          value: found.value.value,
          createdAt: found.value.createdAt,
          expiresAt: found.value.expiresAt ?? Number.POSITIVE_INFINITY
        }
        if (!backfill) return Effect.as(metrics.count("storeHits"), Option.some(entry))
        memory.set(key, entry)
        return Effect.as(Effect.zipRight(metrics.count("storeHits"), metrics.count("backfills")), Option.some(entry))
      })
      )
    })

  const decisions = makeDecisions<A>({
    memory,
    now,
    metrics,
    mirror,
    read,
    get: getStored,
    fromPending,
    whenUnreachable: options.whenUnreachable ?? "claim-locally",
    sameValue: options.sameValue ?? ((a, b) => a === b),
    changes
  })

  return {
    now,
    get: (key) => getStored(keyOf(key)),
    set: (key, value, createdAt, expiresAt) => {
      const k = keyOf(key)
      if (mirror === undefined) {
        memory.set(k, { value, createdAt, expiresAt })
        return
      }
      // One object serves memory and the queue (a queued write is a timed entry too).
      memory.set(k, mirror.register(k, value, createdAt, storedExpiry(expiresAt)))
      changes.changed(k)
    },
    delete: (key) => {
      const k = keyOf(key)
      memory.delete(k)
      changes.changed(k)
      mirror?.delete(k)
    },
    forget: (key) => {
      memory.delete(keyOf(key))
    },
    lookup: (key) => read(keyOf(key), true),
    peek: (key) => read(keyOf(key), false),
    take: (key) => decisions.take(keyOf(key)),
    claim: (key, value, ttlMillis) => decisions.claim(keyOf(key), value, ttlMillis),
    replaceIfHeld: (key, expected, value, ttlMillis) => decisions.replaceIfHeld(keyOf(key), expected, value, ttlMillis),
    removeIfHeld: (key, expected) => decisions.removeIfHeld(keyOf(key), expected),
    metrics
  }
}
