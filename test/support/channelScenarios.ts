/**
 * One scenario per channel cache: what a plugin records, how it checks it later, and how
 * it removes it — so persistence tests are written once for all six caches.
 */
import { Effect, Option } from "effect"
import { BlueBubblesInboundDedupe } from "../../src/channels/BlueBubblesInboundDedupe.js"
import { DiscordInteractionRegistry } from "../../src/channels/DiscordInteractionRegistry.js"
import { FeishuMessageDedupe } from "../../src/channels/FeishuMessageDedupe.js"
import { MatrixApprovalReactions } from "../../src/channels/MatrixApprovalReactions.js"
import { MsTeamsSentMessages } from "../../src/channels/MsTeamsSentMessages.js"
import { SlackThreadParticipation } from "../../src/channels/SlackThreadParticipation.js"
import type { ChannelName, ChannelServices } from "../../src/PluginRuntime.js"

export interface ChannelScenario {
  readonly channel: ChannelName
  readonly namespace: string
  /** Records entry `i` the way the plugin does (claims are claimed and finalized). */
  readonly write: (i: number) => Effect.Effect<void, never, ChannelServices>
  /** The async check a user's next action triggers: true when entry `i` is honoured. */
  readonly found: (i: number) => Effect.Effect<boolean, never, ChannelServices>
  /** The sync, memory-only check, where the cache has one. */
  readonly foundSync?: (i: number) => Effect.Effect<boolean, never, ChannelServices>
  /** Removes entry `i` for good (consume / unregister / release), where the cache has such an operation. */
  readonly remove?: (i: number) => Effect.Effect<void, never, ChannelServices>
}

export const scenarios: ReadonlyArray<ChannelScenario> = [
  {
    channel: "slack",
    namespace: "slack.thread-participation",
    write: (i) => Effect.map(SlackThreadParticipation, (s) => s.record("T1", "C1", `17000.${i}`, { agentId: "main" })),
    found: (i) => Effect.flatMap(SlackThreadParticipation, (s) => s.check("T1", "C1", `17000.${i}`)),
    foundSync: (i) => Effect.map(SlackThreadParticipation, (s) => s.has("T1", "C1", `17000.${i}`))
  },
  {
    channel: "discord",
    namespace: "discord.components",
    write: (i) =>
      Effect.map(DiscordInteractionRegistry, (d) =>
        d.register({ entries: [{ id: `btn-${i}`, kind: "button", label: "Approve", callbackData: "approve" }], messageId: `m${i}` })
      ),
    found: (i) => Effect.flatMap(DiscordInteractionRegistry, (d) => Effect.map(d.resolveComponent({ id: `btn-${i}`, consume: false }), Option.isSome)),
    remove: (i) => Effect.asVoid(Effect.flatMap(DiscordInteractionRegistry, (d) => d.resolveComponent({ id: `btn-${i}` })))
  },
  {
    channel: "msteams",
    namespace: "msteams.sent-messages",
    write: (i) => Effect.map(MsTeamsSentMessages, (t) => t.record("conv-1", `msg-${i}`)),
    found: (i) => Effect.flatMap(MsTeamsSentMessages, (t) => t.check("conv-1", `msg-${i}`)),
    foundSync: (i) => Effect.map(MsTeamsSentMessages, (t) => t.wasSent("conv-1", `msg-${i}`))
  },
  {
    channel: "matrix",
    namespace: "matrix.approval-reactions",
    write: (i) =>
      Effect.map(MatrixApprovalReactions, (m) =>
        m.register({ roomId: "!room:hs", eventId: `$ev${i}`, approvalId: `ap-${i}`, allowedDecisions: ["allow-once", "deny"] })
      ),
    found: (i) =>
      Effect.flatMap(MatrixApprovalReactions, (m) =>
        Effect.map(m.resolve({ roomId: "!room:hs", eventId: `$ev${i}`, reactionKey: "\u2705\uFE0F" }), Option.isSome)
      ),
    remove: (i) => Effect.map(MatrixApprovalReactions, (m) => m.unregister({ roomId: "!room:hs", eventId: `$ev${i}` }))
  },
  {
    channel: "bluebubbles",
    namespace: "bluebubbles.inbound-dedupe",
    write: (i) =>
      Effect.flatMap(BlueBubblesInboundDedupe, (b) =>
        Effect.flatMap(b.claim({ accountId: "acc", guid: `guid-${i}` }), (o) => (o._tag === "Claimed" ? o.finalize : Effect.die(`claim ${i}: ${o._tag}`)))
      ),
    found: (i) => Effect.flatMap(BlueBubblesInboundDedupe, (b) => Effect.map(b.claim({ accountId: "acc", guid: `guid-${i}` }), (o) => o._tag === "Duplicate"))
  },
  {
    channel: "feishu",
    namespace: "feishu.message-dedupe",
    write: (i) =>
      Effect.flatMap(FeishuMessageDedupe, (f) =>
        Effect.flatMap(f.beginProcessing({ namespace: "app", messageId: `om_${i}` }), (o) => (o._tag === "Claimed" ? o.finalize : Effect.die(`claim ${i}: ${o._tag}`)))
      ),
    // No `remove`: a processed message stays processed (release drops only an in-flight claim).
    found: (i) => Effect.flatMap(FeishuMessageDedupe, (f) => f.hasProcessed({ namespace: "app", messageId: `om_${i}` }))
  }
]
