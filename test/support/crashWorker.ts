/**
 * A child process for the crash test (test/crash.test.ts): runs mixed traffic on all six
 * persistent channel caches (one plugin runtime, write-behind flushed every 20 ms) until it
 * is SIGKILLed, and reports on stdout, as it goes, what the database holds for sure:
 *
 * - a sync write (Slack / MS Teams / Matrix / Discord registration) is reported `present`
 *   only once the worker has seen the row through its own read-only connection;
 * - a BlueBubbles / Feishu claim or finalize is reported once the awaited store write returned;
 * - a Discord component resolved with consume, a released claim, and a Matrix prompt
 *   unregistered (once its row was seen gone) are reported `absent`;
 * - before any operation that removes or changes a reported row, the row is reported
 *   `either` (the kill may land in the middle of it).
 *
 * Mode `inflight-consume` (SQLite) instead clicks a component while the flush carrying its
 * registration is being written, then dies as soon as that registration is committed.
 *
 * Before any traffic it answers the probes it was given — its first async check (a Slack
 * thread recorded by an earlier process), a consumed Discord component, a finalized
 * BlueBubbles guid — and prints `serving`.
 *
 *   node --import tsx test/support/crashWorker.ts <sqlite|pg> <file or url> <round> <seed> <slack threadTs|-> <discord id|-> <bb guid|-> <traffic|probe|inflight-consume>
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import Database from "better-sqlite3"
import { Effect, HashMap, Layer, Logger, Option, Redacted, type Scope } from "effect"
import { BlueBubblesInboundDedupe, type ClaimOutcome } from "../../src/channels/BlueBubblesInboundDedupe.js"
import { DiscordInteractionRegistry } from "../../src/channels/DiscordInteractionRegistry.js"
import { FeishuMessageDedupe } from "../../src/channels/FeishuMessageDedupe.js"
import { MatrixApprovalReactions } from "../../src/channels/MatrixApprovalReactions.js"
import { MsTeamsSentMessages } from "../../src/channels/MsTeamsSentMessages.js"
import { SlackThreadParticipation } from "../../src/channels/SlackThreadParticipation.js"
import * as PluginRuntime from "../../src/PluginRuntime.js"

/** The plugin id the workers run as (not a channel name: all six caches are persistent). */
export const CRASH_OWNER = "crash-gateway"
export const FLUSH_INTERVAL_MS = 20

export const NS = {
  slack: "slack.thread-participation",
  msteams: "msteams.sent-messages",
  matrix: "matrix.approval-reactions",
  discord: "discord.components",
  bluebubbles: "bluebubbles.inbound-dedupe",
  feishu: "feishu.message-dedupe"
} as const

/** Writes per channel per process: small enough that 25 processes stay below every namespace's store bound (no eviction). */
export const BUDGET = { slack: 30, msteams: 30, matrix: 30, unregister: 10, discord: 16, consume: 10, bluebubbles: 40, feishu: 40 } as const

/**
 * What the database must hold for a key after a kill: `present` (any value), `claimed` (a
 * claim, in flight or committed), `committed` (a finalized claim), `absent`, or `either`.
 */
export type Expectation = "present" | "claimed" | "committed" | "absent" | "either"

/** One report: namespace, entry key, expectation, and why (e.g. `consumed-pending`). */
export type Mark = readonly [namespace: string, key: string, expectation: Expectation, note: string]

export type CrashWorkerLine =
  | {
      readonly type: "serving"
      /** `slack.check` of the probe thread (null without a probe): the first async answer of this process. */
      readonly slackProbe: boolean | null
      /** ms since this process started (Node's time origin), when that answer came. */
      readonly uptimeMs: number
      /** ms from the end of module loading (the store not yet opened) to that answer. */
      readonly openMs: number
    }
  | {
      readonly type: "probes"
      /** Whether the consumed probe component is still resolvable (peek): it must not be. */
      readonly discordProbe: boolean | null
      /** The outcome of claiming the finalized probe guid: it must be `Duplicate`. */
      readonly bbProbe: string | null
    }
  | { readonly type: "mark"; readonly items: ReadonlyArray<Mark> }
  | { readonly type: "problem"; readonly text: string }
  | { readonly type: "done" }

/** Entry keys as the caches build them. */
export const keys = {
  slackThread: (round: number, n: number) => `r${round}-t${n}`,
  slack: (threadTs: string) => `T1:C1:${threadTs}`,
  msteams: (round: number, n: number) => `conv-1:r${round}-m${n}`,
  matrixEvent: (round: number, n: number) => `$r${round}-e${n}`,
  matrix: (eventId: string) => `!room:hs:${eventId}`,
  discord: (round: number, n: number) => `r${round}-b${n}`,
  bbGuid: (round: number, n: number) => `r${round}-g${n}`,
  bluebubbles: (guid: string) => `acc:${guid}`,
  feishuId: (round: number, n: number) => `r${round}-f${n}`,
  feishu: (messageId: string) => `app:${messageId}`
}

