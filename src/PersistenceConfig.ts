/**
 * The per-plugin opt-in: `plugins.entries.<pluginId>.config.experimentalPersistentState`
 * in the plugin config object (plain JSON, as the gateway hands it over), default `false`.
 *
 * @module
 */
import { ConfigError, Effect, Layer } from "effect"
import type { KeyedStore } from "./KeyedStore.js"

/** The path of the flag for `pluginId`, as config path segments. */
export const flagPath = (pluginId: string): ReadonlyArray<string> => ["plugins", "entries", pluginId, "config", "experimentalPersistentState"]

/**
 * Reads the flag strictly: absent (anywhere along the path) is `false`; a boolean is itself;
 * anything else fails with a `ConfigError` naming the path and the value found. Pure; opens nothing.
 */
export const persistentStateEnabled = (config: unknown, pluginId: string): Effect.Effect<boolean, ConfigError.ConfigError> =>
  Effect.suspend(() => {
    const path = flagPath(pluginId)
    let node: unknown = config
    for (const [index, segment] of path.entries()) {
      if (node === undefined || node === null) return Effect.succeed(false)
      if (typeof node !== "object" || Array.isArray(node)) {
        return Effect.fail(ConfigError.InvalidData(path.slice(0, index), `Expected an object, but received ${describe(node)}`))
      }
      node = (node as Record<string, unknown>)[segment]
    }
    if (node === undefined || node === null) return Effect.succeed(false)
    if (typeof node === "boolean") return Effect.succeed(node)
    return Effect.fail(ConfigError.InvalidData([...path], `Expected true or false, but received ${describe(node)}`))
  })

const describe = (value: unknown): string => {
  const json = JSON.stringify(value)
  return json === undefined ? typeof value : json.length > 60 ? `${json.slice(0, 60)}…` : json
}

/**
 * Provides `persistent` (with `store`) when the plugin opted in, else `memory`. With the flag
 * off, `store` is never built: no file is created and nothing is written. Fails with a
 * `ConfigError` on a bad flag, and — with the flag on — with what building the store or the
 * persistent layer failed with (a plugin id the store cannot use, a store layer of your own
 * that cannot start): the plugin does not start half-persistent. The stores this package
 * builds never fail for a database that is down; they retry it on use.
 */
export const layerFromConfig = <S, E, E2>(options: {
  readonly pluginId: string
  readonly config: unknown
  readonly memory: Layer.Layer<S>
  readonly persistent: Layer.Layer<S, E2, KeyedStore>
  readonly store: Layer.Layer<KeyedStore, E>
}): Layer.Layer<S, ConfigError.ConfigError | E | E2> =>
  Layer.unwrapEffect(
    Effect.map(persistentStateEnabled(options.config, options.pluginId), (enabled) =>
      enabled ? Layer.provide(options.persistent, options.store) : options.memory
    )
  )
