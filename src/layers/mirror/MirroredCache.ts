/**
 * The engine under the channel caches: a bounded in-memory map (the sync fast path) and,
 * when persistence is on, a store mirror behind it. Memory layers are this with no mirror.
 *
 * @internal
 */
import { Effect, Option } from "effect"
import type { TimedEntry } from "./BoundedTtlMap.js"
import { BoundedTtlMap } from "./BoundedTtlMap.js"
import type { CacheMetrics } from "./CacheMetrics.js"
import type { StateStoreError } from "../../StateStoreError.js"
import type { StoreMirror } from "./StoreMirror.js"

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
   * One-shot get-and-delete. With a store, the store's atomic consume decides (so two
   * instances never both get it); if the store fails, memory answers. Never fails.
   */
  readonly take: (key: string) => Effect.Effect<Option.Option<A>>
  /**
   * Atomic claim: `Won` when no live entry existed in memory nor (atomically, across
   * processes) in the store; else `Held` with the entry found, if it could be read. If the
   * store fails, memory alone decides and the claim is queued for the store. Never fails.
   */
  readonly claim: (key: string, value: A, createdAt: number, expiresAt: number) => Effect.Effect<ClaimAttempt<A>>
  /**
   * Sets memory and writes the store now; queued instead (write-behind) behind an earlier
   * queued change to the key, or when the store fails. Never fails.
   */
  readonly write: (key: string, value: A, createdAt: number, expiresAt: number) => Effect.Effect<void>
  /** Deletes from memory and from the store now; queued like `write` when it cannot be. Never fails. */
  readonly remove: (key: string) => Effect.Effect<void>
  /** The cache's counters. */
  readonly metrics: CacheMetrics
}

/** The answer of {@link MirroredCache.claim}. */
export type ClaimAttempt<A> = { readonly _tag: "Won" } | { readonly _tag: "Held"; readonly existing: Option.Option<TimedEntry<A>> }

const STORE_FAILED = Symbol("store failed")

