/**
 * The plain-function / Promise facade for hosts not written in Effect. Shaped like the call
 * sites channel plugins already have: sync `record` / `has`, async `check` / `resolve` /
 * `claim`. Sync members are plain functions over memory (nanoseconds, never throw); async
 * members return Promises that never reject.
 *
 * @module
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { BlueBubblesInboundDedupe, type InboundMessage } from "./channels/BlueBubblesInboundDedupe.js"
import { DiscordInteractionRegistry } from "./channels/DiscordInteractionRegistry.js"
import { type FeishuMessage, FeishuMessageDedupe } from "./channels/FeishuMessageDedupe.js"
import { MatrixApprovalReactions } from "./channels/MatrixApprovalReactions.js"
import { MsTeamsSentMessages } from "./channels/MsTeamsSentMessages.js"
import { SlackThreadParticipation } from "./channels/SlackThreadParticipation.js"
import type { ClaimOutcome } from "./layers/ClaimLedger.js"
import type { SettleOutcome } from "./layers/mirror/MirroredCache.js"
import { persistentStateEnabled } from "./PersistenceConfig.js"
import { PersistentState, type StoreHealth } from "./PersistentState.js"
import { PluginStateConfigError } from "./PluginStateConfigError.js"
import { makeRuntime, type PluginRuntimeOptions } from "./PluginRuntime.js"
import { StateStoreError } from "./StateStoreError.js"

/** A claim, as a Promise host sees it. */
export type ClaimResult =
  /**
   * Handle it, then `finalize()` (or `release()` on failure). They resolve to `"done"`,
   * `"stale"` (the claim expired and someone else holds the message now: nothing changed),
   * `"queued"` (the store is out of reach; it lands, still fenced, when it is back) or
   * `"refused"`; they never reject.
   */
  | { readonly status: "claimed"; readonly finalize: () => Promise<SettleOutcome>; readonly release: () => Promise<SettleOutcome> }
  | { readonly status: "duplicate" }
  | { readonly status: "inflight" }
  | { readonly status: "skip"; readonly reason: string }

/** Whether the flag is on, or what is wrong with it (never throws). */
export type FlagCheck = { readonly ok: true; readonly enabled: boolean } | { readonly ok: false; readonly error: string }

/**
 * Reads `plugins.entries.<pluginId>.config.experimentalPersistentState` without opening
 * anything. Sync; never throws.
 */
export const checkPersistentStateConfig = (config: unknown, pluginId: string): FlagCheck =>
  Exit.match(Effect.runSyncExit(persistentStateEnabled(config, pluginId)), {
    onSuccess: (enabled) => ({ ok: true, enabled }),
    onFailure: (cause) => ({ ok: false, error: (Cause.squash(cause) as PluginStateConfigError).message })
  })

const claimResult = (outcome: ClaimOutcome, run: <A>(effect: Effect.Effect<A>) => Promise<A>): ClaimResult => {
  switch (outcome._tag) {
    case "Claimed":
      return { status: "claimed", finalize: () => run(outcome.finalize), release: () => run(outcome.release) }
    case "Duplicate":
      return { status: "duplicate" }
    case "InFlight":
      return { status: "inflight" }
    case "Skip":
      return { status: "skip", reason: outcome.reason }
  }
}

/**
 * Builds a plugin's state (opening the store only if the plugin opted in) and returns the
 * facade. With the flag on, every cache it hands out is mirrored into the store (or those
 * `channels` lists; `persistentChannels` says which). Rejects only with
 * {@link PluginStateConfigError} (one line naming the option and the value): a flag that is not
 * a boolean, a config of the wrong shape, a wrong option, or (persistence on) a plugin id the
 * store cannot use as an owner. A store that cannot be opened is logged and the caches run
 * from memory meanwhile (`health()` says so).
 */