/** A small seeded PRNG (mulberry32), so a failing run can be replayed. */
export const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Row {
  readonly namespace: string
  readonly entry_key: string
}

/** The worker's own read-only view of the database: the rows of this process's round. */
const observerFor = (backend: string, location: string, round: number): Effect.Effect<Effect.Effect<ReadonlyArray<Row>>, never, Scope.Scope> => {
  const pattern = `%r${round}-%`
  if (backend === "sqlite") {
    return Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => new Database(location, { readonly: true, fileMustExist: true })),
        (db) => Effect.sync(() => db.close())
      ),
      (db) => {
        const select = db.prepare<[string, string], Row>("SELECT namespace, entry_key FROM channel_state_entries WHERE owner = ? AND entry_key LIKE ?")
        return Effect.sync(() => select.all(CRASH_OWNER, pattern))
      }
    )
  }
  return Effect.map(
    PgClient.make({ url: Redacted.make(location), maxConnections: 1 }).pipe(Effect.provide(Reactivity.layer), Effect.orDie),
    (sql: SqlClient) =>
      Effect.orDie(sql<Row>`SELECT namespace, entry_key FROM channel_state_entries WHERE owner = ${CRASH_OWNER} AND entry_key LIKE ${pattern}`)
  )
}

const main = () => {
  const loadedAt = performance.now()
  const [backend = "", location = "", roundText = "0", seedText = "1", slackProbe = "-", discordProbe = "-", bbProbe = "-", mode = "traffic"] = process.argv.slice(2)
  const round = Number(roundText)
  const rand = random(Number(seedText) * 1000 + round)
  const say = (line: CrashWorkerLine) => process.stdout.write(`${JSON.stringify(line)}\n`)
  const mark = (items: ReadonlyArray<Mark>) => {
    if (items.length > 0) say({ type: "mark", items })
  }

  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    if (logLevel.label !== "WARN" && logLevel.label !== "ERROR" && logLevel.label !== "FATAL") return
    const parts = Array.isArray(message) ? message : [message]
    const notes = JSON.stringify(Object.fromEntries(HashMap.toEntries(annotations)))
    say({ type: "problem", text: `${logLevel.label} ${parts.map(String).join(" ")} ${notes}`.slice(0, 500) })
  })

  const store: PluginRuntime.StoreLocation = backend === "pg" ? { pgUrl: location } : { sqlitePath: location }
  const runtime = PluginRuntime.layer({
    pluginId: CRASH_OWNER,
    config: { plugins: { entries: { [CRASH_OWNER]: { config: { experimentalPersistentState: true } } } } },
    store,
    mirror: { flushInterval: `${FLUSH_INTERVAL_MS} millis` }
  })

  const pause = (ms: number) => Effect.sleep(`${Math.max(1, Math.round(ms))} millis`)
  const pickOut = <A>(items: Array<A>): A | undefined => (items.length === 0 ? undefined : items.splice(Math.floor(rand() * items.length), 1)[0])

  const program = Effect.gen(function* () {
    const slack = yield* SlackThreadParticipation
    const msteams = yield* MsTeamsSentMessages
    const matrix = yield* MatrixApprovalReactions
    const discord = yield* DiscordInteractionRegistry
    const bluebubbles = yield* BlueBubblesInboundDedupe
    const feishu = yield* FeishuMessageDedupe

    // The first async answer of this process.
    const slackAnswer = slackProbe === "-" ? null : yield* slack.check("T1", "C1", slackProbe)
    say({ type: "serving", slackProbe: slackAnswer, uptimeMs: performance.now(), openMs: performance.now() - loadedAt })
    const discordAnswer = discordProbe === "-" ? null : Option.isSome(yield* discord.resolveComponent({ id: discordProbe, consume: false }))
    const bbAnswer = bbProbe === "-" ? null : (yield* bluebubbles.claim({ accountId: "acc", guid: bbProbe }))._tag
    say({ type: "probes", discordProbe: discordAnswer, bbProbe: bbAnswer })
    if (mode === "probe") {
      say({ type: "done" })
      return
    }

    const observe = yield* observerFor(backend, location, round)
    if (mode === "inflight-consume") {
      // SQLite only. Another connection holds the write lock, so the flush that carries the
      // registration keeps retrying (`Unavailable`, ~155 ms of retries); meanwhile the
      // component is clicked (consumed); then the lock is let go, the retry commits the
      // registration, and this process dies the moment the row is visible — before the next
      // flush (>= 20 ms later) could write the queued delete.
      const componentId = keys.discord(round, 0)
      const locker = new Database(location)
      locker.exec("BEGIN IMMEDIATE")
      discord.register({ entries: [{ id: componentId, kind: "button", label: "Approve" }], messageId: "msg-inflight" })
      yield* pause(FLUSH_INTERVAL_MS + 12)
      mark([[NS.discord, componentId, "either", "consuming"]])
      const got = yield* discord.resolveComponent({ id: componentId })
      if (Option.isSome(got)) mark([[NS.discord, componentId, "absent", "consumed-inflight"]])
      locker.exec("COMMIT")
      locker.close()
      const deadline = Date.now() + 1000
      while (Date.now() < deadline) {
        const rows = yield* observe
        if (rows.some((row) => row.namespace === NS.discord && row.entry_key === componentId)) {
          say({ type: "problem", text: `inflight-consume: component ${componentId} row committed after it was consumed; killing myself now` })
          process.kill(process.pid, "SIGKILL")
        }
        yield* pause(1)
      }
      say({ type: "done" })
      return
    }
    /** Written, not yet seen in the database: `ns\0key` → the mark to print once seen. */
    const awaitingPresent = new Map<string, Mark>()
    /** Removed, not yet seen gone. */
    const awaitingAbsent = new Map<string, Mark>()
    /** Seen in the database, by channel: candidates for consume / unregister. */
    const seenDiscord: Array<string> = []
    const seenMatrix: Array<string> = []
    const id = (namespace: string, key: string) => `${namespace}\u0000${key}`
    const written = (namespace: string, key: string) => awaitingPresent.set(id(namespace, key), [namespace, key, "present", "observed"])

    const observer = Effect.gen(function* () {
      for (;;) {
        const rows = yield* observe
        const found = new Set(rows.map((row) => id(row.namespace, row.entry_key)))
        const items: Array<Mark> = []
        for (const [k, m] of awaitingPresent) {
          if (!found.has(k)) continue
          awaitingPresent.delete(k)
          items.push(m)
          if (m[0] === NS.discord) seenDiscord.push(m[1])
          if (m[0] === NS.matrix) seenMatrix.push(m[1].slice("!room:hs:".length))
        }
        for (const [k, m] of awaitingAbsent) {
          if (found.has(k)) continue
          awaitingAbsent.delete(k)
          items.push(m)
        }
        mark(items)
        yield* pause(5 + rand() * 10)
      }
    })

    const used = { slack: 0, msteams: 0, matrix: 0, unregister: 0, discord: 0, consume: 0 }
    const recordedThreads: Array<string> = []
    const resolve = (componentId: string, note: string) =>
      Effect.gen(function* () {
        mark([[NS.discord, componentId, "either", "consuming"]])
        const got = yield* discord.resolveComponent({ id: componentId })
        if (Option.isSome(got)) mark([[NS.discord, componentId, "absent", note]])
        else say({ type: "problem", text: `component ${componentId} (${note}) did not resolve` })
      })

    /** Sync writes and one-shot removals, one every few ms. */
    const syncTraffic = Effect.gen(function* () {
      for (;;) {
        const r = rand()
        if (r < 0.2 && used.slack < BUDGET.slack) {
          const threadTs = keys.slackThread(round, used.slack++)
          slack.record("T1", "C1", threadTs, { agentId: "main" })
          recordedThreads.push(threadTs)
          written(NS.slack, keys.slack(threadTs))
        } else if (r < 0.4 && used.msteams < BUDGET.msteams) {
          const n = used.msteams++
          msteams.record("conv-1", `r${round}-m${n}`)
          written(NS.msteams, keys.msteams(round, n))
        } else if (r < 0.58 && used.matrix < BUDGET.matrix) {
          const eventId = keys.matrixEvent(round, used.matrix++)
          matrix.register({ roomId: "!room:hs", eventId, approvalId: `ap-${eventId}`, allowedDecisions: ["allow-once", "deny"] })
          written(NS.matrix, keys.matrix(eventId))
        } else if (r < 0.66 && used.unregister < BUDGET.unregister && seenMatrix.length > 0) {
          used.unregister++
          const eventId = pickOut(seenMatrix)!
          mark([[NS.matrix, keys.matrix(eventId), "either", "unregistering"]])
          matrix.unregister({ roomId: "!room:hs", eventId })
          awaitingAbsent.set(id(NS.matrix, keys.matrix(eventId)), [NS.matrix, keys.matrix(eventId), "absent", "unregistered-observed"])
        } else if (r < 0.82 && used.discord < BUDGET.discord) {
          const componentId = keys.discord(round, used.discord++)
          discord.register({ entries: [{ id: componentId, kind: "button", label: "Approve", callbackData: `cb-${componentId}` }], messageId: `msg-${componentId}` })
          written(NS.discord, componentId)
        } else if (r < 0.9 && used.consume < BUDGET.consume && seenDiscord.length > 0) {
          // A click on a component whose registration is committed.
          used.consume++
          yield* resolve(pickOut(seenDiscord)!, "consumed-committed")
        } else if (r < 0.96 && used.consume < BUDGET.consume) {
          // A click on a component registered moments ago (its registration may be queued or being written).
          const fresh = [...awaitingPresent.values()].filter((m) => m[0] === NS.discord)
          const chosen = fresh[Math.floor(rand() * fresh.length)]
          if (chosen !== undefined) {
            used.consume++
            awaitingPresent.delete(id(NS.discord, chosen[1]))
            yield* resolve(chosen[1], "consumed-pending")
          }
        }
        yield* pause(3 + rand() * 8)
      }
    })

    /** Async reads: memory hits, store misses, and lookups of what this process wrote. */
    const reads = Effect.gen(function* () {
      for (;;) {
        const threadTs = recordedThreads[Math.floor(rand() * recordedThreads.length)] ?? keys.slackThread(round, 9999)
        const known = yield* slack.check("T1", "C1", threadTs)
        if (!known && recordedThreads.includes(threadTs)) say({ type: "problem", text: `slack thread ${threadTs} recorded here reads as unknown` })
        yield* msteams.check("conv-1", `r${round}-m${Math.floor(rand() * 40)}`)
        yield* matrix.resolve({ roomId: "!room:hs", eventId: keys.matrixEvent(round, Math.floor(rand() * 40)), reactionKey: "\u2705" })
        yield* pause(2 + rand() * 6)
      }
    })

    /** Claims, each then finalized, released or left in flight. Every store write here is awaited. */
    const claims = (channel: "bluebubbles" | "feishu") =>
      Effect.gen(function* () {
        const namespace = NS[channel]
        const committed: Array<string> = []
        for (let n = 0; n < BUDGET[channel]; n++) {
          const messageId = channel === "bluebubbles" ? keys.bbGuid(round, n) : keys.feishuId(round, n)
          const key = channel === "bluebubbles" ? keys.bluebubbles(messageId) : keys.feishu(messageId)
          const message = { namespace: "app", messageId }
          const outcome: ClaimOutcome =
            channel === "bluebubbles" ? yield* bluebubbles.claim({ accountId: "acc", guid: messageId }) : yield* feishu.beginProcessing(message)
          if (outcome._tag !== "Claimed") {
            say({ type: "problem", text: `fresh ${channel} message ${messageId}: ${outcome._tag}` })
            continue
          }
          mark([[namespace, key, "claimed", "claimed"]])
          yield* pause(rand() * 6)
          const r = rand()
          if (r < 0.6) {
            yield* outcome.finalize
            mark([[namespace, key, "committed", "finalized"]])
            committed.push(messageId)
          } else if (r < 0.85) {
            mark([[namespace, key, "either", "releasing"]])
            yield* outcome.release
            mark([[namespace, key, "absent", "released"]])
          }
          // A redelivery of a finalized message is a duplicate.
          const again = committed[Math.floor(rand() * committed.length)]
          if (again !== undefined && rand() < 0.3) {
            const redelivered = channel === "bluebubbles" ? yield* bluebubbles.claim({ accountId: "acc", guid: again }) : yield* feishu.beginProcessing({ namespace: "app", messageId: again })
            if (redelivered._tag !== "Duplicate") say({ type: "problem", text: `redelivered ${channel} ${again}: ${redelivered._tag}` })
          }
          yield* pause(2 + rand() * 8)
        }
      })

    yield* Effect.all([observer, syncTraffic, reads, claims("bluebubbles"), claims("feishu")], { concurrency: "unbounded", discard: true }).pipe(
      // Never meant to end on its own: the test kills it. A safety net for a test that did not.
      Effect.timeout("30 seconds"),
      Effect.ignore
    )
    say({ type: "done" })
  })

  Effect.runPromiseExit(Effect.scoped(Effect.provide(program, Layer.provide(runtime, Logger.replace(Logger.defaultLogger, logger))))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "problem", text: `fatal: ${String(exit.cause)}` })
      process.exitCode = 1
    }
  })
}

// Only as a script: the test imports this module for its protocol types and helpers.
if (process.argv[1]?.endsWith("crashWorker.ts")) main()
