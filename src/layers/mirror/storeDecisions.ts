/**
 * What only the store can decide: claims, one-shot consumes, and the fenced settling of a
 * claim. Memory answers only for what this process itself holds; everything else goes to the
 * store, whose contention the store waits out (until its `lockWait`).
 *
 * When the store cannot decide:
 * - contention past `lockWait` (`Busy`): another process is using the database right now, so
 *   a local decision could double-handle — the answer is always "in flight" (claims) or
 *   "none" (one-shots), and the caller retries later;
 * - the store is out of reach (down, unopenable, read-only, backing off): the cache's
 *   {@link UndecidedPolicy} answers — but once the runtime is being disposed, a local decision
 *   could no longer be queued for the store, so the answer is "in flight" / "none";
 * - the store refuses the write (`InvalidInput`, `LimitExceeded`, `Corrupt`): "in flight" —
 *   a caller's mistake or a full store never makes a claim local.
 * Every undecided claim is counted (`channel_state_undecided_claims`, by reason and answer)
 * and logged once per burst.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { StateStoreError } from "../../StateStoreError.js"
import type { BoundedTtlMap, TimedEntry } from "./BoundedTtlMap.js"
import type { CacheMetrics, UndecidedReason } from "./CacheMetrics.js"
import { OUTAGE_REASONS } from "./failureLog.js"
import type { StoreMirror } from "./StoreMirror.js"

/**
 * What a claim (or one-shot consume) answers when the store is out of reach:
 * - `claim-locally`: this process decides from its memory, and queues the claim to land when
 *   the store is back (if nobody claimed it meanwhile) — right for one instance (the SQLite
 *   default: a bot on one machine keeps answering while its disk is read-only);
 * - `in-flight`: the claim answers `InFlight` (a one-shot answers none), so the message is
 *   dropped or retried later and never handled twice — right for several instances (the
 *   PostgreSQL default).
 */
export type UndecidedPolicy = "claim-locally" | "in-flight"

/** The answer of a claim. */
export type ClaimAttempt<A> =
  | { readonly _tag: "Won" }
  | { readonly _tag: "Held"; readonly existing: Option.Option<TimedEntry<A>> }
  | { readonly _tag: "Undecided" }

/**
 * How a fenced settle ended:
 * - `done`: it took effect (memory and store);
 * - `stale`: the key no longer holds what was expected (the claim expired and someone else
 *   claimed it) — nothing changed;
 * - `queued`: the store could not be reached; it is queued, still fenced, and lands when
 *   the store is back;
 * - `refused`: the store refused it (a full owner, say), or it could not be queued because
 *   the runtime is being disposed; nothing changed in the store.
 */
export type SettleOutcome = "done" | "stale" | "queued" | "refused"

/** What the decisions need from the cache. */
export interface DecisionContext<A> {
  readonly memory: BoundedTtlMap<A>
  readonly now: () => number
  readonly metrics: CacheMetrics
  readonly mirror: StoreMirror<A> | undefined
  readonly read: (key: string, backfill: boolean) => Effect.Effect<Option.Option<TimedEntry<A>>>
  /** The live memory entry (counted as a hit). */
  readonly get: (key: string) => TimedEntry<A> | undefined
  /** The queued change of a key: an entry, `null` for a queued delete, `undefined` for none. */
  readonly fromPending: (key: string) => TimedEntry<A> | null | undefined
  readonly whenUnreachable: UndecidedPolicy
  readonly sameValue: (a: A, b: A) => boolean
  /** Local changes: `watch` returns a mark; `changedSince(key, mark)` tells whether `key` changed here after it. */
  readonly changes: LocalChanges
}

/** Which keys this process changed while an async step was away (see MirroredCache). */
export interface LocalChanges {
  /** Says `key` changed here now (memory or queue). */
  readonly changed: (key: string) => void
  /** Runs `effect` as an async step that may write back: `changedSince` answers inside it. */
  readonly watching: <R>(effect: (mark: number) => Effect.Effect<R>) => Effect.Effect<R>
  /** Whether `key` changed here after `mark`. */
  readonly changedSince: (key: string, mark: number) => boolean
}

/** Why the store did not decide, from its failure. */
const undecidedReason = (error: StateStoreError): UndecidedReason =>
  error.reason === "Busy" ? "contended" : OUTAGE_REASONS.has(error.reason) ? "unreachable" : "refused"

