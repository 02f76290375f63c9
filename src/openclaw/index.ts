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
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import type { KeyedStore } from "../KeyedStore.js"
import { defaultSqlitePath, type StoreLocation, storeLayer } from "../PluginRuntime.js"
import { StateStoreError } from "../StateStoreError.js"
import { type AdapterContext, openOpenClawStore } from "./keyedStore.js"
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
      /**
       * Names the database in comparisons: give every process sharing that store's database
       * the same one. Default: a name of this state's own, so a comparison made on another
       * state is refused.
       */
      readonly identity?: string | undefined
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
  if ("store" in options) return options.identity ?? `store:${randomUUID()}`
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

const openFailure = (error: unknown) =>
  new StateStoreError({ reason: "InvalidInput", operation: "open", detail: `the plugin state options could not be read (${error instanceof Error ? error.message : String(error)})` })

/**
 * The plugin-state API for `pluginId` over the SQLite file (`sqlitePath`, default
 * {@link defaultSqlitePath}), a PostgreSQL database (`pgUrl`) or a store layer of your own.
 * The database opens on first use; call `close()` at shutdown. Never throws: options it
 * cannot use make every member of every store reject (`PLUGIN_STATE_INVALID_INPUT` or
 * `PLUGIN_STATE_OPEN_FAILED`, operation `open`).
 */
export const createOpenClawState = (options: OpenClawStateOptions): OpenClawState => {
  let context: AdapterContext
  try {
    const { pluginId, ...location } = options
    const layer = "store" in location ? location.store : storeLayer(location)
    const sqlitePath = "store" in location || location.pgUrl ? undefined : path.resolve(location.sqlitePath ?? defaultSqlitePath())
    context = { pluginId, runtime: ManagedRuntime.make(layer), identity: identityOf(options), path: sqlitePath, maxValueBytes: location.maxValueBytes }
  } catch (error) {
    context = { pluginId: "", runtime: ManagedRuntime.make(Layer.fail(openFailure(error))), identity: "", path: undefined, maxValueBytes: undefined }
  }
  const { runtime } = context
  return {
    openKeyedStore: (storeOptions) => openOpenClawStore(context, storeOptions),
    close: () => runtime.dispose().catch(() => undefined)
  }
}
