/**
 * Shutdown during a flush loses nothing and hangs nothing.
 *
 * On one SQLite file / one PostgreSQL database, 20 fresh plugin runtimes one after the other.
 * Each records 3 000 Slack threads (the Slack namespace keeps 1 000 rows in the store), 40
 * Matrix approval prompts (unregistering some at once, some while the flush runs, and 20
 * prompts a previous runtime left in the store), 20 Discord components (consuming 10 of them,
 * up to 20 a previous runtime left, and 5 a previous runtime already handed out; 20 runtimes
 * stay within the 500-row store bound), with a stream of `check` / `resolveComponent` calls
 * running (and a burst of them issued in the very tick of the dispose call) — then it is
 * disposed at one moment of a sweep: at once (0 ms), before the first
 * flush, just after a flush started, while it runs, after it. After each dispose, read with
 * plain SQL:
 *
 * - the Slack namespace holds exactly the 1 000 newest threads of that runtime (thread ids
 *   are zero-padded so that the store's oldest-first order — creation time, then key — is
 *   the recording order);
 * - the Matrix namespace holds exactly the prompts registered and not unregistered before
 *   the dispose call (by any runtime);
 * - a Discord component handed out by `resolveComponent` (one-shot) is gone, and stays gone
 *   for every later runtime; one never handed out is still there; none is handed out twice;
 * - every call that was in flight when `dispose` was called has settled (each awaited with a
 *   30 s bound), without rejecting, with the right answer (a recorded thread reads `true`).
 *
 * Then, on each backend and with each `whenUnreachable` policy: 60 `resolveComponent` calls of
 * components an earlier runtime left only in the store, made in the tick of the dispose call
 * (their store lookup, then their consume, run while the caches and the store shut down) —
 * each must settle, and one-shot must hold across the restart.
 *
 * The facade (`createPluginState`) runs with the default write-behind (100 ms, batches of
 * 1 000); the Effect runtime (`PluginRuntime.makeRuntime`) with 20 ms and batches of 250, so a
 * flush of the 3 000 threads is twelve transactions. The shutdown bound is raised to 30 s so
 * that a loaded machine is not mistaken for a loss: what is tested is that shutdown writes
 * everything, not how fast.
 */
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Duration, Effect, Option } from "effect"
import { DiscordInteractionRegistry } from "../src/channels/DiscordInteractionRegistry.js"
import { MatrixApprovalReactions } from "../src/channels/MatrixApprovalReactions.js"
import { SlackThreadParticipation } from "../src/channels/SlackThreadParticipation.js"
import type { MirrorSettings } from "../src/layers/mirror/StoreMirror.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { createPluginState } from "../src/PluginState.js"
import { type BackendFactory, sqlBackends, type TestDatabase } from "./support/backends.js"
import { countersByTags, type RowReader, rowReader } from "./support/storedRows.js"

const OWNER = "shutdown-gateway"
const CHANNELS: ReadonlyArray<PluginRuntime.ChannelName> = ["slack", "discord", "matrix"]
const config = { plugins: { entries: { [OWNER]: { config: { experimentalPersistentState: true } } } } }
const NS = { slack: "slack.thread-participation", matrix: "matrix.approval-reactions", discord: "discord.components" } as const
const ROOM = "!room:hs"

const THREADS = 3000
const SLACK_STORE_MAX = 1000
const PROMPTS = 40
/** Components per runtime: 20 runtimes never hold more than 400, within the 500-row store bound (no eviction). */
const COMPONENTS = 20
/** Stream steps issued in the same tick as the dispose call, just before it. */
const BURST = 5
/** Each call in flight at dispose must settle within this (real time). */
const SETTLE_BOUND_MS = 30_000

/** The members the test drives, the same for the facade and the Effect runtime. */
interface Driven {
  readonly record: (threadTs: string) => void
  readonly check: (threadTs: string) => Promise<boolean>
  readonly registerPrompt: (eventId: string) => void
  readonly unregisterPrompt: (eventId: string) => void
  readonly registerComponents: (ids: ReadonlyArray<string>) => void
  /** Resolves (one-shot) and answers whether the component was handed out. */
  readonly resolveComponent: (id: string) => Promise<boolean>
  readonly dispose: () => Promise<void>
}

type Opener = (store: PluginRuntime.StoreLocation, mirror: Partial<MirrorSettings>) => Promise<Driven>