/** Builds the cache; without `mirror` it is memory only (nothing is opened or written). */
export const makeMirroredCache = <A>(options: {
  readonly maxEntries: number
  readonly now: Now
  readonly metrics: CacheMetrics
  readonly mirror: StoreMirror<A> | undefined
}): MirroredCache<A> => {
  const { now, metrics, mirror } = options
  const memory = new BoundedTtlMap<A>(options.maxEntries)
  const stats = metrics.stats
  const none = Effect.succeed(Option.none())

  const get = (key: string) => {
    const hit = memory.get(key, now())
    if (hit !== undefined) stats.memoryHits++
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
      const hit = get(key)
      if (hit !== undefined) return Effect.succeed(Option.some(hit))
      const pending = fromPending(key)
      if (pending !== undefined) return Effect.succeed(Option.fromNullable(pending).pipe(Option.filter((e) => e.expiresAt > now())))
      if (mirror === undefined) {
        stats.misses++
        return none
      }
      return Effect.flatMap(mirror.guard("lookup", mirror.handle.lookupEntry(key), Option.none()), (found) => {
        if (Option.isNone(found)) {
          stats.misses++
          return none
        }
        // The read was async: a delete or a newer write may have happened meanwhile.
        const later = fromPending(key)
        if (later === null) return none
        const fresher = memory.get(key, now())
        if (fresher !== undefined) return Effect.succeed(Option.some(fresher))
        const entry: TimedEntry<A> = {
          value: found.value.value,
          createdAt: found.value.createdAt,
          expiresAt: found.value.expiresAt ?? Number.POSITIVE_INFINITY
        }
        if (!backfill) return Effect.as(metrics.count("storeHits"), Option.some(entry))
        memory.set(key, entry)
        return Effect.as(Effect.zipRight(metrics.count("storeHits"), metrics.count("backfills")), Option.some(entry))
      })
    })
  const lookup = (key: string) => read(key, true)

  const take = (key: string): Effect.Effect<Option.Option<A>> =>
    Effect.suspend(() => {
      const hit = get(key)
      memory.delete(key)
      if (mirror === undefined) {
        if (hit === undefined) stats.misses++
        return Effect.succeed(Option.map(Option.fromNullable(hit), (e) => e.value))
      }
      return takeFromStore(mirror, key, hit)
    })

  /** One-shot with a store: our own unwritten change, or else the store's atomic consume, decides. */
  const takeFromStore = (m: StoreMirror<A>, key: string, hit: TimedEntry<A> | undefined): Effect.Effect<Option.Option<A>> =>
    Effect.suspend(() => {
      // A flush is writing this key right now: once it has, the store decides.
      if (m.isBeingWritten(key)) return Effect.zipRight(m.settled, takeFromStore(m, key, hit))
      const pending = fromPending(key)
      if (pending === null) return none
      if (pending !== undefined) {
        // Queued, not written: ours alone. The delete joins the same flush, which keeps only it.
        m.delete(key)
        return Effect.succeed(pending.expiresAt > now() ? Option.some(pending.value) : Option.none())
      }
      return Effect.map(m.guard("consume", m.handle.consume(key), STORE_FAILED as typeof STORE_FAILED | Option.Option<A>), (taken) => {
        if (taken !== STORE_FAILED) {
          if (Option.isSome(taken) && hit === undefined) stats.storeHits++
          if (Option.isNone(taken)) stats.misses++
          return taken
        }
        // Store unavailable: memory answers, and the delete is queued for when it is back.
        m.delete(key)
        return Option.map(Option.fromNullable(hit), (e) => e.value)
      })
    })

  const won: ClaimAttempt<A> = { _tag: "Won" }
  const held = (existing: Option.Option<TimedEntry<A>>): ClaimAttempt<A> => ({ _tag: "Held", existing })

  /**
   * Writes the store now — unless a change to `key` is still queued, in which case this one
   * queues behind it (so the store sees them in order) — and queues it when the store fails,
   * so it lands once the store is back.
   */
  const writeThrough = (m: StoreMirror<A>, key: string, operation: string, direct: Effect.Effect<unknown, StateStoreError>, enqueue: () => void) => {
    if (m.pending(key) !== undefined) return Effect.sync(enqueue)
    return Effect.flatMap(m.guard(operation, Effect.as(direct, true), false), (written) => (written ? Effect.void : Effect.sync(enqueue)))
  }

  const claim = (key: string, value: A, createdAt: number, expiresAt: number): Effect.Effect<ClaimAttempt<A>> =>
    Effect.suspend(() => {
      const hit = get(key)
      if (hit !== undefined) return Effect.succeed(held(Option.some(hit)))
      const claimLocally = (queue: boolean) =>
        Effect.sync(() => {
          memory.set(key, { value, createdAt, expiresAt })
          if (queue) mirror?.register(key, value, createdAt, expiresAt)
          return won
        })
      if (mirror === undefined) return claimLocally(false)
      const pending = fromPending(key)
      if (pending !== undefined) {
        // Our own unflushed change decides: the store row, if any, is still ours.
        if (pending !== null && pending.expiresAt > now()) return Effect.succeed(held(Option.some(pending)))
        return claimLocally(true)
      }
      const attempt = mirror.handle.registerIfAbsent(key, value, { createdAt, expiresAt })
      return Effect.flatMap(mirror.guard("claim", attempt, STORE_FAILED as typeof STORE_FAILED | boolean), (result) => {
        // Store unreachable: claim here, and queue the claim so it lands when the store is back.
        if (result === STORE_FAILED) return claimLocally(true)
        if (result) return claimLocally(false)
        // Held elsewhere: report what the store holds, without copying it into memory — it
        // may be released there, and memory must not keep answering "held" for its TTL.
        return Effect.map(read(key, false), held)
      })
    })

  return {
    now,
    get,
    set: (key, value, createdAt, expiresAt) => {
      memory.set(key, { value, createdAt, expiresAt })
      mirror?.register(key, value, createdAt, expiresAt)
    },
    delete: (key) => {
      memory.delete(key)
      mirror?.delete(key)
    },
    forget: (key) => {
      memory.delete(key)
    },
    lookup,
    peek: (key) => read(key, false),
    take,
    claim,
    write: (key, value, createdAt, expiresAt) =>
      Effect.suspend(() => {
        memory.set(key, { value, createdAt, expiresAt })
        if (mirror === undefined) return Effect.void
        return writeThrough(mirror, key, "write", mirror.handle.register(key, value, { createdAt, expiresAt }), () =>
          mirror.register(key, value, createdAt, expiresAt)
        )
      }),
    remove: (key) =>
      Effect.suspend(() => {
        memory.delete(key)
        if (mirror === undefined) return Effect.void
        return writeThrough(mirror, key, "remove", mirror.handle.delete(key), () => mirror.delete(key))
      }),
    metrics
  }
}
