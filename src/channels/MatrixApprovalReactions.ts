/**
 * Matrix approval reactions: which event is a pending approval prompt, so a ✅ / ♾️ / ❌
 * reaction on it resolves the approval — also after a restart when persistence is on.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type CacheSpec, channelLayers, ttlMillisOr } from "../layers/channelCache.js"

/** What a reaction decides: ✅ allow-once, ♾️ allow-always, ❌ deny. */
export const Decision = Schema.Literal("allow-once", "allow-always", "deny")
/** @see Decision */
export type Decision = typeof Decision.Type

/** What a reaction target resolves to. */
export const ApprovalTarget = Schema.Struct({ approvalId: Schema.String, allowedDecisions: Schema.Array(Decision) })
/** @see ApprovalTarget */
export type ApprovalTarget = typeof ApprovalTarget.Type

/** Reference constants: 24 h; 5 000 prompts in memory, 1 000 in the store. */
export const spec: CacheSpec<ApprovalTarget, typeof ApprovalTarget.Encoded> = {
  feature: "approval-reactions",
  namespace: "matrix.approval-reactions",
  schema: ApprovalTarget,
  memoryMaxEntries: 5000,
  storeMaxEntries: 1000,
  ttl: Duration.hours(24)
}

/** ✅ allow-once, ♾️ allow-always, ❌ deny — with or without the emoji variation selector. */
export const decisionOf = (reactionKey: string): Decision | undefined => {
  switch (reactionKey.replace(/\uFE0F/g, "")) {
    case "\u2705":
      return "allow-once"
    case "\u267E":
      return "allow-always"
    case "\u274C":
      return "deny"
    default:
      return undefined
  }
}

/** A room event. */
export interface EventRef {
  readonly roomId: string
  readonly eventId: string
}

const eventKey = (ref: EventRef) => `${ref.roomId}:${ref.eventId}`

/** Matrix approval reaction targets. Sync members are memory-fast; `resolve` never fails. */
export class MatrixApprovalReactions extends Context.Tag("channel-state/MatrixApprovalReactions")<
  MatrixApprovalReactions,
  {
    /** Marks the event as the prompt of `approvalId` for `ttl` (default 24 h). Sync; the store write is queued. */
    readonly register: (target: EventRef & ApprovalTarget & { readonly ttl?: Duration.DurationInput | undefined }) => void
    /** Forgets the prompt (memory now, store queued); it never comes back after a restart. Sync. */
    readonly unregister: (ref: EventRef) => void
    /**
     * The decision a reaction means on a registered prompt, when it is one of the allowed
     * decisions; none for other events, other emoji or disallowed decisions. Never fails.
     */
    readonly resolve: (reaction: EventRef & { readonly reactionKey: string }) => Effect.Effect<Option.Option<{ readonly approvalId: string; readonly decision: Decision }>>
  }
>() {}

const layers = channelLayers(MatrixApprovalReactions, (openCache) =>
  Effect.map(openCache(spec), (cache) => ({
    register: (target) => {
      const createdAt = cache.now()
      const expiresAt = createdAt + ttlMillisOr(target.ttl, spec.ttl)
      cache.set(eventKey(target), { approvalId: target.approvalId, allowedDecisions: [...target.allowedDecisions] }, createdAt, expiresAt)
    },
    unregister: (ref) => cache.delete(eventKey(ref)),
    resolve: (reaction) => {
      const decision = decisionOf(reaction.reactionKey)
      if (decision === undefined) return Effect.succeed(Option.none())
      return Effect.map(
        cache.lookup(eventKey(reaction)),
        Option.flatMap(({ value }) => (value.allowedDecisions.includes(decision) ? Option.some({ approvalId: value.approvalId, decision }) : Option.none()))
      )
    }
  }))
)

/** Memory only: today's process-local behaviour; nothing is opened or written. */
export const layer = layers.layer
/** Mirrored into the store namespace `matrix.approval-reactions`. Needs `KeyedStore`. */
export const layerPersistent = layers.layerPersistent
/** `layer` or `layerPersistent`, as `plugins.entries.<pluginId>.config.experimentalPersistentState` says. */
export const layerConfig = layers.layerConfig