const newComponent = (id: string) => ({ id, kind: "button" as const, label: "Approve", callbackData: "approve" })
const prompt = (eventId: string) => ({ roomId: ROOM, eventId, approvalId: `ap-${eventId}`, allowedDecisions: ["allow-once", "deny"] as const })

/** The Promise facade. */
const openFacade: Opener = async (store, mirror) => {
  const state = await createPluginState({ pluginId: OWNER, config, store, channels: CHANNELS, mirror })
  return {
    record: (ts) => state.slack.record("T1", "C1", ts, { agentId: "main" }),
    check: (ts) => state.slack.check("T1", "C1", ts),
    registerPrompt: (eventId) => state.matrix.register(prompt(eventId)),
    unregisterPrompt: (eventId) => state.matrix.unregister({ roomId: ROOM, eventId }),
    registerComponents: (ids) => state.discord.register({ entries: ids.map(newComponent), messageId: "m-1" }),
    resolveComponent: (id) => state.discord.resolveComponent({ id }).then((entry) => entry !== undefined),
    dispose: () => state.dispose()
  }
}

/** The Effect runtime, its services run through `runtime.runPromise`. */
const openEffectRuntime: Opener = async (store, mirror) => {
  const runtime = PluginRuntime.makeRuntime({ pluginId: OWNER, config, store, channels: CHANNELS, mirror })
  const s = await runtime.runPromise(Effect.all({ slack: SlackThreadParticipation, matrix: MatrixApprovalReactions, discord: DiscordInteractionRegistry }))
  return {
    record: (ts) => s.slack.record("T1", "C1", ts, { agentId: "main" }),
    check: (ts) => runtime.runPromise(s.slack.check("T1", "C1", ts)),
    registerPrompt: (eventId) => s.matrix.register(prompt(eventId)),
    unregisterPrompt: (eventId) => s.matrix.unregister({ roomId: ROOM, eventId }),
    registerComponents: (ids) => s.discord.register({ entries: ids.map(newComponent), messageId: "m-1" }),
    resolveComponent: (id) => runtime.runPromise(Effect.map(s.discord.resolveComponent({ id }), Option.isSome)),
    dispose: () => runtime.dispose()
  }
}

/** When dispose is called: after this many ms of the round (0: in the same tick), or as soon as a first Slack row of the round is committed. */
type Moment = number | "first-commit"

interface Variant {
  readonly name: string
  readonly open: Opener
  readonly mirror: Partial<MirrorSettings>
  readonly moments: ReadonlyArray<Moment>
}

const shutdownFlushTimeout = Duration.seconds(30)
const variants: ReadonlyArray<Variant> = [
  {
    name: "Promise facade (createPluginState), default write-behind (100 ms, batches of 1 000)",
    open: openFacade,
    mirror: { shutdownFlushTimeout },
    moments: [0, 1, 3, 10, 30, 60, 85, 95, 100, 103, 106, 110, 115, 125, 140, 160, 200, 300, "first-commit", "first-commit"]
  },
  {
    name: "Effect runtime (PluginRuntime.makeRuntime), 20 ms write-behind, batches of 250",
    open: openEffectRuntime,
    mirror: { flushInterval: Duration.millis(20), maxBatch: 250, shutdownFlushTimeout },
    moments: [0, 1, 2, 4, 8, 12, 16, 19, 21, 23, 25, 28, 32, 38, 46, 60, 90, 150, "first-commit", "first-commit"]
  }
]

const pad = (n: number, width: number) => String(n).padStart(width, "0")
const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))
const slackKey = (ts: string) => `T1:C1:${ts}`
const promptKey = (eventId: string) => `${ROOM}:${eventId}`

/** One async call the stream made, and how it ended. */
interface Call {
  readonly kind: "check-recorded" | "check-cold" | "consume"
  readonly id: string
  settled: boolean
  result: boolean | undefined
  error: unknown
  readonly done: Promise<void>
}

/** What every runtime so far did, as the store must now reflect it. */
interface Model {
  /** Matrix prompt event id → whether it is still registered. */
  readonly prompts: Map<string, boolean>
  /** Discord component id → how many times it was handed out (one-shot: at most once, ever). */
  readonly components: Map<string, number>
}

interface RoundReport {
  readonly moment: Moment
  readonly disposeCalledAtMs: number
  readonly inFlightAtDispose: number
  /** SQLite only: the round's threads committed when dispose was called (index of the newest + 1; 0–3 000). */
  readonly committedAtDispose: number | null
  readonly disposeMs: number
  readonly consumedInRound: number
  readonly hung: number
}

