/**
 * Builds a channel's {@link MirroredCache} in memory mode or persistent mode from one spec,
 * so every channel gets the same layering rules.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { PluginStateConfigError } from "../PluginStateConfigError.js"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { KeyedStore } from "../KeyedStore.js"
import { StateStoreError } from "../StateStoreError.js"
import { makeCacheMetrics } from "./mirror/CacheMetrics.js"
import { makeMirroredCache, type MirroredCache, type UndecidedPolicy } from "./mirror/MirroredCache.js"
import { layerFromConfig } from "../PersistenceConfig.js"
import { type MirrorSettings, makeStoreMirror, mirrorSettingRules } from "./mirror/StoreMirror.js"
import { firstProblem, oneOf, optional } from "./settingsCheck.js"

/** What a channel cache is: its namespace, value schema and the reference bounds. */
export interface CacheSpec<A, I> {
  /** For logs: e.g. `thread-participation`. */
  readonly feature: string
  /** The keyed-store namespace, e.g. `slack.thread-participation`. */
  readonly namespace: string
  readonly schema: Schema.Schema<A, I>
  readonly memoryMaxEntries: number
  readonly storeMaxEntries: number
  /** The namespace's default TTL in the store (entries carry their own expiry). */
  readonly ttl: Duration.DurationInput
  /** Whether two values are the same (fenced settles compare with it); default: the same object. */
  readonly sameValue?: ((a: A, b: A) => boolean) | undefined
}

/** Options of a persistent channel layer. */
export interface PersistentOptions {
  /** The plugin id: the owner of the rows. */
  readonly pluginId: string
  /** Write-behind tuning; defaults suit production. */
  readonly mirror?: Partial<MirrorSettings> | undefined
  /**
   * What a claim (BlueBubbles, Feishu) or a one-shot consume (Discord, Matrix) answers when
   * the store is out of reach — down, unopenable, read-only, backing off. Default: by
   * backend, `claim-locally` on SQLite (one instance), `in-flight` on PostgreSQL (several).
   * Contention past the store's `lockWait` always answers in-flight.
   */
  readonly whenUnreachable?: UndecidedPolicy | undefined
}

/** A caller-given TTL in ms, or `fallback` when it is absent or not a positive duration (sync paths never throw). */
export const ttlMillisOr = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number => {
  const decoded = input === undefined ? Option.none() : Duration.decodeUnknown(input)
  const millis = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : Number.NaN
  return millis > 0 && Number.isFinite(millis) ? millis : Duration.toMillis(fallback)
}

const clockNow = Effect.map(Effect.clock, (clock) => () => clock.unsafeCurrentTimeMillis())

/** The memory-only cache: today's behaviour, nothing opened, nothing written. */
export const memoryCache = <A, I>(spec: CacheSpec<A, I>, pluginId = "memory"): Effect.Effect<MirroredCache<A>> =>
  Effect.map(clockNow, (now) =>
    makeMirroredCache<A>({
      maxEntries: spec.memoryMaxEntries,
      now,
      metrics: makeCacheMetrics(pluginId, spec.namespace),
      mirror: undefined,
      sameValue: spec.sameValue
    })
  )

/** What the options of a persistent cache must be, beside its mirror settings. */
const persistentOptionRules = { whenUnreachable: optional(oneOf("claim-locally", "in-flight")) } as const

/**
 * The same memory fast path, mirrored into the store namespace `spec.namespace` owned by
 * the plugin. Fails (`InvalidInput`) when the namespace cannot be opened — a plugin id the
 * store cannot use as an owner, say: a cache that silently ran from memory would decide
 * every claim locally. The database itself is never touched here (it may be down: the
 * store reopens it on use).
 */
export const persistentCache = <A, I>(
  spec: CacheSpec<A, I>,
  options: PersistentOptions
): Effect.Effect<MirroredCache<A>, StateStoreError, KeyedStore | Scope.Scope> =>
  Effect.gen(function* () {
    const problem = firstProblem("mirror.", options.mirror, mirrorSettingRules) ?? firstProblem("", options, persistentOptionRules)
    if (problem !== undefined) return yield* new StateStoreError({ reason: "InvalidInput", operation: "open", detail: problem })
    const store = yield* KeyedStore
    const now = yield* clockNow
    const metrics = makeCacheMetrics(options.pluginId, spec.namespace)
    const handle = yield* store.open({ owner: options.pluginId, namespace: spec.namespace, schema: spec.schema, maxEntries: spec.storeMaxEntries, ttl: spec.ttl })
    const mirror = yield* makeStoreMirror(handle, { plugin: options.pluginId, feature: spec.feature }, metrics, options.mirror)
    return makeMirroredCache<A>({
      maxEntries: spec.memoryMaxEntries,
      now,
      metrics,
      mirror,
      sameValue: spec.sameValue,
      whenUnreachable: options.whenUnreachable ?? (store.backend === "pg" ? "in-flight" : "claim-locally")
    })
  })

/** Opens one cache of a channel service, in whichever mode the layer is built. */
export type OpenCache<E, R> = <A, I>(spec: CacheSpec<A, I>) => Effect.Effect<MirroredCache<A>, E, R>

/** How a channel layer selected by config is given its inputs. */
export interface ConfigOptions<E> extends PersistentOptions {
  /** The plugin config object (plain JSON) holding `plugins.entries.<pluginId>.config.experimentalPersistentState`. */
  readonly config: unknown
  /** The store to mirror into when the flag is on; never built when it is off. */
  readonly store: Layer.Layer<KeyedStore, E>
}

/**
 * The three layers every channel service offers, from one constructor `build(openCache)`:
 * - `layer`: memory only (today's behaviour, nothing opened or written);
 * - `layerPersistent(options)`: memory fast path mirrored into the store (needs `KeyedStore`;
 *   fails with `InvalidInput` when the plugin id cannot own store rows);
 * - `layerConfig(options)`: one or the other, as the plugin's config flag says.
 */
export const channelLayers = <Id, S>(tag: Context.Tag<Id, S>, build: <E, R>(openCache: OpenCache<E, R>) => Effect.Effect<S, E, R>) => {
  const layer: Layer.Layer<Id> = Layer.effect(tag, build((spec) => memoryCache(spec)))
  const layerPersistent = (options: PersistentOptions): Layer.Layer<Id, StateStoreError, KeyedStore> =>
    Layer.scoped(tag, build((spec) => persistentCache(spec, options)))
  const layerConfig = <E>(options: ConfigOptions<E>): Layer.Layer<Id, PluginStateConfigError | StateStoreError | E> =>
    layerFromConfig({ ...options, memory: layer, persistent: layerPersistent(options) })
  return { layer, layerPersistent, layerConfig }
}
