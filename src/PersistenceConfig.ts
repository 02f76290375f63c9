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
 * off, `store` is never built: no file is created and nothing is written. If the store cannot
 * be built (bad path, newer schema, unreachable server) the error is logged and the memory
 * layer is provided: persistence failures never stop a plugin. Fails only on a bad flag.
 */
export const layerFromConfig = <S, E>(options: {
  readonly pluginId: string
  readonly config: unknown
  readonly memory: Layer.Layer<S>
  readonly persistent: Layer.Layer<S, never, KeyedStore>
  readonly store: Layer.Layer<KeyedStore, E>
}): Layer.Layer<S, ConfigError.ConfigError> =>
  Layer.unwrapEffect(
    Effect.map(persistentStateEnabled(options.config, options.pluginId), (enabled) =>
      enabled
        ? Layer.provide(options.persistent, options.store).pipe(
            Layer.catchAll((error) =>
              Layer.merge(
                options.memory,
                Layer.effectDiscard(
                  Effect.logError("channel-state: the state store could not be opened; running from memory only", error).pipe(
                    Effect.annotateLogs({ plugin: options.pluginId })
                  )
                )
              )
            )
          )
        : options.memory
    )
  )