/** The highest index of a round's thread among `keys` + 1 (0 when none is stored). */
const committedOf = (keys: Iterable<string>, roundTag: string) => {
  let newest = -1
  const prefix = slackKey(`${roundTag}.`)
  for (const key of keys) if (key.startsWith(prefix)) newest = Math.max(newest, Number(key.slice(prefix.length)))
  return newest + 1
}

/** One runtime: open, plan, stream of calls, dispose at `moment`, then judge calls and store. Returns violations found. */
const runRound = async (
  variant: Variant,
  db: TestDatabase,
  reader: RowReader,
  model: Model,
  round: number,
  moment: Moment,
  probe: () => Database.Database | undefined
): Promise<{ readonly report: RoundReport; readonly wrong: ReadonlyArray<string> }> => {
  const wrong: Array<string> = []
  const tag = pad(round, 2)
  const store: PluginRuntime.StoreLocation = db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location }
  const driven = await variant.open(store, variant.mirror)
  const sqliteProbe = probe()
  const startedAt = performance.now()

  // The plan, all synchronous: it is queued before anything can flush.
  const threads = Array.from({ length: THREADS }, (_, i) => `${tag}.${pad(i, 5)}`)
  for (const ts of threads) driven.record(ts)
  const newPrompts = Array.from({ length: PROMPTS }, (_, i) => `$r${tag}-p${pad(i, 2)}`)
  for (const eventId of newPrompts) {
    driven.registerPrompt(eventId)
    model.prompts.set(eventId, true)
  }
  for (const eventId of newPrompts.slice(0, 10)) {
    driven.unregisterPrompt(eventId)
    model.prompts.set(eventId, false)
  }
  // Prompts an earlier runtime left in the store: their deletes join this runtime's flush.
  const earlierPrompts = [...model.prompts].filter(([eventId, live]) => live && !newPrompts.includes(eventId)).slice(0, 20)
  for (const [eventId] of earlierPrompts) {
    driven.unregisterPrompt(eventId)
    model.prompts.set(eventId, false)
  }
  const newComponents = Array.from({ length: COMPONENTS }, (_, i) => `btn-r${tag}-${pad(i, 2)}`)
  const earlierComponents = [...model.components].filter(([, handedOut]) => handedOut === 0).map(([id]) => id).slice(0, 20)
  // Components earlier runtimes handed out: a consume must find nothing (one-shot, across restarts).
  const alreadyConsumed = [...model.components].filter(([, handedOut]) => handedOut > 0).map(([id]) => id).slice(-5)
  driven.registerComponents(newComponents)
  for (const id of newComponents) model.components.set(id, 0)

  // The stream: every millisecond or so, a check of a recorded thread, a cold check, one
  // consume and one unregister — until dispose is called.
  const toConsume = [...alreadyConsumed, ...newComponents.slice(0, 10), ...earlierComponents]
  const toUnregister = newPrompts.slice(10, 20)
  const calls: Array<Call> = []
  const track = (kind: Call["kind"], id: string, promise: Promise<boolean>) => {
    const call: Call = {
      kind,
      id,
      settled: false,
      result: undefined,
      error: undefined,
      done: promise.then(
        (result) => {
          call.settled = true
          call.result = result
        },
        (error: unknown) => {
          call.settled = true
          call.error = error
        }
      )
    }
    calls.push(call)
  }
  let disposing = false
  let ticks = 0
  /** One step of the stream: a check of a recorded thread, a cold check, a consume and an unregister (while any are left). */
  const step = () => {
    const n = ticks++
    const recorded = threads[(n * 337) % THREADS]!
    track("check-recorded", recorded, driven.check(recorded))
    track("check-cold", `cold.${tag}.${n}`, driven.check(`cold.${tag}.${n}`))
    const consume = toConsume.shift()
    if (consume !== undefined) track("consume", consume, driven.resolveComponent(consume))
    const unregister = toUnregister.shift()
    if (unregister !== undefined) {
      driven.unregisterPrompt(unregister)
      model.prompts.set(unregister, false)
    }
  }
  const tick = () => {
    if (disposing) return
    step()
    setTimeout(tick, 1)
  }
  tick()

  const roundPrefix = `${slackKey(`${tag}.`)}%`
  const probeStatement = sqliteProbe?.prepare<[string, string, string], { k: string | null }>(
    "SELECT max(entry_key) AS k FROM channel_state_entries WHERE owner = ? AND namespace = ? AND entry_key LIKE ?"
  )
  const committedNow = () => {
    const newest = probeStatement?.get(OWNER, NS.slack, roundPrefix)?.k
    return newest == null ? 0 : committedOf([newest], tag)
  }

  let committedAtDispose: number | null = null
  let inFlightAtDispose = 0
  let disposeCalledAtMs = 0
  const startDispose = () => {
    disposing = true
    // A burst in the very tick of the dispose call: these calls are surely in flight when it is called.
    for (let i = 0; i < BURST; i++) step()
    disposeCalledAtMs = performance.now() - startedAt
    inFlightAtDispose = calls.filter((call) => !call.settled).length
    if (probeStatement !== undefined) committedAtDispose = committedNow()
    const began = performance.now()
    return driven.dispose().then(() => performance.now() - began)
  }
  let disposed: Promise<number>
  if (moment === 0) disposed = startDispose()
  else if (moment === "first-commit") {
    // Poll until a first row of this round is committed (real time; bounded generously).
    disposed = (async () => {
      for (let i = 0; i < 3000; i++) {
        const committed = probeStatement !== undefined ? committedNow() : committedOf(await Effect.runPromise(reader.keys(OWNER, NS.slack)), tag)
        if (committed > 0) break
        await sleep(1)
      }
      return startDispose()
    })()
  } else disposed = sleep(moment).then(startDispose)
  const disposeMs = await disposed

  // Every call made before dispose settles.
  let bound: ReturnType<typeof setTimeout> | undefined
  await Promise.race([Promise.all(calls.map((call) => call.done)), new Promise<void>((resolve) => (bound = setTimeout(resolve, SETTLE_BOUND_MS)))])
  clearTimeout(bound)
  const hung = calls.filter((call) => !call.settled)
  if (hung.length > 0) {
    wrong.push(`round ${round} (moment ${moment}): ${hung.length} of ${calls.length} calls never settled within ${SETTLE_BOUND_MS} ms, e.g. ${hung.slice(0, 3).map((c) => `${c.kind} ${c.id}`).join(", ")}`)
  }
  let consumedInRound = 0
  for (const call of calls) {
    if (!call.settled) continue
    if (call.error !== undefined) {
      wrong.push(`round ${round}: ${call.kind} ${call.id} rejected: ${String(call.error)}`)
      continue
    }
    if (call.kind === "check-recorded" && call.result !== true) wrong.push(`round ${round}: check of recorded thread ${call.id} answered ${call.result}`)
    if (call.kind === "check-cold" && call.result !== false) wrong.push(`round ${round}: check of never-recorded thread ${call.id} answered ${call.result}`)
    if (call.kind === "consume" && call.result === true) {
      consumedInRound++
      model.components.set(call.id, (model.components.get(call.id) ?? 0) + 1)
    }
  }

  // The store, read with plain SQL after the dispose.
  const rows = await Effect.runPromise(reader.rows(OWNER))
  const keysOf = (namespace: string) => new Set(rows.filter((row) => row.namespace === namespace).map((row) => row.key))
  const slack = keysOf(NS.slack)
  const newestThreads = new Set(threads.slice(THREADS - SLACK_STORE_MAX).map(slackKey))
  const slackMissing = [...newestThreads].filter((key) => !slack.has(key))
  const slackExtra = [...slack].filter((key) => !newestThreads.has(key))
  if (slackMissing.length + slackExtra.length > 0) {
    wrong.push(
      `round ${round} (moment ${moment}): Slack rows are not the ${SLACK_STORE_MAX} newest threads: ${slackMissing.length} missing (e.g. ${slackMissing.slice(0, 3)}), ${slackExtra.length} extra (e.g. ${slackExtra.slice(0, 3)})`
    )
  }
  const matrix = keysOf(NS.matrix)
  for (const [eventId, live] of model.prompts) {
    if (live && !matrix.has(promptKey(eventId))) wrong.push(`round ${round} (moment ${moment}): registered prompt ${eventId} is not stored`)
    if (!live && matrix.has(promptKey(eventId))) wrong.push(`round ${round} (moment ${moment}): unregistered prompt ${eventId} came back`)
  }
  const discord = keysOf(NS.discord)
  for (const [id, handedOut] of model.components) {
    if (handedOut > 1) wrong.push(`round ${round}: component ${id} was handed out ${handedOut} times`)
    if (handedOut >= 1 && discord.has(id)) wrong.push(`round ${round} (moment ${moment}): component ${id} was handed out (consumed) but is still stored`)
    if (handedOut === 0 && !discord.has(id)) wrong.push(`round ${round} (moment ${moment}): component ${id} was never handed out but is not stored`)
  }
  return {
    report: { moment, disposeCalledAtMs: Math.round(disposeCalledAtMs), inFlightAtDispose, committedAtDispose, disposeMs: Math.round(disposeMs), consumedInRound, hung: hung.length },
    wrong
  }
}

