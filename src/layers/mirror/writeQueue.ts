/**
 * The write-behind queue of one mirrored namespace: the newest unwritten change per key, and
 * the batch the flusher is writing now. Plain maps: queueing is a `Map.set` on the sync path,
 * and read-your-writes a `Map.get` — never a scan. Memory is bounded by the number of distinct
 * queued keys (`maxQueue`).
 *
 * Writers: `enqueue` (the sync path) adds changes; the mirror's flusher fiber alone moves them
 * into flight and back (`startFlight`, `putBack`, `endFlight`).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type { BatchOp } from "../../KeyedStore.js"

/** Why a queued change was dropped before it reached the store. */
export type DropReason = "queue-full" | "shutdown" | "InvalidInput" | "LimitExceeded" | "Corrupt"

/** The queue of one namespace. */
export class WriteQueue<A> {
  private queued = new Map<string, BatchOp<A>>()
  private inflight: ReadonlyMap<string, BatchOp<A>> | undefined
  private landed: Deferred.Deferred<void> | undefined

  constructor(
    private readonly maxQueue: number,
    private readonly dropped: (reason: DropReason, count: number) => void
  ) {}

  /** Changes waiting for the next flush. */
  get size(): number {
    return this.queued.size
  }

  /**
   * Queues `op`, replacing an older queued change of its key. Sync, O(1). A full queue drops
   * a change to a new key — except a delete, which displaces the oldest queued write instead
   * (a lost delete would let a consumed or removed entry come back). Returns whether queued.
   */
  enqueue(op: BatchOp<A>): boolean {
    if (this.queued.size >= this.maxQueue && !this.queued.has(op.key)) {
      const oldest = op._tag === "Delete" ? this.oldestWrite() : undefined
      if (oldest === undefined) {
        this.dropped("queue-full", 1)
        return false
      }
      this.queued.delete(oldest)
      this.dropped("queue-full", 1)
    }
    this.queued.set(op.key, op)
    return true
  }

  private oldestWrite(): string | undefined {
    for (const [key, op] of this.queued) if (op._tag === "Register") return key
    return undefined
  }

  /** The newest change to `key` not yet committed (queued, or being written now). O(1). */
  pending(key: string): BatchOp<A> | undefined {
    return this.queued.get(key) ?? this.inflight?.get(key)
  }

  /** Whether the flush running now is writing a change to `key`. */
  isBeingWritten(key: string): boolean {
    return this.inflight?.has(key) === true
  }

  /** Completes when the flush running now (if any) has committed or put back its batch. Never fails. */
  readonly settled: Effect.Effect<void> = Effect.suspend(() => (this.landed === undefined ? Effect.void : Deferred.await(this.landed)))

  /** Flusher only: takes every queued change into flight (one change per key), in queue order. */
  startFlight(): ReadonlyArray<BatchOp<A>> {
    const batch = this.queued
    this.queued = new Map()
    this.inflight = batch
    this.landed = Deferred.unsafeMake(FiberId.none)
    return [...batch.values()]
  }

  /**
   * Flusher only: puts unwritten changes back, before what was queued meanwhile (a newer
   * change to the same key wins); past `maxQueue` the oldest are dropped and counted.
   */
  putBack(ops: ReadonlyArray<BatchOp<A>>): void {
    if (ops.length === 0) return
    const merged = new Map<string, BatchOp<A>>()
    for (const op of ops) if (!this.queued.has(op.key)) merged.set(op.key, op)
    for (const [key, op] of this.queued) merged.set(key, op)
    const excess = merged.size - this.maxQueue
    if (excess > 0) {
      let left = excess
      for (const key of merged.keys()) {
        if (left-- <= 0) break
        merged.delete(key)
      }
      this.dropped("queue-full", excess)
    }
    this.queued = merged
  }

  /** Flusher only: the batch in flight is done (committed or put back); wakes whoever waits on `settled`. Call it when it is done, not when building the flush. */
  endFlight(): Effect.Effect<void> {
    const landed = this.landed
    this.inflight = undefined
    this.landed = undefined
    return landed === undefined ? Effect.void : Deferred.succeed(landed, undefined)
  }

  /** At shutdown, once nothing more will be written: drops (and counts) what is still queued. */
  dropAll(reason: DropReason): number {
    const count = this.queued.size
    if (count > 0) this.dropped(reason, count)
    this.queued = new Map()
    return count
  }
}
