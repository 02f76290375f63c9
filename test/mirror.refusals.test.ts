/**
 * A write the store refuses is refused alone: in one flush batch of a namespace, next to
 * valid registrations and deletes, a value the store will not take (a Discord component
 * whose encoded value is over 1 MiB, one that does not match the namespace schema; a Matrix
 * prompt with a decision the schema does not know, one over 1 MiB) is dropped — and
 * counted in `channel_state_dropped_writes` by reason (`LimitExceeded`, `InvalidInput`) — while every other change
 * of that batch lands: after a restart the valid registrations are there, the unregistered
 * and consumed entries stay gone, the refused ones are absent.
 *
 * An id the store could not take as a key (a 600-character Slack channel id: over 512
 * bytes) is no refusal at all: it is stored under a digest, survives a restart, and costs no
 * other thread.
 *
 * Real SQLite files and a real PostgreSQL database, through `PluginRuntime.makeRuntime`;
 * metrics read with Effect's `Metric.snapshot`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { DiscordInteractionRegistry, type NewComponent } from "../src/channels/DiscordInteractionRegistry.js"
import { type Decision, MatrixApprovalReactions } from "../src/channels/MatrixApprovalReactions.js"
import { SlackThreadParticipation } from "../src/channels/SlackThreadParticipation.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type BackendFactory, sqlBackends, type TestDatabase } from "./support/backends.js"
import { eventually } from "./support/eventually.js"
import { counterValue, countersByTags, histogramCount, rowReader } from "./support/storedRows.js"

const NS = { discord: "discord.components", matrix: "matrix.approval-reactions", slack: "slack.thread-participation" } as const
const ROOM = "!room:hs"
const DROPPED = "channel_state_dropped_writes"
const BATCH_SIZE = "channel_state_flush_batch_size"

const configFor = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })
const storeOf = (db: TestDatabase): PluginRuntime.StoreLocation => (db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location })

/** A plugin runtime (default write-behind: 100 ms) for one "process lifetime", disposed with the scope. */
const runtimeOf = (db: TestDatabase, pluginId: string, channels: ReadonlyArray<PluginRuntime.ChannelName>) =>
  Effect.acquireRelease(
    Effect.sync(() => PluginRuntime.makeRuntime({ pluginId, config: configFor(pluginId), store: storeOf(db), channels })),
    (runtime) => Effect.promise(() => runtime.dispose())
  )

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)
const cid = (i: number) => `c${String(i).padStart(2, "0")}`
const pid = (i: number) => `$p${String(i).padStart(2, "0")}`
const button = (id: string, label = "Approve"): NewComponent => ({ id, kind: "button", label })
const promptOf = (eventId: string, allowedDecisions: ReadonlyArray<Decision> = ["allow-once", "deny"], approvalId = `ap-${eventId}`) => ({
  roomId: ROOM,
  eventId,
  approvalId,
  allowedDecisions
})
/** Over 1 MiB once encoded (the store's default value limit). */
const OVERSIZED = "x".repeat(1_100_000)