export const createPluginState = async (options: PluginRuntimeOptions): Promise<PluginState> => {
  const enabled = Effect.runSyncExit(persistentStateEnabled(options.config, options.pluginId))
  if (Exit.isFailure(enabled)) throw Cause.squash(enabled.cause)
  const runtime = makeRuntime(options)
  const services = await runtime.runPromiseExit(
    Effect.all({
      slack: SlackThreadParticipation,
      discord: DiscordInteractionRegistry,
      msteams: MsTeamsSentMessages,
      matrix: MatrixApprovalReactions,
      bluebubbles: BlueBubblesInboundDedupe,
      feishu: FeishuMessageDedupe,
      persistence: PersistentState
    })
  )
  if (Exit.isFailure(services)) {
    await runtime.dispose()
    const error = Cause.squash(services.cause)
    if (error instanceof PluginStateConfigError) throw error
    if (error instanceof StateStoreError) {
      const path = error.owner === undefined ? "store" : "pluginId"
      throw new PluginStateConfigError({ path, message: path === "pluginId" ? `pluginId is ${JSON.stringify(options.pluginId)}: ${error.detail}` : error.message })
    }
    throw new PluginStateConfigError({ path: "config", message: Cause.pretty(services.cause) })
  }
  const { slack, discord, msteams, matrix, bluebubbles, feishu, persistence } = services.value
  const run = <A>(effect: Effect.Effect<A>): Promise<A> => runtime.runPromise(effect)
  const orUndefined = <A>(effect: Effect.Effect<Option.Option<A>>) => run(Effect.map(effect, Option.getOrUndefined))

  return {
    persistent: enabled.value,
    persistentChannels: persistence.channels,
    health: (): Promise<StoreHealth> => run(persistence.health),
    slack: {
      record: slack.record,
      has: slack.has,
      check: (accountId: string, channelId: string, threadTs: string) => run(slack.check(accountId, channelId, threadTs))
    },
    discord: {
      register: discord.register,
      resolveComponent: (request: Parameters<typeof discord.resolveComponent>[0]) => orUndefined(discord.resolveComponent(request)),
      resolveModal: (request: Parameters<typeof discord.resolveModal>[0]) => orUndefined(discord.resolveModal(request))
    },
    msteams: {
      record: msteams.record,
      wasSent: msteams.wasSent,
      check: (conversationId: string, messageId: string) => run(msteams.check(conversationId, messageId))
    },
    matrix: {
      register: matrix.register,
      unregister: matrix.unregister,
      resolve: (reaction: Parameters<typeof matrix.resolve>[0]) => orUndefined(matrix.resolve(reaction))
    },
    bluebubbles: {
      claim: (message: InboundMessage) => run(Effect.map(bluebubbles.claim(message), (outcome) => claimResult(outcome, run)))
    },
    feishu: {
      beginProcessing: (message: FeishuMessage) => run(Effect.map(feishu.beginProcessing(message), (outcome) => claimResult(outcome, run))),
      finalize: (message: FeishuMessage) => run(feishu.finalize(message)),
      release: (message: FeishuMessage) => run(feishu.release(message)),
      hasProcessed: (message: FeishuMessage) => run(feishu.hasProcessed(message))
    },
    dispose: (): Promise<void> => runtime.dispose()
  }
}


/** A service's Effect member as a Promise (it never rejects: the Effect never fails). */
type AsPromise<F> = F extends (...args: infer P) => Effect.Effect<infer A, never, never> ? (...args: P) => Promise<A> : never
/** … resolving to the value, or `undefined` for none. */
type AsOptionalPromise<F> = F extends (...args: infer P) => Effect.Effect<Option.Option<infer A>, never, never> ? (...args: P) => Promise<A | undefined> : never
type Slack = Context.Tag.Service<typeof SlackThreadParticipation>
type Discord = Context.Tag.Service<typeof DiscordInteractionRegistry>
type MsTeams = Context.Tag.Service<typeof MsTeamsSentMessages>
type Matrix = Context.Tag.Service<typeof MatrixApprovalReactions>
type Feishu = Context.Tag.Service<typeof FeishuMessageDedupe>

/**
 * The facade {@link createPluginState} resolves to. Sync members are plain functions over
 * memory (nanoseconds, never throw); async members return Promises that never reject.
 */
export interface PluginState {
  /** Whether the flag is on: the caches in `persistentChannels` are mirrored into the store. Whether the store answers now: `health()`. */
  readonly persistent: boolean
  /** The caches mirrored into the store (all six with the flag on, unless `channels` narrowed them); the others are memory-only. */
  readonly persistentChannels: ReadonlyArray<string>
  /** Reads the store once now: `memory-only`, `ok`, or `unreachable` with the reason. Never rejects. */
  readonly health: () => Promise<StoreHealth>
  /** Slack thread participation: `record`/`has` sync over memory; `check` memory → store. */
  readonly slack: { readonly record: Slack["record"]; readonly has: Slack["has"]; readonly check: AsPromise<Slack["check"]> }
  /** Discord registries: `register` sync; `resolve*` one-shot by default, `undefined` when none. */
  readonly discord: {
    readonly register: Discord["register"]
    readonly resolveComponent: AsOptionalPromise<Discord["resolveComponent"]>
    readonly resolveModal: AsOptionalPromise<Discord["resolveModal"]>
  }
  /** MS Teams sent messages: `record`/`wasSent` sync; `check` memory → store. */
  readonly msteams: { readonly record: MsTeams["record"]; readonly wasSent: MsTeams["wasSent"]; readonly check: AsPromise<MsTeams["check"]> }
  /** Matrix approval reactions: `register`/`unregister` sync; `resolve` to the decision or `undefined`. */
  readonly matrix: { readonly register: Matrix["register"]; readonly unregister: Matrix["unregister"]; readonly resolve: AsOptionalPromise<Matrix["resolve"]> }
  /** BlueBubbles inbound dedupe: `claim` before handling a message. */
  readonly bluebubbles: { readonly claim: (message: InboundMessage) => Promise<ClaimResult> }
  /** Feishu message dedupe. */
  readonly feishu: {
    readonly beginProcessing: (message: FeishuMessage) => Promise<ClaimResult>
    readonly finalize: AsPromise<Feishu["finalize"]>
    readonly release: AsPromise<Feishu["release"]>
    readonly hasProcessed: AsPromise<Feishu["hasProcessed"]>
  }
  /** Flushes queued writes and closes the store. Call once at shutdown. */
  readonly dispose: () => Promise<void>
}
