/**
 * The memory layers: today's behaviour, bounded by TTL and entry count (reference
 * constants), driven by TestClock. And the config flag that selects the layer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, TestClock } from "effect"
import * as BlueBubbles from "../src/channels/BlueBubblesInboundDedupe.js"
import * as Discord from "../src/channels/DiscordInteractionRegistry.js"
import * as Feishu from "../src/channels/FeishuMessageDedupe.js"
import * as Matrix from "../src/channels/MatrixApprovalReactions.js"
import * as MsTeams from "../src/channels/MsTeamsSentMessages.js"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { persistentStateEnabled } from "../src/PersistenceConfig.js"
import { PluginStateConfigError } from "../src/PluginStateConfigError.js"
import * as PluginRuntime from "../src/PluginRuntime.js"

describe("Slack thread participation (memory)", () => {
  it.effect("record/has/check, 24 h TTL, 5 000 threads at most (oldest evicted)", () =>
    Effect.gen(function* () {
      const slack = yield* Slack.SlackThreadParticipation
      slack.record("T", "C", "1.0", { agentId: "main" })
      expect(slack.has("T", "C", "1.0")).toBe(true)
      expect(slack.has("T", "C", "2.0")).toBe(false)
      expect(yield* slack.get("T", "C", "1.0")).toEqual(Option.some({ agentId: "main", repliedAt: 0 }))
      yield* TestClock.adjust("24 hours")
      expect(slack.has("T", "C", "1.0")).toBe(false)
      expect(yield* slack.check("T", "C", "1.0")).toBe(false)
      for (let i = 0; i <= 5000; i++) slack.record("T", "C", `t${i}`)
      expect(slack.has("T", "C", "t0")).toBe(false)
      expect(slack.has("T", "C", "t1")).toBe(true)
      expect(slack.has("T", "C", "t5000")).toBe(true)
    }).pipe(Effect.provide(Slack.layer))
  )
})

describe("Discord interaction registry (memory)", () => {
  it.effect("one-shot by default, peek with consume: false, reusable stays, 30 min TTL or per registration", () =>
    Effect.gen(function* () {
      const discord = yield* Discord.DiscordInteractionRegistry
      discord.register({
        entries: [
          { id: "once", kind: "button", label: "Approve" },
          { id: "again", kind: "select", label: "Pick", reusable: true, options: [{ label: "A", value: "a" }] }
        ],
        modals: [{ id: "form", title: "Why?", fields: [{ id: "reason", label: "Reason", style: "paragraph" }] }],
        messageId: "m1"
      })
      discord.register({ entries: [{ id: "short", kind: "button", label: "Quick" }], ttl: "1 minute" })
      const peek = yield* discord.resolveComponent({ id: "once", consume: false })
      expect(Option.getOrThrow(peek)).toMatchObject({ id: "once", messageId: "m1", createdAt: 0, expiresAt: 30 * 60_000 })
      expect(Option.isSome(yield* discord.resolveComponent({ id: "once" }))).toBe(true)
      expect(yield* discord.resolveComponent({ id: "once" })).toEqual(Option.none())
      expect(Option.isSome(yield* discord.resolveComponent({ id: "again" }))).toBe(true)
      expect(Option.isSome(yield* discord.resolveComponent({ id: "again" }))).toBe(true)
      expect(Option.getOrThrow(yield* discord.resolveModal({ id: "form" })).fields[0]?.id).toBe("reason")
      expect(yield* discord.resolveModal({ id: "form" })).toEqual(Option.none())
      yield* TestClock.adjust("1 minute")
      expect(yield* discord.resolveComponent({ id: "short" })).toEqual(Option.none())
      expect(Option.isSome(yield* discord.resolveComponent({ id: "again", consume: false }))).toBe(true)
      yield* TestClock.adjust("29 minutes")
      expect(yield* discord.resolveComponent({ id: "again" })).toEqual(Option.none())
    }).pipe(Effect.provide(Discord.layer))
  )

  it.effect("a bad TTL on the sync path never throws; the default applies", () =>
    Effect.gen(function* () {
      const discord = yield* Discord.DiscordInteractionRegistry
      discord.register({ entries: [{ id: "x", kind: "button", label: "X" }], ttl: -5 })
      expect(Option.getOrThrow(yield* discord.resolveComponent({ id: "x", consume: false })).expiresAt).toBe(30 * 60_000)
    }).pipe(Effect.provide(Discord.layer))
  )
})

describe("MS Teams sent messages (memory)", () => {
  it.effect("record/wasSent/check, pruned past 200 per conversation, 24 h TTL", () =>
    Effect.gen(function* () {
      const teams = yield* MsTeams.MsTeamsSentMessages
      for (let i = 0; i < 201; i++) teams.record("conv-a", `m${i}`)
      teams.record("conv-b", "m0")
      expect(teams.wasSent("conv-a", "m0")).toBe(false)
      expect(teams.wasSent("conv-a", "m1")).toBe(true)
      expect(teams.wasSent("conv-a", "m200")).toBe(true)
      expect(teams.wasSent("conv-b", "m0")).toBe(true)
      expect(yield* teams.check("conv-b", "m0")).toBe(true)
      yield* TestClock.adjust("24 hours")
      expect(teams.wasSent("conv-b", "m0")).toBe(false)
      expect(yield* teams.check("conv-b", "m0")).toBe(false)
    }).pipe(Effect.provide(MsTeams.layer))
  )
})

describe("Matrix approval reactions (memory)", () => {
  it.effect("✅ / ♾️ / ❌ with or without the variation selector, only allowed decisions, unregister, TTL", () =>
    Effect.gen(function* () {
      const matrix = yield* Matrix.MatrixApprovalReactions
      const at = { roomId: "!r:hs", eventId: "$e1" }
      matrix.register({ ...at, approvalId: "ap1", allowedDecisions: ["allow-once", "deny"] })
      const resolve = (reactionKey: string) => Effect.map(matrix.resolve({ ...at, reactionKey }), Option.getOrUndefined)
      expect(yield* resolve("\u2705")).toEqual({ approvalId: "ap1", decision: "allow-once" })
      expect(yield* resolve("\u2705\uFE0F")).toEqual({ approvalId: "ap1", decision: "allow-once" })
      expect(yield* resolve("\u274C")).toEqual({ approvalId: "ap1", decision: "deny" })
      expect(yield* resolve("\u267E\uFE0F")).toBeUndefined()
      expect(yield* resolve("👍")).toBeUndefined()
      expect(yield* Effect.map(matrix.resolve({ roomId: "!r:hs", eventId: "$other", reactionKey: "\u2705" }), Option.isNone)).toBe(true)
      matrix.register({ roomId: "!r:hs", eventId: "$e2", approvalId: "ap2", allowedDecisions: ["allow-always"], ttl: "1 hour" })
      expect(yield* Effect.map(matrix.resolve({ roomId: "!r:hs", eventId: "$e2", reactionKey: "\u267E" }), Option.getOrUndefined)).toEqual({
        approvalId: "ap2",
        decision: "allow-always"
      })
      matrix.unregister(at)
      expect(yield* resolve("\u2705")).toBeUndefined()
      yield* TestClock.adjust("1 hour")
      expect(yield* Effect.map(matrix.resolve({ roomId: "!r:hs", eventId: "$e2", reactionKey: "\u267E" }), Option.isNone)).toBe(true)
    }).pipe(Effect.provide(Matrix.layer))
  )
})

describe("BlueBubbles inbound dedupe (memory)", () => {
  it.effect("claimed → in-flight → finalized duplicate; release; edits apart; skip; 30 min claims, 7 day commits", () =>
    Effect.gen(function* () {
      const bb = yield* BlueBubbles.BlueBubblesInboundDedupe
      const claim = (guid: string | undefined, edited?: boolean) => bb.claim({ accountId: "acc", guid, edited })
      const first = yield* claim("g1")
      expect(first._tag).toBe("Claimed")
      expect((yield* claim("g1"))._tag).toBe("InFlight")
      expect((yield* claim("g1", true))._tag).toBe("Claimed")
      if (first._tag === "Claimed") yield* first.finalize
      expect((yield* claim("g1"))._tag).toBe("Duplicate")
      const second = yield* claim("g2")
      if (second._tag === "Claimed") yield* second.release
      expect((yield* claim("g2"))._tag).toBe("Claimed")
      expect(yield* claim(undefined)).toEqual({ _tag: "Skip", reason: "message has no id" })
      // An id too long for the store is still deduped (persistent layers track it by digest).
      const long = yield* claim("x".repeat(600))
      expect(long._tag).toBe("Claimed")
      expect((yield* claim("x".repeat(600)))._tag).toBe("InFlight")
      yield* TestClock.adjust("30 minutes")
      expect((yield* claim("g2"))._tag).toBe("Claimed")
      expect((yield* claim("g1"))._tag).toBe("Duplicate")
      yield* TestClock.adjust("7 days")
      expect((yield* claim("g1"))._tag).toBe("Claimed")
    }).pipe(Effect.provide(BlueBubbles.layer))
  )
})

describe("Feishu message dedupe (memory)", () => {
  it.effect("in flight for 5 min, processed for 24 h, release, hasProcessed", () =>
    Effect.gen(function* () {
      const feishu = yield* Feishu.FeishuMessageDedupe
      const msg = { namespace: "app", messageId: "om_1" }
      expect((yield* feishu.beginProcessing(msg))._tag).toBe("Claimed")
      expect((yield* feishu.beginProcessing(msg))._tag).toBe("InFlight")
      yield* TestClock.adjust("5 minutes")
      expect((yield* feishu.beginProcessing(msg))._tag).toBe("Claimed")
      yield* feishu.finalize(msg)
      expect(yield* feishu.hasProcessed(msg)).toBe(true)
      expect((yield* feishu.beginProcessing(msg))._tag).toBe("Duplicate")
      const other = { namespace: "app", messageId: "om_2" }
      yield* feishu.beginProcessing(other)
      yield* feishu.release(other)
      expect(yield* feishu.hasProcessed(other)).toBe(false)
      expect((yield* feishu.beginProcessing(other))._tag).toBe("Claimed")
      yield* TestClock.adjust("24 hours")
      expect(yield* feishu.hasProcessed(msg)).toBe(false)
      expect((yield* feishu.beginProcessing({ namespace: "app", messageId: "" }))._tag).toBe("Skip")
    }).pipe(Effect.provide(Feishu.layer))
  )
})

describe("the experimentalPersistentState flag", () => {
  const config = (value: unknown) => ({ plugins: { entries: { slack: { config: { experimentalPersistentState: value } } } } })

  it.effect("absent anywhere along the path is false; booleans are themselves", () =>
    Effect.gen(function* () {
      expect(yield* persistentStateEnabled(undefined, "slack")).toBe(false)
      expect(yield* persistentStateEnabled({}, "slack")).toBe(false)
      expect(yield* persistentStateEnabled({ plugins: { entries: {} } }, "slack")).toBe(false)
      expect(yield* persistentStateEnabled(config(undefined), "slack")).toBe(false)
      expect(yield* persistentStateEnabled(config(false), "slack")).toBe(false)
      expect(yield* persistentStateEnabled(config(true), "slack")).toBe(true)
      expect(yield* persistentStateEnabled(config(true), "discord")).toBe(false)
    })
  )

  it.effect("a value that is not a boolean is a PluginStateConfigError: one line naming the path and the value", () =>
    Effect.gen(function* () {
      for (const [value, shown] of [
        ["yes", '"yes"'],
        [1, "1"],
        ["true", '"true"'],
        [{ on: true }, '{"on":true}']
      ] as const) {
        const result = yield* Effect.either(persistentStateEnabled(config(value), "slack"))
        if (Either.isRight(result)) throw new Error(`accepted ${shown}`)
        expect(result.left).toBeInstanceOf(PluginStateConfigError)
        expect(result.left.message).toBe(`plugins.entries.slack.config.experimentalPersistentState is ${shown}: expected true or false`)
      }
      const wrongShape = yield* Effect.either(persistentStateEnabled({ plugins: { entries: "slack" } }, "slack"))
      expect(Either.isLeft(wrongShape) && String(wrongShape.left)).toContain("plugins.entries")
    })
  )

  it.effect("the plugin runtime refuses a bad flag before opening anything", () =>
    Effect.gen(function* () {
      const built = yield* Effect.either(
        Layer.build(PluginRuntime.layer({ pluginId: "slack", config: config("on"), store: { sqlitePath: "/nonexistent/never-created.sqlite" } }))
      )
      expect(Either.isLeft(built)).toBe(true)
      expect(String(Either.isLeft(built) ? built.left : "")).toContain('"on"')
    }).pipe(Effect.scoped)
  )
})