const refusedAlone = (backend: BackendFactory) =>
  it.scopedLive(
    `${backend.name}: one flush batch with refused writes (over 1 MiB, not matching the schema) among valid registrations, unregisters of flushed prompts and consumed components — the rest lands, the deletes hold after a restart, the refused are absent and counted by reason`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const pluginId = `refusals-${backend.name}`
        const reader = yield* rowReader(backend.name as "sqlite" | "pg", db.location!)
        const tags = (namespace: string) => ({ plugin: pluginId, namespace })
        const bad = { bigComponent: "c-oversized", wrongKind: "c-wrong-kind", badDecision: "$p-bad-decision", bigPrompt: "$p-oversized" }
        const consumed = [...range(0, 5).map(cid), cid(10), cid(11)]

        yield* Effect.scoped(
          Effect.gen(function* () {
            const runtime = yield* runtimeOf(db, pluginId, ["discord", "matrix"])
            const { discord, matrix } = yield* Effect.promise(() =>
              runtime.runPromise(Effect.all({ discord: DiscordInteractionRegistry, matrix: MatrixApprovalReactions }))
            )
            // Flushed first: ten components and ten prompts.
            discord.register({ entries: range(0, 10).map((i) => button(cid(i))), messageId: "m-1" })
            for (const i of range(0, 10)) matrix.register(promptOf(pid(i)))
            const flushed = yield* eventually(
              Effect.zip(reader.keys(pluginId, NS.discord), reader.keys(pluginId, NS.matrix)),
              ([d, m]) => d.size === 10 && m.size === 10
            )
            expect([flushed[0].size, flushed[1].size], "the first registrations were never flushed").toEqual([10, 10])

            // One synchronous burst: each namespace's next flush batch holds all of it.
            discord.register({
              entries: [
                ...range(10, 15).map((i) => button(cid(i))),
                button(bad.bigComponent, OVERSIZED),
                ...range(15, 18).map((i) => button(cid(i))),
                { ...button(bad.wrongKind), kind: "link" } as unknown as NewComponent,
                ...range(18, 20).map((i) => button(cid(i)))
              ],
              messageId: "m-2"
            })
            for (const i of range(0, 5)) matrix.unregister({ roomId: ROOM, eventId: pid(i) })
            for (const i of range(10, 13)) matrix.register(promptOf(pid(i)))
            matrix.register(promptOf(bad.badDecision, ["maybe" as Decision]))
            matrix.register(promptOf(pid(13)))
            matrix.register(promptOf(bad.bigPrompt, ["allow-once"], OVERSIZED))
            matrix.register(promptOf(pid(14)))
            // Consumes: c00–c04 are in the store (decided there); c10 and c11 are still queued
            // (their deletes join the same batch as their registrations).
            const handedOut = yield* Effect.promise(() =>
              Promise.all(consumed.map((id) => runtime.runPromise(Effect.map(discord.resolveComponent({ id }), Option.isSome))))
            )
            expect(handedOut, "a consume of a live component did not hand it out").toEqual(consumed.map(() => true))

            // The flush ran: the refused writes are counted (published by the flusher).
            const counted = yield* eventually(
              Effect.zip(counterValue(DROPPED, tags(NS.discord)), counterValue(DROPPED, tags(NS.matrix))),
              ([d, m]) => d >= 2 && m >= 2
            )
            expect(counted, "dropped writes (discord, matrix) once flushed").toEqual([2, 2])
            // Two batches per namespace: the first registrations, then the whole burst.
            const batches = yield* Effect.zip(histogramCount(BATCH_SIZE, tags(NS.discord)), histogramCount(BATCH_SIZE, tags(NS.matrix)))
            expect(batches, "flushed batches (discord, matrix): the burst was split").toEqual([2, 2])
          })
        )

        // What the store holds after the dispose, read with plain SQL.
        const liveComponents = [...range(5, 10), ...range(12, 20)].map(cid)
        const livePrompts = range(5, 15).map(pid)
        const rows = yield* reader.rows(pluginId)
        const keys = (namespace: string) =>
          rows
            .filter((row) => row.namespace === namespace)
            .map((row) => row.key)
            .sort()
        expect(keys(NS.discord), "stored components").toEqual([...liveComponents].sort())
        expect(keys(NS.matrix), "stored prompts").toEqual(livePrompts.map((eventId) => `${ROOM}:${eventId}`).sort())

        // A restart: the next runtime sees exactly that.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const runtime = yield* runtimeOf(db, pluginId, ["discord", "matrix"])
            const seen = yield* Effect.promise(() =>
              runtime.runPromise(
                Effect.gen(function* () {
                  const discord = yield* DiscordInteractionRegistry
                  const matrix = yield* MatrixApprovalReactions
                  const component = (id: string) => Effect.map(discord.resolveComponent({ id, consume: false }), Option.isSome)
                  const reaction = (eventId: string) => Effect.map(matrix.resolve({ roomId: ROOM, eventId, reactionKey: "\u2705" }), Option.isSome)
                  const all = <A>(ids: ReadonlyArray<A>, f: (id: A) => Effect.Effect<boolean>) => Effect.forEach(ids, f)
                  return {
                    liveComponents: yield* all(liveComponents, component),
                    goneComponents: yield* all([...consumed, bad.bigComponent, bad.wrongKind], component),
                    livePrompts: yield* all(livePrompts, reaction),
                    gonePrompts: yield* all([...range(0, 5).map(pid), bad.badDecision, bad.bigPrompt], reaction)
                  }
                })
              )
            )
            expect(seen.liveComponents, "valid components after a restart").toEqual(liveComponents.map(() => true))
            expect(seen.goneComponents, "consumed or refused components after a restart").toEqual(seen.goneComponents.map(() => false))
            expect(seen.livePrompts, "valid prompts after a restart").toEqual(livePrompts.map(() => true))
            expect(seen.gonePrompts, "unregistered or refused prompts after a restart").toEqual(seen.gonePrompts.map(() => false))
          })
        )

        // Counted once each, by reason; nothing else was dropped.
        const discordDrops = yield* countersByTags(DROPPED, tags(NS.discord))
        const matrixDrops = yield* countersByTags(DROPPED, tags(NS.matrix))
        console.log(`[mirror.refusals] ${backend.name}: dropped writes by tag`, { discord: discordDrops, matrix: matrixDrops })
        expect(discordDrops).toEqual({ "reason=InvalidInput": 1, "reason=LimitExceeded": 1 })
        expect(matrixDrops).toEqual({ "reason=InvalidInput": 1, "reason=LimitExceeded": 1 })
      }),
    60_000
  )

