/**
 * Discord component and modal registries: buttons, selects and modals stay answerable for
 * their TTL, across restarts when persistence is on, and are one-shot unless `reusable`.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type CacheSpec, channelLayers, ttlMillisOr } from "../layers/channelCache.js"
import type { MirroredCache } from "../layers/mirror/MirroredCache.js"

const Common = {
  callbackData: Schema.optional(Schema.String),
  sessionKey: Schema.optional(Schema.String),
  agentId: Schema.optional(Schema.String),
  accountId: Schema.optional(Schema.String),
  reusable: Schema.optional(Schema.Boolean),
  allowedUsers: Schema.optional(Schema.Array(Schema.String)),
  messageId: Schema.optional(Schema.String),
  /** Epoch ms, set at registration and kept across restarts. */
  createdAt: Schema.Number,
  /** Epoch ms, set at registration and kept across restarts. */
  expiresAt: Schema.Number
}

/** A registered button, select or modal trigger. */
export const ComponentEntry = Schema.Struct({
  id: Schema.String,
  kind: Schema.Literal("button", "select", "modal-trigger"),
  label: Schema.String,
  options: Schema.optional(Schema.Array(Schema.Struct({ label: Schema.String, value: Schema.String, description: Schema.optional(Schema.String) }))),
  modalId: Schema.optional(Schema.String),
  ...Common
})
/** A stored component, with its registration timestamps. */
export type ComponentEntry = typeof ComponentEntry.Type

/** A registered modal. */
export const ModalEntry = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  fields: Schema.Array(
    Schema.Struct({
      id: Schema.String,
      label: Schema.String,
      style: Schema.optional(Schema.Literal("short", "paragraph")),
      required: Schema.optional(Schema.Boolean),
      placeholder: Schema.optional(Schema.String)
    })
  ),
  ...Common
})
/** A stored modal, with its registration timestamps. */
export type ModalEntry = typeof ModalEntry.Type

/** What a caller registers: the entry without its timestamps (and messageId, set per batch). */
export type NewComponent = Omit<ComponentEntry, "createdAt" | "expiresAt">
/** A modal as registered (timestamps are added by `register`). */
export type NewModal = Omit<ModalEntry, "createdAt" | "expiresAt">

/** Reference constants: 30 min per registration; 500 rows per registry in the store. */
export const DEFAULT_TTL = Duration.minutes(30)
/** The component registry: namespace `discord.components`, 5 000 in memory, 500 in the store. */
export const componentSpec: CacheSpec<ComponentEntry, typeof ComponentEntry.Encoded> = {
  feature: "components",
  namespace: "discord.components",
  schema: ComponentEntry,
  memoryMaxEntries: 5000,
  storeMaxEntries: 500,
  ttl: DEFAULT_TTL
}
/** The modal registry: namespace `discord.modals`, 5 000 in memory, 500 in the store. */
export const modalSpec: CacheSpec<ModalEntry, typeof ModalEntry.Encoded> = {
  feature: "modals",
  namespace: "discord.modals",
  schema: ModalEntry,
  memoryMaxEntries: 5000,
  storeMaxEntries: 500,
  ttl: DEFAULT_TTL
}

/** Which entry to resolve; `consume` defaults to `true` (one-shot), `false` peeks. */
export interface ResolveRequest {
  readonly id: string
  readonly consume?: boolean | undefined
}

/**
 * Discord's component + modal registries. `register` is synchronous and memory-fast (the
 * store write is queued); `resolve*` are Effects that never fail.
 */
export class DiscordInteractionRegistry extends Context.Tag("channel-state/DiscordInteractionRegistry")<
  DiscordInteractionRegistry,
  {
    /** Registers components and modals for `ttl` (default 30 min), stamped with `messageId`. Sync; never throws. */
    readonly register: (registration: {
      readonly entries?: ReadonlyArray<NewComponent> | undefined
      readonly modals?: ReadonlyArray<NewModal> | undefined
      readonly ttl?: Duration.DurationInput | undefined
      readonly messageId?: string | undefined
    }) => void
    /**
     * The live component. Consuming (the default) removes it from memory and the store
     * atomically — of two instances resolving one id at once, one gets it — unless the entry
     * is `reusable`. Expired: none. Never fails.
     */
    readonly resolveComponent: (request: ResolveRequest) => Effect.Effect<Option.Option<ComponentEntry>>
    /** The live modal; same rules as `resolveComponent`. Never fails. */
    readonly resolveModal: (request: ResolveRequest) => Effect.Effect<Option.Option<ModalEntry>>
  }
>() {}

/** Resolve with one-shot semantics over one registry's cache. */
const resolver =
  <E extends { readonly reusable?: boolean | undefined }>(cache: MirroredCache<E>) =>
  (request: ResolveRequest): Effect.Effect<Option.Option<E>> =>
    Effect.flatMap(cache.lookup(request.id), (found) => {
      if (Option.isNone(found)) return Effect.succeed(Option.none())
      const entry = found.value.value
      return request.consume === false || entry.reusable === true ? Effect.succeed(Option.some(entry)) : cache.take(request.id)
    })

const layers = channelLayers(DiscordInteractionRegistry, (openCache) =>
  Effect.map(Effect.all([openCache(componentSpec), openCache(modalSpec)]), ([components, modals]) => ({
    register: (registration) => {
      const createdAt = components.now()
      const expiresAt = createdAt + ttlMillisOr(registration.ttl, DEFAULT_TTL)
      const stamp = registration.messageId === undefined ? { createdAt, expiresAt } : { createdAt, expiresAt, messageId: registration.messageId }
      for (const entry of registration.entries ?? []) components.set(entry.id, { ...entry, ...stamp }, createdAt, expiresAt)
      for (const modal of registration.modals ?? []) modals.set(modal.id, { ...modal, ...stamp }, createdAt, expiresAt)
    },
    resolveComponent: resolver(components),
    resolveModal: resolver(modals)
  }))
)

/** Memory only: today's process-local behaviour; nothing is opened or written. */
export const layer = layers.layer
/** Mirrored into `discord.components` and `discord.modals`. Needs `KeyedStore`. */
export const layerPersistent = layers.layerPersistent
/** `layer` or `layerPersistent`, as `plugins.entries.<pluginId>.config.experimentalPersistentState` says. */
export const layerConfig = layers.layerConfig