const sweep = (backend: BackendFactory, variant: Variant) =>
  it.scopedLive(
    `${backend.name}, ${variant.name}: disposed at ${variant.moments.length} moments (0 ms, before, at and during the flush, after) across fresh runtimes on one database — every change made before dispose is stored, nothing consumed or unregistered comes back, every call in flight settles`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const reader = yield* rowReader(db.backend as "sqlite" | "pg", db.location!)
        const model: Model = { prompts: new Map(), components: new Map() }
        const reports: Array<RoundReport> = []
        const wrong: Array<string> = []
        // SQLite: one plain connection reads how far the flush got at the moment of dispose
        // (opened once the first runtime created the file).
        let connection: Database.Database | undefined
        const probe = () => {
          if (connection === undefined && db.backend === "sqlite") connection = new Database(db.location!, { fileMustExist: true, timeout: 2000 })
          return connection
        }
        yield* Effect.addFinalizer(() => Effect.sync(() => connection?.close()))
        for (const [round, moment] of variant.moments.entries()) {
          const result = yield* Effect.promise(() => runRound(variant, db, reader, model, round, moment, probe))
          reports.push(result.report)
          wrong.push(...result.wrong)
        }
        const consumed = [...model.components.values()].filter((n) => n > 0).length
        console.log(
          `[mirror.shutdown] ${backend.name} / ${variant.name}\n` +
            `  moment  disposeAt  inFlight  committedAtDispose  disposeMs  consumed  hung\n` +
            reports
              .map(
                (r) =>
                  `  ${String(r.moment).padStart(12)}  ${String(r.disposeCalledAtMs).padStart(5)}  ${String(r.inFlightAtDispose).padStart(6)}  ${String(r.committedAtDispose ?? "-").padStart(8)}  ${String(r.disposeMs).padStart(7)}  ${String(r.consumedInRound).padStart(5)}  ${r.hung}`
              )
              .join("\n") +
            `\n  components handed out overall: ${consumed} of ${model.components.size}; prompts still registered: ${[...model.prompts.values()].filter(Boolean).length} of ${model.prompts.size}`
        )
        // The sweep tested something: calls were in flight at dispose, and components were consumed.
        expect(reports.reduce((sum, r) => sum + r.inFlightAtDispose, 0), "no call was ever in flight when dispose was called").toBeGreaterThan(0)
        expect(consumed, "no component was ever handed out").toBeGreaterThan(0)
        const kinds: Record<string, number> = {}
        for (const w of wrong) {
          const kind = w.replace(/^round \d+( \(moment [^)]*\))?: /, "").replace(/[\w$.:-]*\d[\w$.:-]*/g, "#")
          kinds[kind] = (kinds[kind] ?? 0) + 1
        }
        if (wrong.length > 0) console.log(`[mirror.shutdown] ${backend.name} / ${variant.name}: violations by kind`, kinds)
        expect(wrong.slice(0, 40), `${wrong.length} violations`).toEqual([])
      }),
    240_000
  )