const longChannelId = (backend: BackendFactory) =>
  it.scopedLive(
    `${backend.name}: a 600-character Slack channel id (and a 900-byte one) is accepted, stored under a digest, survives a restart and costs no other thread`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const pluginId = `long-ids-${backend.name}`
        const reader = yield* rowReader(backend.name as "sqlite" | "pg", db.location!)
        const long = `C${"x".repeat(599)}`
        const wide = "\u65E5".repeat(300)
        const threads: ReadonlyArray<readonly [string, string]> = [
          ...range(0, 25).map((i) => ["C1", `17000.${i}`] as const),
          [long, "1.0"],
          ...range(25, 40).map((i) => ["C1", `17000.${i}`] as const),
          [wide, "2.0"],
          ...range(40, 50).map((i) => ["C1", `17000.${i}`] as const)
        ]

        yield* Effect.scoped(
          Effect.gen(function* () {
            const runtime = yield* runtimeOf(db, pluginId, ["slack"])
            const slack = yield* Effect.promise(() => runtime.runPromise(SlackThreadParticipation))
            for (const [channel, ts] of threads) slack.record("T1", channel, ts)
            expect(slack.has("T1", long, "1.0")).toBe(true)
          })
        )

        const keys = [...(yield* reader.keys(pluginId, NS.slack))]
        const digests = keys.filter((key) => /^#sha256:[0-9a-f]{64}$/.test(key))
        expect(keys.length, "stored threads").toBe(threads.length)
        expect(digests.length, "threads stored under a digest").toBe(2)
        expect(keys.filter((key) => !digests.includes(key)).sort()).toEqual(range(0, 50).map((i) => `T1:C1:17000.${i}`).sort())
        expect(yield* counterValue(DROPPED, { plugin: pluginId, namespace: NS.slack }), "dropped Slack writes").toBe(0)

        yield* Effect.scoped(
          Effect.gen(function* () {
            const runtime = yield* runtimeOf(db, pluginId, ["slack"])
            const slack = yield* Effect.promise(() => runtime.runPromise(SlackThreadParticipation))
            const checks = yield* Effect.promise(() => Promise.all(threads.map(([channel, ts]) => runtime.runPromise(slack.check("T1", channel, ts)))))
            expect(checks, "threads after a restart").toEqual(threads.map(() => true))
            // Backfilled into memory under the same digest; a neighbouring id is another thread.
            expect(slack.has("T1", long, "1.0")).toBe(true)
            expect(yield* Effect.promise(() => runtime.runPromise(slack.check("T1", `${long.slice(0, -1)}y`, "1.0")))).toBe(false)
          })
        )
        expect((yield* reader.keys(pluginId, NS.slack)).size).toBe(threads.length)
      }),
    60_000
  )

describe("a refused write is refused alone", () => {
  for (const backend of sqlBackends) {
    refusedAlone(backend)
    longChannelId(backend)
  }
})
