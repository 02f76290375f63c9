/**
 * BlueBubbles inbound dedupe: a replayed message (after a restart, or delivered to several
 * instances) is answered once.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { type CacheSpec, channelLayers } from "../layers/channelCache.js"
import { type ClaimOutcome, ClaimState, makeClaimLedger, sameClaim } from "../layers/ClaimLedger.js"

export type { ClaimOutcome } from "../layers/ClaimLedger.js"

/** Reference constants: claims live 30 min, committed ids 7 days; 5 000 in memory, 50 000 in the store. */
export const spec: CacheSpec<ClaimState, typeof ClaimState.Encoded> = {
  feature: "inbound-dedupe",
  namespace: "bluebubbles.inbound-dedupe",
  schema: ClaimState,
  memoryMaxEntries: 5000,
  storeMaxEntries: 50_000,
  ttl: Duration.days(7),
  sameValue: sameClaim
}
/** How long an unfinalized claim blocks other claimers (reference: 30 min). */
export const CLAIM_TTL = Duration.minutes(30)
/** How long a finalized message answers `Duplicate` (reference: 7 days). */
export const COMMITTED_TTL = Duration.days(7)

/** An inbound message to dedupe. Edits (`edited: true`) are tracked apart from the original. */
export interface InboundMessage {
  readonly accountId: string
  readonly guid: string | undefined
  readonly edited?: boolean | undefined
}

/** BlueBubbles inbound dedupe. Every member is an Effect that never fails. */
export class BlueBubblesInboundDedupe extends Context.Tag("channel-state/BlueBubblesInboundDedupe")<
  BlueBubblesInboundDedupe,
  {
    /**
     * Claims the message before handling it: `Claimed` (then `finalize` or `release`),
     * `Duplicate`, `InFlight`, or `Skip` for a missing guid (a guid of any length is deduped;
     * one past the store's key limit is stored by its digest). Atomic in the store
     * when persistent: of several processes claiming one guid, exactly one gets `Claimed`.
     */
    readonly claim: (message: InboundMessage) => Effect.Effect<ClaimOutcome>
  }
>() {}

const layers = channelLayers(BlueBubblesInboundDedupe, (openCache) =>
  Effect.map(openCache(spec), (cache) => {
    const ledger = makeClaimLedger(cache, { claimed: CLAIM_TTL, committed: COMMITTED_TTL })
    return {
      claim: (message: InboundMessage) =>
        ledger.claim(message.guid, (guid) => `${message.accountId}:${guid}${message.edited ? ":updated" : ""}`)
    }
  })
)

/** Memory only: today's process-local behaviour; nothing is opened or written. */
export const layer = layers.layer
/** Claims made atomically in the store namespace `bluebubbles.inbound-dedupe`. Needs `KeyedStore`. */
export const layerPersistent = layers.layerPersistent
/** `layer` or `layerPersistent`, as `plugins.entries.<pluginId>.config.experimentalPersistentState` says. */
export const layerConfig = layers.layerConfig
