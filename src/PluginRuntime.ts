/**
 * The plugin entrypoint: from a plugin id, the plugin config object and store settings,
 * the layer (and a `ManagedRuntime`) with every channel cache that plugin needs.
 *
 * @module
 */
import * as os from "node:os"
import * as path from "node:path"
import { PluginStateConfigError } from "./PluginStateConfigError.js"
import { type PersistentState, persistentStateLayer } from "./PersistentState.js"
import { persistentStateEnabled } from "./PersistenceConfig.js"
import { describeValue, firstProblem, firstProblemOrUnknown, oneOf, optional, type Rule, text } from "./layers/settingsCheck.js"
import { mirrorSettingRules } from "./layers/mirror/StoreMirror.js"
import { MAX_NAME_BYTES, NAME_PATTERN, storeSettingRules } from "./layers/store/storeRules.js"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as BlueBubbles from "./channels/BlueBubblesInboundDedupe.js"
import * as Discord from "./channels/DiscordInteractionRegistry.js"
import * as Feishu from "./channels/FeishuMessageDedupe.js"
import * as Matrix from "./channels/MatrixApprovalReactions.js"
import * as MsTeams from "./channels/MsTeamsSentMessages.js"
import * as Slack from "./channels/SlackThreadParticipation.js"
import type { KeyedStore } from "./KeyedStore.js"
import type { ConfigOptions } from "./layers/channelCache.js"
import { DEFAULT_SIGNALS, disposeOnSignals } from "./layers/lifetime.js"
import type { UndecidedPolicy } from "./layers/mirror/MirroredCache.js"
import type { MirrorSettings } from "./layers/mirror/StoreMirror.js"
import * as PgStore from "./layers/store/PgStore.js"
import * as SqliteStore from "./layers/store/SqliteStore.js"
import type * as SqlStore from "./layers/store/SqlStore.js"
import { StateStoreError } from "./StateStoreError.js"

/** The channel caches, by name. */
export type ChannelName = "slack" | "discord" | "msteams" | "matrix" | "bluebubbles" | "feishu"
/** Every channel cache name, in the order the runtime merges their layers. */
export const channelNames: ReadonlyArray<ChannelName> = ["slack", "discord", "msteams", "matrix", "bluebubbles", "feishu"]

/** Every channel service a plugin runtime provides. */
export type ChannelServices =
  | Slack.SlackThreadParticipation
  | Discord.DiscordInteractionRegistry
  | MsTeams.MsTeamsSentMessages
  | Matrix.MatrixApprovalReactions
  | BlueBubbles.BlueBubblesInboundDedupe
  | Feishu.FeishuMessageDedupe

/** Where the state lives when a plugin opts in, and the store's settings. */
export interface StoreLocation extends SqlStore.SqlStoreOptions {
  /** The SQLite file (default: {@link defaultSqlitePath}). Ignored when `pgUrl` is set. */
  readonly sqlitePath?: string | undefined
  /** A PostgreSQL URL: use it when several gateway instances share state. */
  readonly pgUrl?: string | undefined
}

