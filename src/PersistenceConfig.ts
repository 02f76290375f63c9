/**
 * The per-plugin opt-in: `plugins.entries.<pluginId>.config.experimentalPersistentState`
 * in the plugin config object (plain JSON, as the gateway hands it over), default `false`.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { describeValue, unreadable } from "./layers/settingsCheck.js"
import { PluginStateConfigError } from "./PluginStateConfigError.js"
import type { KeyedStore } from "./KeyedStore.js"

/** The path of the flag for `pluginId`, as config path segments. */
export const flagPath = (pluginId: string): ReadonlyArray<string> => ["plugins", "entries", pluginId, "config", "experimentalPersistentState"]

/** A path as a person reads it: segments joined by dots, any that is not a plain name quoted. */
const pathText = (path: ReadonlyArray<string>): string =>
  path.length === 0 ? "config" : path.map((segment) => (/^[A-Za-z0-9_-]+$/.test(segment) ? segment : JSON.stringify(segment))).join(".")

const configError = (path: ReadonlyArray<string>, value: unknown, expected: string) => {
  const at = pathText(path)
  return new PluginStateConfigError({ path: at, message: `${at} is ${describeValue(value)}: ${expected}` })
}

/**
 * Reads the flag strictly: absent (anywhere along the path) is `false`; a boolean is itself;
 * anything else fails with a {@link PluginStateConfigError} naming the path and the value
 * found — as does a config that is not an object, that is the plugin's own section
 * (`{ experimentalPersistentState: true }`) or its entry (`{ config: { … } }`) instead of the
 * whole gateway config, or that cannot be read (a getter or proxy that throws). Only own
 * properties count. Pure; opens nothing.
 */
export const persistentStateEnabled = (config: unknown, pluginId: string): Effect.Effect<boolean, PluginStateConfigError> =>
  Effect.suspend(() => {
    const path = flagPath(pluginId)
    const reading: Array<string> = []
    try {
      return readFlag(config, pluginId, path, reading)
    } catch (error) {
      const at = pathText(reading)
      return Effect.fail(new PluginStateConfigError({ path: at, message: unreadable(at, error) }))
    }
  })

/** Walks `path`; `reading` holds the path being read, for the error when a read throws. */
const readFlag = (config: unknown, pluginId: string, path: ReadonlyArray<string>, reading: Array<string>): Effect.Effect<boolean, PluginStateConfigError> => {
  const whole = `the whole gateway config ({ plugins: { entries: { ${JSON.stringify(pluginId)}: { config: { experimentalPersistentState: true } } } } })`
  if (config !== undefined && config !== null && (typeof config !== "object" || Array.isArray(config))) {
    return Effect.fail(configError([], config, `expected ${whole}`))
  }
  if (config !== undefined && config !== null && !Object.hasOwn(config, "plugins")) {
    if (Object.hasOwn(config, "experimentalPersistentState")) return Effect.fail(configError([], config, `that is the plugin's own config section; pass ${whole}`))
    if (Object.hasOwn(config, "config")) return Effect.fail(configError([], config, `that is the plugin's entry; pass ${whole}`))
  }
  let node: unknown = config
  for (const [index, segment] of path.entries()) {
    if (node === undefined || node === null) return Effect.succeed(false)
    if (typeof node !== "object" || Array.isArray(node)) return Effect.fail(configError(path.slice(0, index), node, "expected an object"))
    reading.splice(0, reading.length, ...path.slice(0, index + 1))
    node = Object.hasOwn(node, segment) ? (node as Record<string, unknown>)[segment] : undefined
  }
  if (node === undefined || node === null) return Effect.succeed(false)
  if (typeof node === "boolean") return Effect.succeed(node)
  return Effect.fail(configError(path, node, "expected true or false"))
}

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
