/**
 * The process-local fast path of every cache: a plain `Map` bounded by TTL and entry count.
 * Synchronous, allocation-light, never throws.
 *
 * @internal
 */

/** An entry as the caches keep it: the value with its original timestamps (epoch ms). */
export interface TimedEntry<A> {
  readonly value: A
  readonly createdAt: number
  readonly expiresAt: number
}

/**
 * Insertion-ordered map with a hard size cap (the oldest insertion is evicted first) and
 * expiry checked on read. Eviction keeps one iterator over the keys instead of restarting
 * `keys()` on every insert, which stays O(1) when the head of the map holds deleted slots.
 */
export class BoundedTtlMap<A> {
  private readonly map = new Map<string, TimedEntry<A>>()
  private cursor: Iterator<string> = this.map.keys()

  constructor(readonly maxEntries: number) {}

  /** The live entry for `key`; an expired entry is removed and reads as absent. */
  get(key: string, now: number): TimedEntry<A> | undefined {
    const entry = this.map.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt > now) return entry
    this.map.delete(key)
    return undefined
  }

  /** Inserts or replaces (moving the key to the young end), then evicts past `maxEntries`. */
  set(key: string, entry: TimedEntry<A>): void {
    // Deleting first (a no-op for a new key) moves a replaced key to the young end.
    this.map.delete(key)
    this.map.set(key, entry)
    while (this.map.size > this.maxEntries) this.evictOldest()
  }

  /** Removes `key`; `true` when it was present (live or not). */
  delete(key: string): boolean {
    return this.map.delete(key)
  }

  get size(): number {
    return this.map.size
  }

  private evictOldest(): void {
    let next = this.cursor.next()
    if (next.done) {
      this.cursor = this.map.keys()
      next = this.cursor.next()
    }
    if (!next.done) this.map.delete(next.value)
  }
}
