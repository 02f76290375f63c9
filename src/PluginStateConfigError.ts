/**
 * The one error of a configuration a plugin cannot start with.
 *
 * @module
 */
import * as Data from "effect/Data"

/**
 * A setting that is wrong: the flag, the config object's shape, or a store, mirror or runtime
 * option (often parsed from JSON or the environment). `message` is one line naming the
 * option's full path and the value found, e.g.
 * `plugins.entries.slack.config.experimentalPersistentState is "yes": expected true or false`.
 * Nothing has been opened or written when it is raised. `createPluginState` rejects with it;
 * `PluginRuntime.layer` and the channels' `layerConfig` fail with it.
 */
export class PluginStateConfigError extends Data.TaggedError("PluginStateConfigError")<{
  /** The option's path (`store.sweepInterval`, `plugins.entries.slack.config.experimentalPersistentState`; `config` for the object itself). */
  readonly path: string
  /** The whole line: path, value, what was expected. */
  readonly message: string
}> {}
