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
import { Effect, Either, Option } from "effect"
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
 * - `refused`: the store refused it (a full owner, say); nothing changed in the store.
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
}

/** Why the store did not decide, from its failure. */
const undecidedReason = (error: StateStoreError): UndecidedReason =>
  error.reason === "Busy" ? "contended" : OUTAGE_REASONS.has(error.reason) ? "unreachable" : "refused"

/** The decisions of one cache. */
export const makeDecisions = <A>(ctx: DecisionContext<A>) => {
  const { memory, now, metrics, mirror, whenUnreachable, sameValue } = ctx
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
        // Lands when the store is back — only if nobody claimed it there meanwhile.
        mirror.register(key, value, entry.createdAt, entry.expiresAt, value)
        return Effect.as(metrics.undecided(reason, answer), won)
      })
    })

  const take = (key: string): Effect.Effect<Option.Option<A>> =>
    Effect.suspend(() => {
      const hit = ctx.get(key)
      memory.delete(key)
      if (mirror === undefined) {
        if (hit === undefined) metrics.stats.misses++
        return Effect.succeed(Option.map(Option.fromNullable(hit), (e) => e.value))
      }
      const waiting = afterFlight(mirror, key, () => {
        if (hit !== undefined) memory.set(key, hit)
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
          if (Option.isSome(outcome.right) && hit === undefined) metrics.stats.storeHits++
          if (Option.isNone(outcome.right)) metrics.stats.misses++
          return Effect.succeed(outcome.right)
        }
        const reason = undecidedReason(outcome.left)
        const answer = answerFor(reason)
        if (answer === "claimed-locally") {
          // Memory answers; the delete lands when the store is back.
          mirror.delete(key)
          return Effect.as(metrics.undecided(reason, answer), Option.map(Option.fromNullable(hit), (e) => e.value))
        }
        // Not handed out: the entry stays, for a retry once the store can decide.
        if (hit !== undefined) memory.set(key, hit)
        return Effect.as(metrics.undecided(reason, answer), Option.none())
      })
    })

  /** A failure that retrying will not cure: the store refused the operation itself. */
  const isRefusal = (error: StateStoreError) => undecidedReason(error) === "refused"

  const replaceIfHeld = (key: string, expected: A, value: A, ttlMillis: number): Effect.Effect<SettleOutcome> =>
    Effect.suspend(() => {
      const createdAt = now()
      const entry = { value, createdAt, expiresAt: createdAt + ttlMillis }
      /** Memory takes the new value unless it holds someone else's (memory-only fencing). */
      const inMemory = (outcome: SettleOutcome): SettleOutcome => {
        if (memoryHolds(key, expected)) memory.set(key, entry)
        return outcome
      }
      if (mirror === undefined) return Effect.succeed(memoryHolds(key, expected) ? inMemory("done") : "stale")
      const waiting = afterFlight(mirror, key, () => replaceIfHeld(key, expected, value, ttlMillis))
      if (waiting) return waiting
      const queued = (): SettleOutcome => {
        mirror.register(key, value, entry.createdAt, entry.expiresAt, expected)
        return inMemory("queued")
      }
      /** The store could not: queue it (still fenced) — unless it refused it. */
      const failed = (error: StateStoreError): SettleOutcome => (isRefusal(error) ? "refused" : queued())
      // An unwritten change of ours comes first; this lands after it, fenced the same way.
      if (ctx.fromPending(key) !== undefined) return Effect.sync(queued)
      const options = { ttl: ttlMillis }
      const because = () => "the finalize is queued for the store"
      return Effect.flatMap(mirror.attempt("finalize", mirror.handle.replaceIfEqual(key, expected, value, options), because), (replaced) => {
        if (Either.isLeft(replaced)) return Effect.succeed(failed(replaced.left))
        if (replaced.right) return Effect.succeed(inMemory("done"))
        // Not ours any more — or nothing live there: a claim that expired unclaimed is still ours to finalize.
        return Effect.map(mirror.attempt("finalize", mirror.handle.registerIfAbsent(key, value, options), because), (absent): SettleOutcome => {
          if (Either.isLeft(absent)) return failed(absent.left)
          if (absent.right) return inMemory("done")
          if (memory.get(key, now()) !== undefined && memoryHolds(key, expected)) memory.delete(key)
          return "stale"
        })
      })
    })

  const removeIfHeld = (key: string, expected: A): Effect.Effect<SettleOutcome> =>
    Effect.suspend(() => {
      const fromMemory = () => {
        const current = memory.get(key, now())
        if (current !== undefined && sameValue(current.value, expected)) memory.delete(key)
        return current !== undefined && sameValue(current.value, expected)
      }
      if (mirror === undefined) return Effect.succeed<SettleOutcome>(fromMemory() ? "done" : "stale")
      const waiting = afterFlight(mirror, key, () => removeIfHeld(key, expected))
      if (waiting) return waiting
      const queued = (): SettleOutcome => {
        fromMemory()
        mirror.delete(key, expected)
        return "queued"
      }
      if (ctx.fromPending(key) !== undefined) return Effect.sync(queued)
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
