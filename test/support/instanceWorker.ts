/**
 * One gateway instance for the several-instances test (test/instances.test.ts): the plugin
 * runtime with all six caches persistent, on a PostgreSQL database shared with two other
 * instances. It runs phases on command (one word per stdin line), so the test can start
 * them on all three at once, and prints one JSON line per phase:
 *
 * - `record`: records its Slack threads and MS Teams messages (instance 0 also registers
 *   the Discord components), then polls until the other instances' threads and messages are
 *   honoured and every component is visible;
 * - `race`: at once, clicks every component (resolve with consume), claims every
 *   BlueBubbles and Feishu message (finalizing what it won), while recording and checking
 *   more Slack threads;
 * - `again`: claims every message (asking again, for a while, about one answering `InFlight`)
 *   and clicks every component once more, then shuts down.
 *
 *   node --import tsx test/support/instanceWorker.ts <pg url> <instance 0|1|2> <seed>
 */
import * as readline from "node:readline"
import { Effect, HashMap, Layer, Logger, Option } from "effect"
import { BlueBubblesInboundDedupe, type ClaimOutcome } from "../../src/channels/BlueBubblesInboundDedupe.js"
import { DiscordInteractionRegistry } from "../../src/channels/DiscordInteractionRegistry.js"
import { FeishuMessageDedupe } from "../../src/channels/FeishuMessageDedupe.js"
import { MsTeamsSentMessages } from "../../src/channels/MsTeamsSentMessages.js"
import { SlackThreadParticipation } from "../../src/channels/SlackThreadParticipation.js"
import * as PluginRuntime from "../../src/PluginRuntime.js"
import { random } from "./crashWorker.js"

/** How long the `again` pass keeps asking about a message that answers `InFlight` (well inside the test's 40 s wait for the reply). */
const AGAIN_DEADLINE_MS = 20_000

export const INSTANCE_OWNER = "shared-gateway"
export const INSTANCES = 3
/** Slack threads (and MS Teams messages) each instance records in `record`. */
export const THREADS = 50
/** Discord components instance 0 registers; all three click every one. */
export const COMPONENTS = 100
/** BlueBubbles and Feishu messages delivered to every instance. */
export const MESSAGES = 300
/** How long an instance polls for what the others recorded. */
export const HONOUR_BOUND_MS = 30_000

export const threadTs = (instance: number, n: number) => `w${instance}-t${n}`
export const componentId = (n: number) => `c${n}`
export const guid = (n: number) => `g${n}`
export const feishuId = (n: number) => `om_${n}`

export const configOn = { plugins: { entries: { [INSTANCE_OWNER]: { config: { experimentalPersistentState: true } } } } }

export type Tally = Readonly<Record<string, number>>

export type InstanceLine =
  | { readonly type: "ready"; readonly instance: number }
  | {
      readonly type: "recorded"
      readonly instance: number
      /** Of the other instances' threads / sent messages, how many `check` honoured, and after how long the last one was (ms from the command). */
      readonly slack: { readonly expected: number; readonly honoured: number; readonly allAfterMs: number | null }
      readonly msteams: { readonly expected: number; readonly honoured: number; readonly allAfterMs: number | null }
      /** Of the components, how many a peek resolves here. */
      readonly discord: { readonly expected: number; readonly visible: number; readonly allAfterMs: number | null }
    }
  | {
      readonly type: "raced"
      readonly instance: number
      /** `Date.now()` when the command came and when the last operation answered. */
      readonly startedAt: number
      readonly finishedAt: number
      readonly discordGot: ReadonlyArray<string>
      readonly bbWon: ReadonlyArray<string>
      readonly feishuWon: ReadonlyArray<string>
      readonly bbOutcomes: Tally
      readonly feishuOutcomes: Tally
      /** Slack threads recorded during the race, and checks of other instances' threads that answered true. */
      readonly slackRecorded: number
      readonly slackChecksTrue: number
    }
  | { readonly type: "again"; readonly instance: number; readonly bbOutcomes: Tally; readonly feishuOutcomes: Tally; readonly discordGot: number }
  | { readonly type: "problem"; readonly instance: number; readonly text: string }
  | { readonly type: "fatal"; readonly instance: number; readonly message: string }

