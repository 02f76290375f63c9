/**
 * `channel-state/openclaw`: OpenClaw's plugin-state keyed store API
 * (`api.runtime.state.openKeyedStore`) over channel-state's SQLite file or PostgreSQL
 * database, so a plugin written for OpenClaw's store runs here unchanged — and, on
 * PostgreSQL, shares its state between several gateway instances.
 *
 * ```ts
 * import { createOpenClawState } from "channel-state/openclaw"
 * const state = createOpenClawState({ pluginId: "discord", sqlitePath: "/var/lib/gateway/state.sqlite" })
 * const bindings = state.openKeyedStore<{ channel: string }>({ namespace: "bindings", maxEntries: 10_000 })
 * await bindings.register("guild:1", { channel: "general" })
 * await state.close()
 * ```
 *
 * @module
 */
import * as path from "node:path"
import { type Layer, ManagedRuntime } from "effect"
import type { KeyedStore } from "../KeyedStore.js"
import { defaultSqlitePath, type StoreLocation, storeLayer } from "../PluginRuntime.js"
import type { StateStoreError } from "../StateStoreError.js"
import { makeOpenClawStore } from "./keyedStore.js"
import type { OpenAsyncKeyedStoreOptions, PluginStateKeyedStore } from "./types.js"

export { PluginStateStoreError, type PluginStateStoreErrorCode, type PluginStateStoreOperation } from "./PluginStateStoreError.js"
export type * from "./types.js"

/** Where the stores of {@link createOpenClawState} keep their rows. */
export type OpenClawStateOptions = {
  /** The plugin id: the owner of its rows (`^[a-z0-9][a-z0-9._-]*$`); another plugin never sees them. */
  readonly pluginId: string
} & (
  | StoreLocation
  | {
      /** A keyed store layer of your own (for tests: `MemoryStore.layer()`). */
      readonly store: Layer.Layer<KeyedStore, StateStoreError>
      /** The largest value, in UTF-8 bytes of JSON; give the same as the store's `maxValueBytes` (default 1 MiB). */
      readonly maxValueBytes?: number | undefined
    }
)

/** What `api.runtime.state` offers a plugin, over channel-state. */
export interface OpenClawState {
  /**
   * Opens a keyed store of the plugin's namespace, synchronously, as OpenClaw does. It never
   * throws: a bad option (or a namespace reopened with other options) makes every member
   * reject with `PLUGIN_STATE_INVALID_INPUT`, operation `open`.
   */
  readonly openKeyedStore: <T>(options: OpenAsyncKeyedStoreOptions) => PluginStateKeyedStore<T>
  /** Closes the database (waiting for operations in flight). Members called afterwards reject. Never rejects. */
  readonly close: () => Promise<void>
}

/** Names a database the same way in every process that opens it (a comparison made on another database is refused). */
const identityOf = (options: OpenClawStateOptions): string => {
  if ("store" in options) return "store"
  if (options.pgUrl) {
    try {
      const url = new URL(options.pgUrl)
      return `pg:${url.host}${url.pathname}`
    } catch {
      return "pg"
    }
  }
  return `sqlite:${path.resolve(options.sqlitePath ?? defaultSqlitePath())}`
}

/**
 * The plugin-state API for `pluginId` over the SQLite file (`sqlitePath`, default
 * {@link defaultSqlitePath}), a PostgreSQL database (`pgUrl`) or a store layer of your own.
 * The database opens on first use; call `close()` at shutdown.
 */
export const createOpenClawState = (options: OpenClawStateOptions): OpenClawState => {
  const { pluginId, ...location } = options
  const layer = "store" in location ? location.store : storeLayer(location)
  const runtime = ManagedRuntime.make(layer)
  const sqlitePath = "store" in options || options.pgUrl ? undefined : path.resolve(options.sqlitePath ?? defaultSqlitePath())
  const context = {
    pluginId,
    runtime,
    identity: identityOf(options),
    path: sqlitePath,
    maxValueBytes: "store" in options ? options.maxValueBytes : options.maxValueBytes
  }
  return {
    openKeyedStore: (storeOptions) => makeOpenClawStore(context, storeOptions),
    close: () => runtime.dispose().catch(() => undefined)
  }
}
