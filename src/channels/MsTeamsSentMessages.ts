/**
 * MS Teams sent messages: which messages the bot sent, so a user's reply to one counts as
 * an implicit mention — also after a restart when persistence is on.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { BoundedTtlMap } from "../layers/mirror/BoundedTtlMap.js"
import { type CacheSpec, channelLayers } from "../layers/channelCache.js"

/** What is remembered about a sent message: when it was sent (epoch ms, kept across restarts). */
export const SentMessage = Schema.Struct({ sentAt: Schema.Number })
/** @see SentMessage */
export type SentMessage = typeof SentMessage.Type

/** Reference constants: 24 h; memory pruned past 200 messages per conversation; 1 000 in the store. */
export const spec: CacheSpec<SentMessage, typeof SentMessage.Encoded> = {
  feature: "sent-messages",
  namespace: "msteams.sent-messages",
  schema: SentMessage,
  memoryMaxEntries: 20_000,
  storeMaxEntries: 1000,
  ttl: Duration.hours(24)
}
/** Sent messages kept in memory per conversation; older ones are forgotten from memory only. */
export const MAX_PER_CONVERSATION = 200
/** Conversations whose per-conversation order is tracked at once (oldest forgotten first). */
export const MAX_TRACKED_CONVERSATIONS = 5000

const messageKey = (conversationId: string, messageId: string) => `${conversationId}:${messageId}`

/** MS Teams sent messages. Sync members are memory-only; `check` never fails. */
export class MsTeamsSentMessages extends Context.Tag("channel-state/MsTeamsSentMessages")<
  MsTeamsSentMessages,
  {
    /** Records a message the bot sent. Sync, memory; the store write is queued. */
    readonly record: (conversationId: string, messageId: string) => void
    /** Whether the bot sent it, from memory only. Sync. */
    readonly wasSent: (conversationId: string, messageId: string) => boolean
    /** Memory, then the store (backfilling memory). Never fails. */
    readonly check: (conversationId: string, messageId: string) => Effect.Effect<boolean>
  }
>() {}

const layers = channelLayers(MsTeamsSentMessages, (openCache) =>
  Effect.map(openCache(spec), (cache) => {
    const ttl = Duration.toMillis(spec.ttl)
    // Per conversation, the keys recorded in memory, oldest first: pruned past 200 (memory only).
    const conversations = new BoundedTtlMap<Array<string>>(MAX_TRACKED_CONVERSATIONS)
    return {
      record: (conversationId, messageId) => {
        const sentAt = cache.now()
        const key = messageKey(conversationId, messageId)
        cache.set(key, { sentAt }, sentAt, sentAt + ttl)
        const keys = conversations.get(conversationId, sentAt)?.value ?? []
        keys.push(key)
        if (keys.length > MAX_PER_CONVERSATION) cache.forget(keys.shift() as string)
        conversations.set(conversationId, { value: keys, createdAt: sentAt, expiresAt: sentAt + ttl })
      },
      wasSent: (conversationId, messageId) => cache.get(messageKey(conversationId, messageId)) !== undefined,
      check: (conversationId, messageId) => Effect.map(cache.lookup(messageKey(conversationId, messageId)), Option.isSome)
    }
  })
)

/** Memory only: today's process-local behaviour; nothing is opened or written. */
export const layer = layers.layer
/** Mirrored into the store namespace `msteams.sent-messages`. Needs `KeyedStore`. */
export const layerPersistent = layers.layerPersistent
/** `layer` or `layerPersistent`, as `plugins.entries.<pluginId>.config.experimentalPersistentState` says. */
export const layerConfig = layers.layerConfig
