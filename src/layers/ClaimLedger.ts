/**
 * The dedupe ledger under BlueBubbles and Feishu: claim a message id before handling it,
 * then finalize (a duplicate from then on) or release (someone may claim it again).
 *
 * Every claim carries a token unique to it, and `finalize` / `release` act only while the
 * key still holds that very claim (fencing): a handler whose claim expired while it was
 * still running, and was claimed by someone else, changes nothing and is told `stale`.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { MirroredCache, SettleOutcome } from "./mirror/MirroredCache.js"

/**
 * A claim as stored: in flight (`claimed`) or done (`committed`), with when that happened
 * (epoch ms) and the claim's token (rows written before tokens existed have none).
 */
export const ClaimState = Schema.Struct({
  status: Schema.Literal("claimed", "committed"),
  at: Schema.Number,
  token: Schema.optional(Schema.String)
})
/** @see ClaimState */
export type ClaimState = typeof ClaimState.Type

/** Whether two claim states are the same claim (fencing compares these). */
export const sameClaim = (a: ClaimState, b: ClaimState): boolean => a.status === b.status && a.at === b.at && a.token === b.token

/** What a claim answered. */
export type ClaimOutcome =
  /**
   * This caller owns the message: handle it, then `finalize` (or `release` on failure). Both
   * never fail; they answer `done`, `stale` (the claim expired and someone else holds the
   * message now: nothing changed), `queued` (the store is out of reach: it lands, still
   * fenced, when it is back) or `refused` (the store refused the write).
   */
  | { readonly _tag: "Claimed"; readonly finalize: Effect.Effect<SettleOutcome>; readonly release: Effect.Effect<SettleOutcome> }
  /** Already handled (committed): drop it. */
  | { readonly _tag: "Duplicate" }
  /**
   * Claimed by someone else (this or another process) and not final yet — or the store could
   * not decide (see the undecided policy): do not handle it now; drop it, or retry later.
   */
  | { readonly _tag: "InFlight" }
  /** The message has no id: handle it without dedupe. */
  | { readonly _tag: "Skip"; readonly reason: string }

const duplicate: ClaimOutcome = { _tag: "Duplicate" }
const skipMissing: ClaimOutcome = { _tag: "Skip", reason: "message has no id" }
const inFlight: ClaimOutcome = { _tag: "InFlight" }

/** Builds the ledger over a cache of {@link ClaimState}s. */
export const makeClaimLedger = (
  cache: MirroredCache<ClaimState>,
  ttls: { readonly claimed: Duration.DurationInput; readonly committed: Duration.DurationInput }
) => {
  const claimedMillis = Duration.toMillis(ttls.claimed)
  const committedMillis = Duration.toMillis(ttls.committed)

  const finalizeClaim = (key: string, claim: ClaimState) =>
    Effect.suspend(() => cache.replaceIfHeld(key, claim, { status: "committed", at: cache.now() }, committedMillis))
  const releaseClaim = (key: string, claim: ClaimState) => cache.removeIfHeld(key, claim)

  /** The claim this process holds on `key` in memory, if any. */
  const heldHere = (key: string): ClaimState | undefined => {
    const entry = cache.get(key)
    return entry !== undefined && entry.value.status === "claimed" ? entry.value : undefined
  }

  const attempt = (key: string, retriesLeft: number): Effect.Effect<ClaimOutcome> =>
    Effect.suspend(() => {
      const claim: ClaimState = { status: "claimed", at: cache.now(), token: randomUUID() }
      return Effect.flatMap(cache.claim(key, claim, claimedMillis), (result) => {
        if (result._tag === "Won") return Effect.succeed<ClaimOutcome>({ _tag: "Claimed", finalize: finalizeClaim(key, claim), release: releaseClaim(key, claim) })
        if (result._tag === "Undecided") return Effect.succeed(inFlight)
        if (Option.isSome(result.existing)) return Effect.succeed(result.existing.value.value.status === "committed" ? duplicate : inFlight)
        // Released between our claim and our read: try once more.
        return retriesLeft > 0 ? attempt(key, retriesLeft - 1) : Effect.succeed(inFlight)
      })
    })

  return {
    /**
     * Claims the message `id`, tracked under `key(id)` (ids too long for the store are
     * tracked by their digest). A missing id answers `Skip`. Never fails.
     */
    claim: (id: string | undefined, key: (id: string) => string): Effect.Effect<ClaimOutcome> =>
      typeof id !== "string" || id.length === 0 ? Effect.succeed(skipMissing) : attempt(key(id), 1),
    /**
     * Marks `key` handled, fenced by the claim this process holds on it in memory: `stale`
     * (nothing changed) when it holds none — prefer the `finalize` of the `Claimed` outcome,
     * which carries its claim. Never fails.
     */
    finalize: (key: string): Effect.Effect<SettleOutcome> =>
      Effect.suspend(() => {
        const claim = heldHere(key)
        return claim === undefined ? Effect.succeed<SettleOutcome>("stale") : finalizeClaim(key, claim)
      }),
    /** Drops the claim this process holds on `key`, so it can be claimed again; `stale` when it holds none. Never fails. */
    release: (key: string): Effect.Effect<SettleOutcome> =>
      Effect.suspend(() => {
        const claim = heldHere(key)
        return claim === undefined ? Effect.succeed<SettleOutcome>("stale") : releaseClaim(key, claim)
      }),
    /**
     * Whether `key` was finalized (memory, then store). A claim read from the store is not
     * cached: it may be released there at any moment. Never fails.
     */
    isCommitted: (key: string) => Effect.map(cache.peek(key), (found) => Option.isSome(found) && found.value.value.status === "committed")
  }
}
