/**
 * channel-state: restart-surviving state for chat-channel plugins.
 *
 * @module
 */
export * from "./KeyedStore.js"
export * from "./StateStoreError.js"
export * as MemoryStore from "./layers/MemoryStore.js"
export * as PgStore from "./layers/PgStore.js"
export * as SqliteStore from "./layers/SqliteStore.js"
export * as SqlStore from "./layers/SqlStore.js"