const READ_ROUNDS = 5
const READ_COMPONENTS = 60

/**
 * Consumes whose store read is still running when dispose is called: components registered by
 * an earlier runtime (so this one has them only in the store), 60 `resolveComponent` calls
 * made in the tick of the dispose call — on PostgreSQL their lookups are real I/O, still
 * running when the caches and the store shut down. Whatever each answers, one-shot must hold
 * across restarts: a component handed out is gone for the next runtime; one not handed out is
 * still there.
 */
const readsInFlight = (backend: BackendFactory, policy: PluginRuntime.PluginRuntimeOptions["whenUnreachable"] & string) =>
  it.scopedLive(
    `${backend.name}, whenUnreachable ${policy}: ${READ_COMPONENTS} resolveComponent calls of components held only in the store, made in the tick of the dispose call (${READ_ROUNDS} rounds) — each settles, a component handed out is gone after the restart, one not handed out is still there`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const pluginId = `reads-${policy}`
        const reader = yield* rowReader(db.backend as "sqlite" | "pg", db.location!)
        const store: PluginRuntime.StoreLocation = db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location }
        const open = () =>
          createPluginState({
            pluginId,
            config: { plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } },
            store,
            channels: ["discord"],
            whenUnreachable: policy,
            mirror: { shutdownFlushTimeout }
          })
        const wrong: Array<string> = []
        const figures: Array<{ handedOut: number; notHandedOut: number; hung: number; handedOutButStored: number }> = []
        for (let round = 0; round < READ_ROUNDS; round++) {
          const ids = Array.from({ length: READ_COMPONENTS }, (_, i) => `rd-${round}-${pad(i, 2)}`)
          const registrar = yield* Effect.promise(open)
          registrar.discord.register({ entries: ids.map(newComponent), messageId: "m-1" })
          yield* Effect.promise(() => registrar.dispose())
          const before = yield* reader.keys(pluginId, NS.discord)
          expect(ids.filter((id) => !before.has(id)), "registrations missing before the consumes").toEqual([])

          const state = yield* Effect.promise(open)
          const outcome = yield* Effect.promise(async () => {
            const settled = new Map<string, boolean | "rejected">()
            const calls = ids.map((id) =>
              state.discord.resolveComponent({ id }).then(
                (entry) => void settled.set(id, entry !== undefined),
                () => void settled.set(id, "rejected")
              )
            )
            await state.dispose()
            let bound: ReturnType<typeof setTimeout> | undefined
            await Promise.race([Promise.all(calls), new Promise<void>((resolve) => (bound = setTimeout(resolve, SETTLE_BOUND_MS)))])
            clearTimeout(bound)
            return settled
          })
          const after = yield* reader.keys(pluginId, NS.discord)
          const handedOut = ids.filter((id) => outcome.get(id) === true)
          const notHandedOut = ids.filter((id) => outcome.get(id) === false)
          const hung = ids.filter((id) => !outcome.has(id))
          const handedOutButStored = handedOut.filter((id) => after.has(id))
          figures.push({ handedOut: handedOut.length, notHandedOut: notHandedOut.length, hung: hung.length, handedOutButStored: handedOutButStored.length })
          if (hung.length > 0) wrong.push(`round ${round}: ${hung.length} calls never settled`)
          const rejected = ids.filter((id) => outcome.get(id) === "rejected")
          if (rejected.length > 0) wrong.push(`round ${round}: ${rejected.length} calls rejected`)
          if (handedOutButStored.length > 0) {
            wrong.push(`round ${round}: ${handedOutButStored.length} of ${handedOut.length} components handed out are still stored (they come back after the restart), e.g. ${handedOutButStored.slice(0, 3)}`)
          }
          const lost = notHandedOut.filter((id) => !after.has(id))
          if (lost.length > 0) wrong.push(`round ${round}: ${lost.length} components never handed out are gone from the store, e.g. ${lost.slice(0, 3)}`)

          // Through the API of the next runtime: a handed-out component stays expired.
          const next = yield* Effect.promise(open)
          const back = yield* Effect.promise(() => Promise.all(handedOut.map((id) => next.discord.resolveComponent({ id, consume: false }))))
          yield* Effect.promise(() => next.dispose())
          const resurrected = handedOut.filter((_, i) => back[i] !== undefined)
          if (resurrected.length > 0) wrong.push(`round ${round}: ${resurrected.length} components handed out before the restart resolve again after it, e.g. ${resurrected.slice(0, 3)}`)
        }
        const counted = {
          dropped: yield* countersByTags("channel_state_dropped_writes", { plugin: pluginId, namespace: NS.discord }),
          undecided: yield* countersByTags("channel_state_undecided_claims", { plugin: pluginId, namespace: NS.discord })
        }
        console.log(`[mirror.shutdown] ${backend.name} reads in flight at dispose, whenUnreachable ${policy}: per round ${JSON.stringify(figures)}; counters ${JSON.stringify(counted)}`)
        expect(wrong, `${wrong.length} violations`).toEqual([])
      }),
    120_000
  )

describe("shutdown during a flush loses nothing and hangs nothing", () => {
  for (const backend of sqlBackends) for (const variant of variants) sweep(backend, variant)
  for (const backend of sqlBackends) for (const policy of ["claim-locally", "in-flight"] as const) readsInFlight(backend, policy)
})
