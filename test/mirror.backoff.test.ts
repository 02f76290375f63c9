/**
 * The mirror backs off on outages only.
 *
 * - Caller mistakes in a row — a dozen writes the store refuses (over 1 MiB, not matching
 *   the schema), each in a flush of its own, and 600-character Feishu message ids — are
 *   counted as failures but must not make the mirror leave the store alone: right after
 *   them, with a second runtime on the same database, every one-shot consume and every claim
 *   is still decided by the store (exactly one of the two gets each), and none is undecided.
 *   The runtime that made the mistakes answers `claim-locally` when it cannot reach the
 *   store, and its back-off (were it to start) lasts 30 s: a back-off would show as the same
 *   component handed out twice or the same message claimed twice.
 * - A real outage — the SQLite file made immutable (`chattr +i`), or the PostgreSQL port
 *   refusing connections — does make it back off: far fewer store attempts (failures counted
 *   in `channel_state_failures`) than claims made meanwhile; and once the outage is over it
 *   recovers: claims are decided by the store again, and on SQLite the claims it made from
 *   memory meanwhile (policy `claim-locally`) land.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, type Scope } from "effect"
import { BlueBubblesInboundDedupe, type ClaimOutcome } from "../src/channels/BlueBubblesInboundDedupe.js"
import { DiscordInteractionRegistry, type NewComponent } from "../src/channels/DiscordInteractionRegistry.js"
import { FeishuMessageDedupe } from "../src/channels/FeishuMessageDedupe.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type BackendFactory, pgBackend, pgUrl, sqlBackends, sqliteBackend, type TestDatabase } from "./support/backends.js"
import { eventually } from "./support/eventually.js"
import { chattrWorks, immutable, tcpProxy } from "./support/outages.js"
import { counterValue, countersByTags, rowReader } from "./support/storedRows.js"

const NS = { discord: "discord.components", feishu: "feishu.message-dedupe", bluebubbles: "bluebubbles.inbound-dedupe" } as const
const configFor = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })
const storeOf = (db: TestDatabase, url = db.location): PluginRuntime.StoreLocation => (db.backend === "pg" ? { pgUrl: url } : { sqlitePath: db.location })

type Options = Omit<PluginRuntime.PluginRuntimeOptions, "config">
/** A plugin runtime, disposed with the scope, and `run` for its Effects. */
const runtimeOf = (options: Options) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => PluginRuntime.makeRuntime({ ...options, config: configFor(options.pluginId) })),
      (runtime) => Effect.promise(() => runtime.dispose())
    ),
    (runtime) => ({ runtime, run: <A>(effect: Effect.Effect<A, never, PluginRuntime.ChannelServices>) => Effect.promise(() => runtime.runPromise(effect)) })
  )

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const sleep = (millis: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, millis)))
const OVERSIZED = "x".repeat(1_100_000)
const MISTAKES = 12

const claimedBy = (outcomes: ReadonlyArray<ClaimOutcome>) => outcomes.filter((o) => o._tag === "Claimed").length

