/**
 * The dedupe ledger under BlueBubbles and Feishu: claim a message id before handling it,
 * then finalize (a duplicate from then on) or release (someone may claim it again).
 *
 * @internal
 */
import { Duration, Effect, Option, Schema } from "effect"
import type { MirroredCache } from "./mirror/MirroredCache.js"
import { MAX_KEY_BYTES } from "./store/storeRules.js"

/** A claim as stored: in flight (`claimed`) or done (`committed`), with when that happened (epoch ms). */
export const ClaimState = Schema.Struct({ status: Schema.Literal("claimed", "committed"), at: Schema.Number })
/** @see ClaimState */
export type ClaimState = typeof ClaimState.Type

/** What a claim answered. */
export type ClaimOutcome =
  /** This caller owns the message: handle it, then `finalize` (or `release` on failure). Both never fail. */
  | { readonly _tag: "Claimed"; readonly finalize: Effect.Effect<void>; readonly release: Effect.Effect<void> }
  /** Already handled (committed): drop it. */
  | { readonly _tag: "Duplicate" }
  /** Claimed by someone else (this or another process) and not final yet: drop it or retry later. */
  | { readonly _tag: "InFlight" }
  /** The id cannot be tracked (missing or too long): handle it without dedupe. */
  | { readonly _tag: "Skip"; readonly reason: string }

const duplicate: ClaimOutcome = { _tag: "Duplicate" }
const skipMissing: ClaimOutcome = { _tag: "Skip", reason: "message has no id" }
const skipLong: ClaimOutcome = { _tag: "Skip", reason: `message key is longer than ${MAX_KEY_BYTES} bytes` }
const inFlight: ClaimOutcome = { _tag: "InFlight" }

/** Builds the ledger over a cache of {@link ClaimState}s. */
export const makeClaimLedger = (
  cache: MirroredCache<ClaimState>,
  ttls: { readonly claimed: Duration.DurationInput; readonly committed: Duration.DurationInput }
) => {
  const claimedMillis = Duration.toMillis(ttls.claimed)
  const committedMillis = Duration.toMillis(ttls.committed)

  const finalize = (key: string) =>
    Effect.suspend(() => {
      const at = cache.now()
      return cache.write(key, { status: "committed", at }, at, at + committedMillis)
    })
  const release = (key: string) => cache.remove(key)

  const attempt = (key: string, retriesLeft: number): Effect.Effect<ClaimOutcome> =>
    Effect.suspend(() => {
      const at = cache.now()
      return Effect.flatMap(cache.claim(key, { status: "claimed", at }, at, at + claimedMillis), (result) => {
        if (result._tag === "Won") return Effect.succeed<ClaimOutcome>({ _tag: "Claimed", finalize: finalize(key), release: release(key) })
        if (Option.isSome(result.existing)) return Effect.succeed(result.existing.value.value.status === "committed" ? duplicate : inFlight)
        // Released between our claim and our read: try once more.
        return retriesLeft > 0 ? attempt(key, retriesLeft - 1) : Effect.succeed(inFlight)
      })
    })

  return {
    /**
     * Atomic claim (in the store when persistent) of the message `id`, tracked under `key(id)`.
     * A missing id or an over-long key answers `Skip`. Never fails.
     */
    claim: (id: string | undefined, key: (id: string) => string): Effect.Effect<ClaimOutcome> => {
      if (typeof id !== "string" || id.length === 0) return Effect.succeed(skipMissing)
      const full = key(id)
      return Buffer.byteLength(full) > MAX_KEY_BYTES ? Effect.succeed(skipLong) : attempt(full, 1)
    },
    /** Marks `key` handled: later claims answer `Duplicate`. Never fails. */
    finalize,
    /** Drops the claim so `key` can be claimed again. Never fails. */
    release,
    /**
     * Whether `key` was finalized (memory, then store). A claim read from the store is not
     * cached: it may be released there at any moment. Never fails.
     */
    isCommitted: (key: string) =>
      Effect.map(cache.peek(key), (found) => Option.isSome(found) && found.value.value.status === "committed")
  }
}
