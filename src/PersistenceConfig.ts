/**
 * The per-plugin opt-in: `plugins.entries.<pluginId>.config.experimentalPersistentState`
 * in the plugin config object (plain JSON, as the gateway hands it over), default `false`.
 *
 * @module
 */
import { Effect, Layer } from "effect"
import { describeValue } from "./layers/settingsCheck.js"
import { PluginStateConfigError } from "./PluginStateConfigError.js"
import type { KeyedStore } from "./KeyedStore.js"

/** The path of the flag for `pluginId`, as config path segments. */
export const flagPath = (pluginId: string): ReadonlyArray<string> => ["plugins", "entries", pluginId, "config", "experimentalPersistentState"]

const configError = (path: ReadonlyArray<string>, value: unknown, expected: string) => {
  const at = path.length === 0 ? "config" : path.join(".")
  return new PluginStateConfigError({ path: at, message: `${at} is ${describeValue(value)}: ${expected}` })
}

/**
 * Reads the flag strictly: absent (anywhere along the path) is `false`; a boolean is itself;
 * anything else fails with a {@link PluginStateConfigError} naming the path and the value
 * found — as does a config that is not an object, or is the plugin's own section
 * (`{ experimentalPersistentState: true }`) instead of the whole gateway config. Pure; opens nothing.
 */
export const persistentStateEnabled = (config: unknown, pluginId: string): Effect.Effect<boolean, PluginStateConfigError> =>
  Effect.suspend(() => {
    const path = flagPath(pluginId)
    const whole = `the whole gateway config ({ plugins: { entries: { ${JSON.stringify(pluginId)}: { config: { experimentalPersistentState: true } } } } })`
    if (config !== undefined && config !== null && (typeof config !== "object" || Array.isArray(config))) {
      return Effect.fail(configError([], config, `expected ${whole}`))
    }
    if (config !== undefined && config !== null && !("plugins" in config) && "experimentalPersistentState" in config) {
      return Effect.fail(configError([], config, `that is the plugin's own config section; pass ${whole}`))
    }
    let node: unknown = config
    for (const [index, segment] of path.entries()) {
      if (node === undefined || node === null) return Effect.succeed(false)
      if (typeof node !== "object" || Array.isArray(node)) return Effect.fail(configError(path.slice(0, index), node, "expected an object"))
      node = (node as Record<string, unknown>)[segment]
    }
    if (node === undefined || node === null) return Effect.succeed(false)
    if (typeof node === "boolean") return Effect.succeed(node)
    return Effect.fail(configError(path, node, "expected true or false"))
  })

/**
 * Provides `persistent` (with `store`) when the plugin opted in, else `memory`. With the flag
 * off, `store` is never built: no file is created and nothing is written. Fails with a
 * `PluginStateConfigError` on a bad flag, and — with the flag on — with what building the store or the
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
}): Layer.Layer<S, PluginStateConfigError | E | E2> =>
  Layer.unwrapEffect(
    Effect.map(persistentStateEnabled(options.config, options.pluginId), (enabled) =>
      enabled ? Layer.provide(options.persistent, options.store) : options.memory
    )
  )