const mistakes = (backend: BackendFactory) =>
  it.scopedLive(
    `${backend.name}: ${MISTAKES} refused writes in a row (each in its own flush) and ${MISTAKES} 600-character Feishu ids do not back the mirror off — afterwards every consume and claim contested by a second runtime is decided by the store (exactly one of the two), none undecided`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const pluginId = `mistakes-${backend.name}`
        const reader = yield* rowReader(db.backend as "sqlite" | "pg", db.location!)
        const channels: ReadonlyArray<PluginRuntime.ChannelName> = ["discord", "feishu"]
        // A: the one making mistakes. Should it back off, it would decide from memory, for 30 s.
        const a = yield* runtimeOf({
          pluginId,
          store: storeOf(db),
          channels,
          whenUnreachable: "claim-locally",
          mirror: { flushInterval: "20 millis", backoffBase: "30 seconds", backoffMax: "30 seconds" }
        })
        const b = yield* runtimeOf({ pluginId, store: storeOf(db), channels })
        const aDiscord = yield* a.run(DiscordInteractionRegistry)
        const aFeishu = yield* a.run(FeishuMessageDedupe)
        const bDiscord = yield* b.run(DiscordInteractionRegistry)
        const bFeishu = yield* b.run(FeishuMessageDedupe)
        const tags = (namespace: string) => ({ plugin: pluginId, namespace })

        // Valid components, flushed before the mistakes.
        const ids = range(20).map((i) => `d${i}`)
        aDiscord.register({ entries: ids.map((id): NewComponent => ({ id, kind: "button", label: "Approve" })), messageId: "m-1" })
        expect((yield* eventually(reader.keys(pluginId, NS.discord), (keys) => keys.size === ids.length)).size).toBe(ids.length)

        // The mistakes: each refused write in a flush of its own (waited for by its count).
        for (const k of range(MISTAKES)) {
          const entry: NewComponent =
            k % 2 === 0 ? { id: `bad-${k}`, kind: "button", label: OVERSIZED } : ({ id: `bad-${k}`, kind: "link", label: "x" } as unknown as NewComponent)
          aDiscord.register({ entries: [entry] })
          const dropped = yield* eventually(counterValue("channel_state_dropped_writes", tags(NS.discord)), (n) => n >= k + 1)
          expect(dropped, `refused write ${k} was never flushed`).toBe(k + 1)
        }
        const longIds = range(MISTAKES).map((k) => ({ namespace: "app", messageId: `om_${k}_${"y".repeat(600)}` }))
        for (const message of longIds) expect(yield* a.run(aFeishu.hasProcessed(message))).toBe(false)
        for (const message of longIds) {
          const outcome = yield* a.run(aFeishu.beginProcessing(message))
          expect(outcome._tag, "a 600-character id").toBe("Claimed")
          if (outcome._tag === "Claimed") expect(yield* a.run(outcome.finalize)).toBe("done")
        }
        for (const message of longIds) expect(yield* b.run(bFeishu.hasProcessed(message)), "a 600-character id finalized by the other runtime").toBe(true)
        // The mistakes reached the failure log: they were counted as failures (not outages).
        const reported = yield* countersByTags("channel_state_failures", tags(NS.discord))
        expect((reported["reason=InvalidInput"] ?? 0) + (reported["reason=LimitExceeded"] ?? 0), "refused writes counted as failures").toBeGreaterThanOrEqual(MISTAKES)

        // Right after: one-shot consumes contested by both runtimes, decided by the store.
        const handedOut = yield* Effect.forEach(
          ids,
          (id) =>
            Effect.map(
              Effect.all([a.run(aDiscord.resolveComponent({ id })), b.run(bDiscord.resolveComponent({ id }))], { concurrency: "unbounded" }),
              (got) => got.filter(Option.isSome).length
            ),
          { concurrency: 4 }
        )
        // Claims: A first (it must win in the store, not answer in flight), then B.
        const sequential = yield* Effect.forEach(range(10), (i) =>
          Effect.gen(function* () {
            const message = { namespace: "app", messageId: `om_seq_${i}` }
            return [(yield* a.run(aFeishu.beginProcessing(message)))._tag, (yield* b.run(bFeishu.beginProcessing(message)))._tag] as const
          })
        )
        const contested = yield* Effect.forEach(range(20), (i) => {
          const message = { namespace: "app", messageId: `om_both_${i}` }
          return Effect.map(Effect.all([a.run(aFeishu.beginProcessing(message)), b.run(bFeishu.beginProcessing(message))], { concurrency: "unbounded" }), claimedBy)
        })
        const undecided = yield* counterValue("channel_state_undecided_claims", { plugin: pluginId })
        const tally = (values: ReadonlyArray<unknown>) => {
          const out: Record<string, number> = {}
          for (const v of values) out[String(v)] = (out[String(v)] ?? 0) + 1
          return out
        }
        console.log(
          `[mirror.backoff] ${backend.name} mistakes: failures reported ${JSON.stringify(reported)}; components by times handed out ${JSON.stringify(tally(handedOut))}; ` +
            `A-then-B claims ${JSON.stringify(tally(sequential.map((pair) => pair.join("/"))))}; contested messages by Claimed count ${JSON.stringify(tally(contested))}; undecided ${undecided}`
        )
        expect(handedOut, "times each component was handed out (one-shot)").toEqual(ids.map(() => 1))
        expect(sequential, "A claims first, then B").toEqual(range(10).map(() => ["Claimed", "InFlight"]))
        expect(contested, "claims of each message contested by both").toEqual(range(20).map(() => 1))
        expect(undecided, "claims or consumes the store did not decide").toBe(0)
      }),
    60_000
  )

const CLAIMS_DURING_OUTAGE = 60

/** How an outage is made on a backend: A's store location (through the fault) and the switch. */
interface Outage {
  readonly store: PluginRuntime.StoreLocation
  readonly start: Effect.Effect<{ readonly end: Effect.Effect<void> }, never, Scope.Scope>
}