const main = () => {
  const [url = "", instanceText = "0", seedText = "1"] = process.argv.slice(2)
  const instance = Number(instanceText)
  const rand = random(Number(seedText) * 10 + instance)
  const say = (line: InstanceLine) => process.stdout.write(`${JSON.stringify(line)}\n`)

  // Commands from the test, one per line.
  const input = readline.createInterface({ input: process.stdin })
  const received: Array<string> = []
  let wakeUp: (() => void) | undefined
  input.on("line", (line) => {
    received.push(line.trim())
    wakeUp?.()
  })
  const command = (expected: string) =>
    Effect.flatMap(
      Effect.promise(
        () =>
          new Promise<string>((resolve) => {
            const take = () => {
              const next = received.shift()
              if (next === undefined) return false
              wakeUp = undefined
              resolve(next)
              return true
            }
            if (!take()) wakeUp = () => void take()
          })
      ),
      (got) => (got === expected ? Effect.void : Effect.die(new Error(`expected command ${expected}, got ${got}`)))
    )

  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    if (logLevel.label !== "WARN" && logLevel.label !== "ERROR" && logLevel.label !== "FATAL") return
    const parts = Array.isArray(message) ? message : [message]
    const notes = JSON.stringify(Object.fromEntries(HashMap.toEntries(annotations)))
    say({ type: "problem", instance, text: `${logLevel.label} ${parts.map(String).join(" ")} ${notes}`.slice(0, 500) })
  })

  const runtime = PluginRuntime.layer({ pluginId: INSTANCE_OWNER, config: configOn, store: { pgUrl: url } })
  const others = Array.from({ length: INSTANCES }, (_, i) => i).filter((i) => i !== instance)
  const indexes = (count: number) => {
    const ascending = Array.from({ length: count }, (_, i) => i)
    if (instance === 0) return ascending
    if (instance === 1) return ascending.reverse()
    for (let i = ascending.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1))
      ;[ascending[i], ascending[j]] = [ascending[j]!, ascending[i]!]
    }
    return ascending
  }
  const tally = (outcomes: ReadonlyArray<ClaimOutcome>) => {
    const counts: Record<string, number> = {}
    for (const outcome of outcomes) counts[outcome._tag] = (counts[outcome._tag] ?? 0) + 1
    return counts
  }

  /** Polls `check` over `items` until every one answered true once, or the bound. */
  const pollAll = <A>(items: ReadonlyArray<A>, check: (item: A) => Effect.Effect<boolean>, since: number) =>
    Effect.gen(function* () {
      const left = new Set(items)
      let lastAt: number | null = null
      while (left.size > 0 && Date.now() - since < HONOUR_BOUND_MS) {
        const results = yield* Effect.forEach([...left], (item) => Effect.map(check(item), (ok) => [item, ok] as const), { concurrency: 16 })
        for (const [item, ok] of results) {
          if (!ok) continue
          left.delete(item)
          lastAt = Date.now() - since
        }
        if (left.size > 0) yield* Effect.sleep("10 millis")
      }
      return { expected: items.length, honoured: items.length - left.size, allAfterMs: left.size === 0 ? lastAt : null }
    })

  const program = Effect.gen(function* () {
    const slack = yield* SlackThreadParticipation
    const msteams = yield* MsTeamsSentMessages
    const discord = yield* DiscordInteractionRegistry
    const bluebubbles = yield* BlueBubblesInboundDedupe
    const feishu = yield* FeishuMessageDedupe
    say({ type: "ready", instance })

    yield* command("record")
    const recordAt = Date.now()
    for (let n = 0; n < THREADS; n++) {
      slack.record("T1", "C1", threadTs(instance, n), { agentId: `agent-${instance}` })
      msteams.record("conv-1", threadTs(instance, n))
    }
    if (instance === 0) {
      discord.register({
        entries: Array.from({ length: COMPONENTS }, (_, n) => ({ id: componentId(n), kind: "button" as const, label: "Approve", callbackData: `approve-${n}` })),
        messageId: "prompt-1"
      })
    }
    const othersThreads = others.flatMap((i) => Array.from({ length: THREADS }, (_, n) => threadTs(i, n)))
    const [slackHonoured, msteamsHonoured, discordVisible] = yield* Effect.all(
      [
        pollAll(othersThreads, (ts) => slack.check("T1", "C1", ts), recordAt),
        pollAll(othersThreads, (ts) => msteams.check("conv-1", ts), recordAt),
        pollAll(
          Array.from({ length: COMPONENTS }, (_, n) => componentId(n)),
          (id) => Effect.map(discord.resolveComponent({ id, consume: false }), Option.isSome),
          recordAt
        )
      ],
      { concurrency: "unbounded" }
    )
    say({
      type: "recorded",
      instance,
      slack: slackHonoured,
      msteams: msteamsHonoured,
      discord: { expected: discordVisible.expected, visible: discordVisible.honoured, allAfterMs: discordVisible.allAfterMs }
    })

    yield* command("race")
    const startedAt = Date.now()
    const discordGot: Array<string> = []
    const bbWon: Array<string> = []
    const feishuWon: Array<string> = []
    const bbOutcomes: Array<ClaimOutcome> = []
    const feishuOutcomes: Array<ClaimOutcome> = []
    let slackRecorded = 0
    let slackChecksTrue = 0
    const clicks = Effect.forEach(
      indexes(COMPONENTS),
      (n) =>
        Effect.map(discord.resolveComponent({ id: componentId(n) }), (got) => {
          if (Option.isSome(got)) discordGot.push(componentId(n))
        }),
      { concurrency: "unbounded", discard: true }
    )
    const claimAll = (claim: (n: number) => Effect.Effect<ClaimOutcome>, id: (n: number) => string, won: Array<string>, outcomes: Array<ClaimOutcome>) =>
      Effect.forEach(
        indexes(MESSAGES),
        (n) =>
          Effect.flatMap(claim(n), (outcome) => {
            outcomes.push(outcome)
            if (outcome._tag !== "Claimed") return Effect.void
            won.push(id(n))
            return outcome.finalize
          }),
        { concurrency: "unbounded", discard: true }
      )
    const slackTraffic = Effect.forEach(
      Array.from({ length: THREADS }, (_, n) => n),
      (n) =>
        Effect.gen(function* () {
          slack.record("T1", "C1", threadTs(instance, THREADS + n))
          slackRecorded++
          const other = others[n % others.length]!
          if (yield* slack.check("T1", "C1", threadTs(other, Math.floor(rand() * THREADS)))) slackChecksTrue++
          yield* Effect.sleep("2 millis")
        }),
      { discard: true }
    )
    yield* Effect.all(
      [
        clicks,
        claimAll((n) => bluebubbles.claim({ accountId: "acc", guid: guid(n) }), guid, bbWon, bbOutcomes),
        claimAll((n) => feishu.beginProcessing({ namespace: "app", messageId: feishuId(n) }), feishuId, feishuWon, feishuOutcomes),
        slackTraffic
      ],
      { concurrency: "unbounded", discard: true }
    )
    say({
      type: "raced",
      instance,
      startedAt,
      finishedAt: Date.now(),
      discordGot,
      bbWon,
      feishuWon,
      bbOutcomes: tally(bbOutcomes),
      feishuOutcomes: tally(feishuOutcomes),
      slackRecorded,
      slackChecksTrue
    })

    yield* command("again")
    // A finalize that answered `queued` leaves the row claimed until the mirror writes it, so
    // another instance may rightly answer `InFlight` for a while: asked again (bounded, as the
    // verify pass of claimUntilDecidedWorker.ts does); any other answer is kept at once.
    const againDeadline = Date.now() + AGAIN_DEADLINE_MS
    const untilDecided = (claim: Effect.Effect<ClaimOutcome>): Effect.Effect<ClaimOutcome> =>
      Effect.flatMap(claim, (outcome) =>
        outcome._tag === "InFlight" && Date.now() < againDeadline ? Effect.zipRight(Effect.sleep("100 millis"), untilDecided(claim)) : Effect.succeed(outcome)
      )
    const bbAgain = yield* Effect.forEach(indexes(MESSAGES), (n) => untilDecided(bluebubbles.claim({ accountId: "acc", guid: guid(n) })), { concurrency: 32 })
    const feishuAgain = yield* Effect.forEach(indexes(MESSAGES), (n) => untilDecided(feishu.beginProcessing({ namespace: "app", messageId: feishuId(n) })), {
      concurrency: 32
    })
    const clickedAgain = yield* Effect.forEach(indexes(COMPONENTS), (n) => discord.resolveComponent({ id: componentId(n) }), { concurrency: 32 })
    say({ type: "again", instance, bbOutcomes: tally(bbAgain), feishuOutcomes: tally(feishuAgain), discordGot: clickedAgain.filter(Option.isSome).length })
  })

  Effect.runPromiseExit(Effect.scoped(Effect.provide(program, Layer.provide(runtime, Logger.replace(Logger.defaultLogger, logger))))).then((exit) => {
    input.close()
    if (exit._tag === "Failure") {
      say({ type: "fatal", instance, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

// Only as a script: the test imports this module for its protocol types and constants.
if (process.argv[1]?.endsWith("instanceWorker.ts")) main()
