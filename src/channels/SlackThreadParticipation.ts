/**
 * Slack thread participation: which threads the bot has replied in, so untagged replies in
 * those threads are still answered in channels that require a mention.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type CacheSpec, channelLayers } from "../layers/channelCache.js"
import type { MirroredCache } from "../layers/mirror/MirroredCache.js"

/** What is remembered about a thread. `repliedAt` is epoch ms and survives restarts unchanged. */
export const Participation = Schema.Struct({ agentId: Schema.optional(Schema.String), repliedAt: Schema.Number })
/** @see Participation */
export type Participation = typeof Participation.Type

/** Reference constants: 24 h TTL, 5 000 threads in memory, 1 000 in the store. */
export const spec: CacheSpec<Participation, typeof Participation.Encoded> = {
  feature: "thread-participation",
  namespace: "slack.thread-participation",
  schema: Participation,
  memoryMaxEntries: 5000,
  storeMaxEntries: 1000,
  ttl: Duration.hours(24)
}

const threadKey = (accountId: string, channelId: string, threadTs: string) => `${accountId}:${channelId}:${threadTs}`

/**
 * Slack thread participation. Plain functions are synchronous and memory-only (they never
 * block, never throw); Effects may read the store and never fail (a store failure is a miss).
 */
export class SlackThreadParticipation extends Context.Tag("channel-state/SlackThreadParticipation")<
  SlackThreadParticipation,
  {
    /** Records that the bot replied in the thread. Sync, memory; the store write is queued (write-behind). */
    readonly record: (accountId: string, channelId: string, threadTs: string, options?: { readonly agentId?: string | undefined }) => void
    /** Whether the bot replied in the thread, from memory only. Sync. */
    readonly has: (accountId: string, channelId: string, threadTs: string) => boolean
    /** Memory, then the store (backfilling memory with the original `repliedAt`). Never fails. */
    readonly check: (accountId: string, channelId: string, threadTs: string) => Effect.Effect<boolean>
    /** Like `check`, with what was recorded. Never fails. */
    readonly get: (accountId: string, channelId: string, threadTs: string) => Effect.Effect<Option.Option<Participation>>
  }
>() {}

const make = (cache: MirroredCache<Participation>): SlackThreadParticipation["Type"] => {
  const ttl = Duration.toMillis(spec.ttl)
  const get = (accountId: string, channelId: string, threadTs: string) =>
    Effect.map(cache.lookup(threadKey(accountId, channelId, threadTs)), Option.map((entry) => entry.value))
  return {
    record: (accountId, channelId, threadTs, options) => {
      const repliedAt = cache.now()
      const value: Participation = options?.agentId === undefined ? { repliedAt } : { agentId: options.agentId, repliedAt }
      cache.set(threadKey(accountId, channelId, threadTs), value, repliedAt, repliedAt + ttl)
    },
    has: (accountId, channelId, threadTs) => cache.get(threadKey(accountId, channelId, threadTs)) !== undefined,
    check: (accountId, channelId, threadTs) => Effect.map(get(accountId, channelId, threadTs), Option.isSome),
    get
  }
}

const layers = channelLayers(SlackThreadParticipation, (openCache) => Effect.map(openCache(spec), make))

/** Memory only: today's process-local behaviour; nothing is opened or written. */
export const layer = layers.layer
/** The memory fast path mirrored into the store namespace `slack.thread-participation`. Needs `KeyedStore`. */
export const layerPersistent = layers.layerPersistent
/** `layer` or `layerPersistent`, as `plugins.entries.<pluginId>.config.experimentalPersistentState` says. */
export const layerConfig = layers.layerConfig