/** `$XDG_STATE_HOME/channel-state/state.sqlite`, else `~/.local/state/channel-state/state.sqlite`. */
export const defaultSqlitePath = (): string =>
  path.join(process.env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state"), "channel-state", "state.sqlite")

/**
 * The keyed store at `location`: PostgreSQL when a URL is given, else the SQLite file. A
 * database that cannot be opened at start is retried on use (the caches run from memory
 * meanwhile, and their queued writes land once it is up); a bad path, a newer schema or a
 * non-database file stays unusable until fixed, and says so in the log. A `pgUrl` that is
 * present but empty or undefined (an unset environment variable) fails with `InvalidInput`
 * instead of falling back to SQLite: several instances would each keep their own state.
 */
export const storeLayer = (location: StoreLocation = {}): Layer.Layer<KeyedStore, StateStoreError> => {
  const problem = storeLocationProblem(location, "")
  if (problem !== undefined) return Layer.fail(new StateStoreError({ reason: "InvalidInput", operation: "open", detail: problem }))
  const { sqlitePath, pgUrl, ...settings } = location
  return pgUrl
    ? PgStore.layer({ url: pgUrl, ...settings, retryOpen: true })
    : SqliteStore.layer({ filename: sqlitePath ?? defaultSqlitePath(), ...settings, retryOpen: true })
}

/** The first problem of a store location (`prefix` + the option), or `undefined`. */
const storeLocationProblem = (location: unknown, prefix: string): string | undefined => {
  const problem = firstProblemOrUnknown(prefix, location, { ...storeSettingRules, sqlitePath: optional(text), pgUrl: () => undefined })
  if (problem !== undefined || location === undefined) return problem
  const { pgUrl } = location as StoreLocation
  if ("pgUrl" in (location as object) && (typeof pgUrl !== "string" || pgUrl.trim() === "")) {
    return `${prefix}pgUrl is ${describeValue(pgUrl)}: expected a PostgreSQL URL (postgres://user@host:5432/db); leave pgUrl out to use the SQLite file`
  }
  return undefined
}

/** What the entrypoint needs to know. */
export interface PluginRuntimeOptions {
  /** The plugin id: the owner of its rows, and the key of its entry under `plugins.entries`. */
  readonly pluginId: string
  /** The plugin config object (plain JSON), read for `plugins.entries.<pluginId>.config.experimentalPersistentState`. */
  readonly config: unknown
  /** Where state lives when the flag is on. Nothing is opened when it is off. */
  readonly store?: StoreLocation | undefined
  /** The caches mirrored into the store when the flag is on (default: all six); the others stay memory-only, as {@link PersistentState} `channels` says. */
  readonly channels?: ReadonlyArray<ChannelName> | undefined
  /** Write-behind tuning. */
  readonly mirror?: Partial<MirrorSettings> | undefined
  /** What claims and one-shots answer when the store is out of reach (default by backend: SQLite `claim-locally`, PostgreSQL `in-flight`). */
  readonly whenUnreachable?: UndecidedPolicy | undefined
  /**
   * Opt-in: on SIGTERM/SIGINT (`true`) or the signals listed, dispose the runtime — writing
   * what is queued, then closing the store — and end the process as the signal would, unless
   * the host listens for that signal itself. Off by default: the host owns its signals.
   */
  readonly disposeOnSignals?: boolean | ReadonlyArray<NodeJS.Signals> | undefined
}

/** Each channel's module (its service, `layer`, `layerPersistent`, `layerConfig`), by name. */
export const channelModules = {
  slack: Slack,
  discord: Discord,
  msteams: MsTeams,
  matrix: Matrix,
  bluebubbles: BlueBubbles,
  feishu: Feishu
} as const

interface ChannelLayers<Id> {
  readonly layer: Layer.Layer<Id>
  readonly layerConfig: (options: ConfigOptions<StateStoreError>) => Layer.Layer<Id, PluginStateConfigError | StateStoreError>
}

/** Signals a Node process can listen for (SIGKILL and SIGSTOP cannot be caught). */
const CATCHABLE_SIGNALS: ReadonlySet<string> = new Set(Object.keys(os.constants.signals).filter((name) => name !== "SIGKILL" && name !== "SIGSTOP"))

/** A plugin id the store can use as the owner of its rows. */
const ownerName: Rule = (value) =>
  typeof value === "string" && NAME_PATTERN.test(value) && Buffer.byteLength(value) <= MAX_NAME_BYTES
    ? undefined
    : `expected an owner name for the store: lower-case letters, digits, ".", "_" or "-", starting with a letter or digit, at most ${MAX_NAME_BYTES} bytes`

/**
 * The first problem of the runtime's options, as one line naming the option, or `undefined`.
 * Store and mirror settings only matter (and are only checked) with persistence on.
 */
const optionsProblem = (options: PluginRuntimeOptions, persistent: boolean): string | undefined =>
  firstProblem("", options, {
    pluginId: persistent ? ownerName : text,
    channels: optional((value) =>
      Array.isArray(value) && value.every((name) => (channelNames as ReadonlyArray<unknown>).includes(name))
        ? undefined
        : `expected a list of channel names (${channelNames.join(", ")})`
    ),
    whenUnreachable: optional(oneOf("claim-locally", "in-flight")),
    disposeOnSignals: optional((value) =>
      typeof value === "boolean" || (Array.isArray(value) && value.every((signal) => typeof signal === "string" && CATCHABLE_SIGNALS.has(signal)))
        ? undefined
        : 'expected true, false or a list of signals a process can catch (["SIGTERM", "SIGINT"])'
    )
  }) ?? (persistent ? (storeLocationProblem(options.store, "store.") ?? firstProblemOrUnknown("mirror.", options.mirror, mirrorSettingRules)) : undefined)

/**
 * Every channel service, each as the plugin's config flag says: memory only, or mirrored into
 * one shared store — all six, or only those `channels` lists (the others are then memory-only,
 * and {@link PersistentState} says so). Fails with a {@link PluginStateConfigError} for a flag
 * that is not a boolean or an option that is wrong (one line naming it), and — with the flag
 * on — with an `InvalidInput` `StateStoreError` for a plugin id the store cannot use as an
 * owner. A database that is down does not fail it: the store opens it when it comes back.
 */
export const layer = (options: PluginRuntimeOptions): Layer.Layer<ChannelServices | PersistentState, PluginStateConfigError | StateStoreError> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const persistent = yield* persistentStateEnabled(options.config, options.pluginId)
      const problem = optionsProblem(options, persistent)
      if (problem !== undefined) return yield* new PluginStateConfigError({ path: problem.split(/ (?:is|could not be read)\b/)[0] ?? "config", message: problem })
      const wanted = new Set(options.channels ?? channelNames)
      const store = storeLayer(options.store)
      const pick = <Id>(name: ChannelName, channel: ChannelLayers<Id>): Layer.Layer<Id, PluginStateConfigError | StateStoreError> =>
        wanted.has(name)
          ? channel.layerConfig({ pluginId: options.pluginId, config: options.config, store, mirror: options.mirror, whenUnreachable: options.whenUnreachable })
          : channel.layer
      const persistentChannels = persistent ? channelNames.filter((name) => wanted.has(name)) : []
      return Layer.mergeAll(
        pick("slack", Slack),
        pick("discord", Discord),
        pick("msteams", MsTeams),
        pick("matrix", Matrix),
        pick("bluebubbles", BlueBubbles),
        pick("feishu", Feishu),
        persistentStateLayer(options.pluginId, persistentChannels, persistent ? store : undefined)
      )
    })
  )

/**
 * A `ManagedRuntime` over {@link layer}. `dispose()` writes every queued change (bounded by
 * the mirror's `shutdownFlushTimeout`), then closes the store; with `disposeOnSignals` a
 * SIGTERM/SIGINT does the same.
 */
export const makeRuntime = (options: PluginRuntimeOptions): ManagedRuntime.ManagedRuntime<ChannelServices | PersistentState, PluginStateConfigError | StateStoreError> => {
  const runtime = ManagedRuntime.make(layer(options))
  const signals = options.disposeOnSignals === true ? DEFAULT_SIGNALS : options.disposeOnSignals || []
  // A list the layer refuses (its build fails with a PluginStateConfigError) installs nothing.
  if (signals.length === 0 || !Array.isArray(signals) || !signals.every((signal) => CATCHABLE_SIGNALS.has(signal))) return runtime
  const dispose = runtime.dispose.bind(runtime)
  const stop = disposeOnSignals(dispose, signals)
  return Object.assign(runtime, {
    dispose: () => {
      stop()
      return dispose()
    }
  })
}