/** The decisions of one cache. */
export const makeDecisions = <A>(ctx: DecisionContext<A>) => {
  const { memory, now, metrics, mirror, whenUnreachable, sameValue, changes } = ctx
  const won: ClaimAttempt<A> = { _tag: "Won" }
  const undecided: ClaimAttempt<A> = { _tag: "Undecided" }
  const held = (existing: Option.Option<TimedEntry<A>>): ClaimAttempt<A> => ({ _tag: "Held", existing })
  /** Whether memory holds `expected` (or nothing) under `key`: only then may memory change. */
  const memoryHolds = (key: string, expected: A) => {
    const current = memory.get(key, now())
    return current === undefined || sameValue(current.value, expected)
  }
  /**
   * A local decision is queued for the store; once the mirror no longer takes changes (the
   * runtime is being disposed), nothing decided here could ever reach the store, so the answer
   * is the safe one whatever the policy.
   */
  const answerFor = (reason: UndecidedReason) =>
    reason === "unreachable" && whenUnreachable === "claim-locally" && mirror?.accepting() === true ? "claimed-locally" : "in-flight"
  const consequence = (operation: string) => (error: StateStoreError) =>
    answerFor(undecidedReason(error)) === "claimed-locally"
      ? `${operation} decided from this process's memory (policy claim-locally); it is queued for the store`
      : `${operation} answered as in flight: the store decides it once it can`

  /** A flush is writing `key` right now: once it has, the store decides. */
  const afterFlight = <R>(m: StoreMirror<A>, key: string, then: () => Effect.Effect<R>): Effect.Effect<R> | undefined =>
    m.isBeingWritten(key) ? Effect.zipRight(m.settled, Effect.suspend(then)) : undefined

  const claim = (key: string, value: A, ttlMillis: number): Effect.Effect<ClaimAttempt<A>> =>
    Effect.suspend(() => {
      const hit = ctx.get(key)
      if (hit !== undefined) return Effect.succeed(held(Option.some(hit)))
      const createdAt = now()
      const entry = { value, createdAt, expiresAt: createdAt + ttlMillis }
      if (mirror === undefined) {
        memory.set(key, entry)
        changes.changed(key)
        return Effect.succeed(won)
      }
      const waiting = afterFlight(mirror, key, () => claim(key, value, ttlMillis))
      if (waiting) return waiting
      // Our own unwritten change (a queued finalize, or a claim made while the store was out
      // of reach) is what the store will hold: it answers for this process.
      const pending = ctx.fromPending(key)
      if (pending != null && pending.expiresAt > now()) return Effect.succeed(held(Option.some(pending)))
      return Effect.flatMap(mirror.attempt("claim", mirror.handle.registerIfAbsent(key, value, { ttl: ttlMillis }), consequence("claim")), (outcome) => {
        if (Either.isRight(outcome)) {
          if (outcome.right) {
            memory.set(key, entry)
            changes.changed(key)
            return Effect.succeed(won)
          }
          // Held elsewhere: report what the store holds, without copying it into memory — it
          // may be released there, and memory must not keep answering "held" for its TTL.
          return Effect.map(ctx.read(key, false), held)
        }
        const reason = undecidedReason(outcome.left)
        const answer = answerFor(reason)
        if (answer === "in-flight") return Effect.as(metrics.undecided(reason, answer), undecided)
        memory.set(key, entry)
        changes.changed(key)
        // Lands when the store is back — only if nobody claimed it there meanwhile.
        mirror.register(key, value, entry.createdAt, entry.expiresAt, value)
        return Effect.as(metrics.undecided(reason, answer), won)
      })
    })

  const take = (key: string): Effect.Effect<Option.Option<A>> =>
    Effect.suspend(() => {
      const hit = ctx.get(key)
      memory.delete(key)
      changes.changed(key)
      if (mirror === undefined) {
        if (hit === undefined) metrics.stats.misses++
        return Effect.succeed(Option.map(Option.fromNullable(hit), (e) => e.value))
      }
      return changes.watching((mark) => {
        /** Puts the entry back when it was not handed out — unless this process changed the key meanwhile. */
        const putBack = () => {
          if (hit !== undefined && !changes.changedSince(key, mark)) memory.set(key, hit)
        }
        const waiting = afterFlight(mirror, key, () => {
          putBack()
          return take(key)
        })
        if (waiting) return waiting
        const pending = ctx.fromPending(key)
        if (pending === null) return Effect.succeed(Option.none())
        if (pending !== undefined) {
          // Queued, not written: ours alone. The delete joins the same flush, which keeps only it.
          mirror.delete(key)
          return Effect.succeed(pending.expiresAt > now() ? Option.some(pending.value) : Option.none())
        }
        return Effect.flatMap(mirror.attempt("consume", mirror.handle.consume(key), consequence("consume")), (outcome) => {
          if (Either.isRight(outcome)) {
            if (Option.isNone(outcome.right)) {
              metrics.stats.misses++
              mirror.touched()
              return Effect.succeed(outcome.right)
            }
            return Effect.as(hit === undefined ? metrics.count("storeHits") : Effect.void, outcome.right)
          }
          const reason = undecidedReason(outcome.left)
          const answer = answerFor(reason)
          if (answer === "claimed-locally") {
            // Memory answers; the delete lands when the store is back.
            mirror.delete(key)
            return Effect.as(metrics.undecided(reason, answer), Option.map(Option.fromNullable(hit), (e) => e.value))
          }
          // Not handed out: the entry stays, for a retry once the store can decide.
          putBack()
          return Effect.as(metrics.undecided(reason, answer), Option.none())
        })
      })
    })

  /** A failure that retrying will not cure: the store refused the operation itself. */
  const isRefusal = (error: StateStoreError) => undecidedReason(error) === "refused"

  /**
   * What a settle does when this process still has an unwritten change for `key`: it decides
   * against that change — the store's row is behind it. Our own claim still queued (made
   * while the store was out of reach): the settle queues behind it, fenced the same way.
   * Anything else queued (a finalize, a release): the claim is no longer what `key` holds.
   */
  const settleAgainstPending = (key: string, expected: A, queue: () => SettleOutcome): SettleOutcome | undefined => {
    const pending = ctx.fromPending(key)
    if (pending === undefined) return undefined
    return pending !== null && sameValue(pending.value, expected) ? queue() : "stale"
  }

  const replaceIfHeld = (key: string, expected: A, value: A, ttlMillis: number): Effect.Effect<SettleOutcome> =>
    Effect.suspend(() => {
      const createdAt = now()
      const entry = { value, createdAt, expiresAt: createdAt + ttlMillis }
      /** Memory takes the new value unless it holds someone else's (memory-only fencing). */
      const inMemory = (outcome: SettleOutcome): SettleOutcome => {
        if (memoryHolds(key, expected)) {
          memory.set(key, entry)
          changes.changed(key)
        }
        return outcome
      }
      if (mirror === undefined) return Effect.succeed(memoryHolds(key, expected) ? inMemory("done") : "stale")
      const waiting = afterFlight(mirror, key, () => replaceIfHeld(key, expected, value, ttlMillis))
      if (waiting) return waiting
      // Queued: lands when the store is back, still fenced — if the mirror still takes changes.
      const queued = (): SettleOutcome => {
        if (!mirror.accepting()) return "refused"
        mirror.register(key, value, entry.createdAt, entry.expiresAt, expected)
        return inMemory("queued")
      }
      /** The store could not: queue it (still fenced) — unless it refused it. */
      const failed = (error: StateStoreError): SettleOutcome => (isRefusal(error) ? "refused" : queued())
      const againstPending = settleAgainstPending(key, expected, queued)
      if (againstPending !== undefined) return Effect.succeed(againstPending)
      const options = { ttl: ttlMillis }
      const because = () => "the finalize is queued for the store"
      return Effect.flatMap(mirror.attempt("finalize", mirror.handle.replaceIfEqual(key, expected, value, options), because), (replaced) => {
        if (Either.isLeft(replaced)) return Effect.succeed(failed(replaced.left))
        if (replaced.right) return Effect.succeed(inMemory("done"))
        // Not ours any more — or nothing live there: a claim that expired unclaimed is still ours to finalize.
        return Effect.map(mirror.attempt("finalize", mirror.handle.registerIfAbsent(key, value, options), because), (absent): SettleOutcome => {
          if (Either.isLeft(absent)) return failed(absent.left)
          if (absent.right) return inMemory("done")
          const current = memory.get(key, now())
          if (current !== undefined && sameValue(current.value, expected)) {
            memory.delete(key)
            changes.changed(key)
          }
          return "stale"
        })
      })
    })

  const removeIfHeld = (key: string, expected: A): Effect.Effect<SettleOutcome> =>
    Effect.suspend(() => {
      const fromMemory = () => {
        const current = memory.get(key, now())
        const ours = current !== undefined && sameValue(current.value, expected)
        if (ours) {
          memory.delete(key)
          changes.changed(key)
        }
        return ours
      }
      if (mirror === undefined) return Effect.succeed<SettleOutcome>(fromMemory() ? "done" : "stale")
      const waiting = afterFlight(mirror, key, () => removeIfHeld(key, expected))
      if (waiting) return waiting
      const queued = (): SettleOutcome => {
        if (!mirror.accepting()) return "refused"
        fromMemory()
        mirror.delete(key, expected)
        return "queued"
      }
      const againstPending = settleAgainstPending(key, expected, queued)
      if (againstPending !== undefined) return Effect.succeed(againstPending)
      return Effect.map(
        mirror.attempt("release", mirror.handle.deleteIfEqual(key, expected), () => "the release is queued for the store"),
        (outcome): SettleOutcome => {
          if (Either.isLeft(outcome)) return isRefusal(outcome.left) ? "refused" : queued()
          fromMemory()
          return outcome.right ? "done" : "stale"
        }
      )
    })

  return { claim, take, replaceIfHeld, removeIfHeld }
}
