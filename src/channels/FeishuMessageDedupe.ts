/**
 * Feishu message dedupe: a redelivered event is processed once.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { type CacheSpec, channelLayers } from "../layers/channelCache.js"
import { type ClaimOutcome, ClaimState, makeClaimLedger, sameClaim } from "../layers/ClaimLedger.js"

import type { SettleOutcome } from "../layers/mirror/MirroredCache.js"

export type { ClaimOutcome } from "../layers/ClaimLedger.js"

/** Reference constants: in flight 5 min, processed 24 h; 1 000 in memory, 10 000 in the store. */
export const spec: CacheSpec<ClaimState, typeof ClaimState.Encoded> = {
  feature: "message-dedupe",
  namespace: "feishu.message-dedupe",
  schema: ClaimState,
  memoryMaxEntries: 1000,
  storeMaxEntries: 10_000,
  ttl: Duration.hours(24),
  sameValue: sameClaim
}
/** How long an in-flight claim blocks redeliveries (reference: 5 min). */
export const IN_FLIGHT_TTL = Duration.minutes(5)
/** How long a processed message answers `Duplicate` (reference: 24 h). */
export const PROCESSED_TTL = Duration.hours(24)

/** A Feishu event: the dedupe namespace (e.g. app or tenant) and the message id. */
export interface FeishuMessage {
  readonly namespace: string
  readonly messageId: string
}

/** Feishu message dedupe. Every member is an Effect that never fails. */
export class FeishuMessageDedupe extends Context.Tag("channel-state/FeishuMessageDedupe")<
  FeishuMessageDedupe,
  {
    /**
     * Claims the message for processing (in flight for 5 min): `Claimed`, `Duplicate`
     * (processed), `InFlight`, or `Skip` (empty id; an id of any length is deduped). Atomic in
     * the store when persistent; see the undecided policy for when the store cannot decide.
     */
    readonly beginProcessing: (message: FeishuMessage) => Effect.Effect<ClaimOutcome>
    /**
     * Marks the message processed for 24 h — fenced by the claim this process holds on it
     * (`stale`, nothing changed, when it holds none any more: the claim expired and was
     * claimed elsewhere). Prefer the `finalize` of the `Claimed` outcome.
     */
    readonly finalize: (message: FeishuMessage) => Effect.Effect<SettleOutcome>
    /** Drops the in-flight claim this process holds so a redelivery is processed; fenced like `finalize`. */
    readonly release: (message: FeishuMessage) => Effect.Effect<SettleOutcome>
    /** Whether the message was processed (memory, then store). */
    readonly hasProcessed: (message: FeishuMessage) => Effect.Effect<boolean>
  }
>() {}

const messageKey = (message: FeishuMessage) => `${message.namespace}:${message.messageId}`

const layers = channelLayers(FeishuMessageDedupe, (openCache) =>
  Effect.map(openCache(spec), (cache) => {
    const ledger = makeClaimLedger(cache, { claimed: IN_FLIGHT_TTL, committed: PROCESSED_TTL })
    return {
      beginProcessing: (message: FeishuMessage) => ledger.claim(message.messageId, () => messageKey(message)),
      finalize: (message: FeishuMessage) => ledger.finalize(messageKey(message)),
      release: (message: FeishuMessage) => ledger.release(messageKey(message)),
      hasProcessed: (message: FeishuMessage) => ledger.isCommitted(messageKey(message))
    }
  })
)

/** Memory only: today's process-local behaviour; nothing is opened or written. */
export const layer = layers.layer
/** Claims made atomically in the store namespace `feishu.message-dedupe`. Needs `KeyedStore`. */
export const layerPersistent = layers.layerPersistent
/** `layer` or `layerPersistent`, as `plugins.entries.<pluginId>.config.experimentalPersistentState` says. */
export const layerConfig = layers.layerConfig
