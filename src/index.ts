/**
 * channel-state: restart-surviving state for chat-channel plugins.
 *
 * @module
 */
export * as BlueBubblesInboundDedupe from "./channels/BlueBubblesInboundDedupe.js"
export * as DiscordInteractionRegistry from "./channels/DiscordInteractionRegistry.js"
export * as FeishuMessageDedupe from "./channels/FeishuMessageDedupe.js"
export * as MatrixApprovalReactions from "./channels/MatrixApprovalReactions.js"
export * as MsTeamsSentMessages from "./channels/MsTeamsSentMessages.js"
export * as SlackThreadParticipation from "./channels/SlackThreadParticipation.js"
export * from "./KeyedStore.js"
export type { ClaimOutcome } from "./layers/ClaimLedger.js"
export type { SettleOutcome, UndecidedPolicy } from "./layers/mirror/MirroredCache.js"
export * as MemoryStore from "./layers/store/MemoryStore.js"
export * as PgStore from "./layers/store/PgStore.js"
export * as SqliteStore from "./layers/store/SqliteStore.js"
export * as SqlStore from "./layers/store/SqlStore.js"
export type { MirrorSettings } from "./layers/mirror/StoreMirror.js"
export type { StoreSettings } from "./layers/store/storeRules.js"
export * from "./PersistenceConfig.js"
export { PersistentState, type StoreHealth } from "./PersistentState.js"
export * from "./PluginStateConfigError.js"
export * as PluginRuntime from "./PluginRuntime.js"
export * from "./PluginState.js"
export * from "./StateStoreError.js"