const outage = (backend: BackendFactory, name: string, makeOutage: (db: TestDatabase) => Effect.Effect<Outage, never, Scope.Scope>) =>
  it.scopedLive(
    `${backend.name}: a real outage (${name}) backs the mirror off — far fewer store attempts than the ${CLAIMS_DURING_OUTAGE} claims made meanwhile — and it recovers: claims are decided by the store again${backend.name === "sqlite" ? ", the claims made from memory meanwhile land" : ""}`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const pluginId = `outage-${backend.name}`
        const reader = yield* rowReader(db.backend as "sqlite" | "pg", db.location!)
        const fault = yield* makeOutage(db)
        const channels: ReadonlyArray<PluginRuntime.ChannelName> = ["bluebubbles"]
        // The default policy per backend: SQLite claims locally, PostgreSQL answers in flight.
        const a = yield* runtimeOf({ pluginId, store: fault.store, channels, mirror: { flushInterval: "20 millis", backoffBase: "200 millis", backoffMax: "1 second" } })
        const b = yield* runtimeOf({ pluginId, store: storeOf(db), channels })
        const aBb = yield* a.run(BlueBubblesInboundDedupe)
        const bBb = yield* b.run(BlueBubblesInboundDedupe)
        const tags = { plugin: pluginId, namespace: NS.bluebubbles }
        const failures = counterValue("channel_state_failures", tags)
        const undecided = counterValue("channel_state_undecided_claims", tags)
        const claim = (rt: typeof a, bb: typeof aBb, guid: string) => rt.run(bb.claim({ accountId: "acc", guid }))

        for (const i of range(5)) {
          const outcome = yield* claim(a, aBb, `before-${i}`)
          expect(outcome._tag).toBe("Claimed")
          if (outcome._tag === "Claimed") expect(yield* a.run(outcome.finalize)).toBe("done")
        }
        expect(yield* failures).toBe(0)

        const { end } = yield* fault.start
        const failuresBefore = yield* failures
        const answers: Array<string> = []
        for (const i of range(CLAIMS_DURING_OUTAGE)) {
          answers.push((yield* claim(a, aBb, `out-${i}`))._tag)
          yield* sleep(10)
        }
        const attempts = (yield* failures) - failuresBefore
        const undecidedDuring = yield* undecided
        yield* end

        // Recovery: probe until a claim is decided by the store (won, and not counted undecided).
        let probes = 0
        const recoveredAt = performance.now()
        const decided = yield* eventually(
          Effect.gen(function* () {
            const guid = `probe-${probes++}`
            const before = yield* undecided
            const outcome = yield* claim(a, aBb, guid)
            return { guid, won: outcome._tag === "Claimed" && (yield* undecided) === before }
          }),
          (probe) => probe.won
        )
        const recoveryMs = Math.round(performance.now() - recoveredAt)
        expect(decided.won, "no claim was decided by the store after the outage").toBe(true)
        expect((yield* claim(b, bBb, decided.guid))._tag, "the other runtime claiming the probe A won").toBe("InFlight")
        const contested = yield* Effect.forEach(range(10), (i) =>
          Effect.map(Effect.all([claim(a, aBb, `after-${i}`), claim(b, bBb, `after-${i}`)], { concurrency: "unbounded" }), claimedBy)
        )
        // What the outage claims became in the store.
        const outageKeys = range(CLAIMS_DURING_OUTAGE).map((i) => `acc:out-${i}`)
        const stored =
          backend.name === "sqlite"
            ? yield* eventually(reader.keys(pluginId, NS.bluebubbles), (keys) => outageKeys.every((k) => keys.has(k)))
            : yield* reader.keys(pluginId, NS.bluebubbles)
        const outageStored = outageKeys.filter((k) => stored.has(k)).length
        const answerCounts: Record<string, number> = {}
        for (const answer of answers) answerCounts[answer] = (answerCounts[answer] ?? 0) + 1
        console.log(
          `[mirror.backoff] ${backend.name} outage (${name}): ` +
            JSON.stringify({
              claimsDuringOutage: CLAIMS_DURING_OUTAGE,
              storeAttemptsDuringOutage: attempts,
              answers: answerCounts,
              undecidedDuringOutage: undecidedDuring,
              probesToRecover: probes,
              recoveryMs,
              claimedPerContestedMessage: contested,
              outageClaimsStored: outageStored,
              failuresByReason: yield* countersByTags("channel_state_failures", tags)
            })
        )
        expect(answers, "answers during the outage (the backend's policy)").toEqual(answers.map(() => (backend.name === "sqlite" ? "Claimed" : "InFlight")))
        expect(undecidedDuring, "claims the store could not decide during the outage").toBe(CLAIMS_DURING_OUTAGE)
        expect(attempts, "store attempts during the outage: the outage was never seen").toBeGreaterThanOrEqual(3)
        expect(attempts, "store attempts during the outage: no back-off").toBeLessThan(CLAIMS_DURING_OUTAGE / 2)
        expect(contested, "claims contested by both runtimes after the outage").toEqual(range(10).map(() => 1))
        expect(outageStored, "claims made during the outage that are in the store now").toBe(backend.name === "sqlite" ? CLAIMS_DURING_OUTAGE : 0)
      }),
    90_000
  )

describe("the mirror backs off on outages, never on caller mistakes", () => {
  for (const backend of sqlBackends) mistakes(backend)

  if (chattrWorks) {
    outage(sqliteBackend, "the SQLite file, its -wal and its directory made immutable with chattr +i", (db) =>
      Effect.succeed({
        store: storeOf(db),
        start: Effect.map(immutable(db.location!), ({ lift }) => ({ end: lift }))
      })
    )
  } else {
    console.warn("[mirror.backoff] `chattr +i` is not available here: the SQLite outage case cannot run")
  }
  if (pgUrl) {
    outage(pgBackend(pgUrl), "the PostgreSQL port refuses connections: proxy closed, connections cut", (db) =>
      Effect.map(tcpProxy(db.location!), (proxy) => ({
        store: storeOf(db, proxy.url),
        start: Effect.as(proxy.down, { end: proxy.up })
      }))
    )
  }
})
