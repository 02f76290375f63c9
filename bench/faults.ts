/**
 * `faults.loop_delay_under_lock`: the worst event-loop delay (`monitorEventLoopDelay`,
 * resolution 5 ms) while a second OS process holds the SQLite file's write lock
 * (`BEGIN EXCLUSIVE` plus a write, held 3 s) and the persistent caches serve mixed
 * traffic — against the worst delay of the same traffic with no lock held.
 *
 * One plugin runtime (`PluginRuntime.layer`, plugin `gateway`, persistence on, production
 * write-behind settings) with Slack, MS Teams, BlueBubbles and Feishu on one file. Traffic
 * arrives at a fixed rate (600 operations 5 ms apart, as messages do: whatever earlier ones
 * are still waiting for), a quarter per channel: Slack `record` + `has` + `check` + a cold
 * `check` (a store miss); MS Teams `record` + `wasSent` + `check`; BlueBubbles `claim`,
 * `finalize`, `claim` again; Feishu `beginProcessing`, `finalize`, `hasProcessed`. Under the
 * lock, claims and finalizes wait it out (the store's `lockWait` is 5 s) and the flusher's
 * batches are retried until it is released.
 *
 * A round is measured from the first arrival until every operation answered and every
 * queued write was flushed (so the burst after the release is in the window). Rounds
 * alternate locked / not locked (rotated), one warmup each; the figure is the median of
 * each side's worst delays.
 *
 * Checked every round: no sync member threw, every answer is the right one (each claim
 * `Claimed`, each finalize `done`, each second claim `Duplicate`, each check true, each cold
 * check false), no write was dropped, and every write of the round is in the file after.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import Database from "better-sqlite3"
import { Duration, Effect, Layer, ManagedRuntime, Metric } from "effect"
import { BlueBubblesInboundDedupe } from "../src/channels/BlueBubblesInboundDedupe.js"
import { FeishuMessageDedupe } from "../src/channels/FeishuMessageDedupe.js"
import { MsTeamsSentMessages } from "../src/channels/MsTeamsSentMessages.js"
import { SlackThreadParticipation } from "../src/channels/SlackThreadParticipation.js"
import { CacheMetricFamilies } from "../src/layers/mirror/CacheMetrics.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type Child, commands, isMain, runChild, say, spawnChild } from "./children.js"
import { captureProblems, fail, median, type Row, row, runAlone, sleep, type TimingOptions, timed, timeInterleaved, type Work } from "./harness.js"

const SELF = fileURLToPath(import.meta.url)
const PLUGIN = "gateway"
const CHANNELS = ["slack", "msteams", "bluebubbles", "feishu"] as const satisfies ReadonlyArray<PluginRuntime.ChannelName>
/** The store namespace each channel's cache writes. */
const NS = Object.fromEntries(CHANNELS.map((channel) => [channel, PluginRuntime.channelModules[channel].spec.namespace])) as Record<(typeof CHANNELS)[number], string>
const config = { plugins: { entries: { [PLUGIN]: { config: { experimentalPersistentState: true } } } } }
const LOCK_MS = 3000
/** Operations per round, one every ARRIVAL_MS: the traffic spans the lock. */
const OPS = 600
const ARRIVAL_MS = 5
const RESOLUTION_MS = 5
const TARGET = 3
const timing = { n: 1, rounds: 5, warmup: 1 } satisfies TimingOptions

// ---------------------------------------------------------------------------------------
// the lock holder: a second process (this module, run as `--lock-holder <file>`)

type HolderLine = { readonly type: "ready" } | { readonly type: "locked" } | { readonly type: "released"; readonly heldMs: number }

const lockHolder = async (file: string) => {
  const db = new Database(file, { timeout: 5000 })
  db.exec("CREATE TABLE IF NOT EXISTS bench_fault_probe (n INTEGER)")
  say({ type: "ready" })
  for await (const command of commands<{ readonly type: "lock"; readonly ms: number }>()) {
    db.exec("BEGIN EXCLUSIVE")
    db.prepare("INSERT INTO bench_fault_probe VALUES (1)").run()
    const lockedAt = performance.now()
    say({ type: "locked" })
    await sleep(command.ms)
    db.exec("COMMIT")
    say({ type: "released", heldMs: performance.now() - lockedAt })
  }
  db.close()
}

// ---------------------------------------------------------------------------------------
// traffic

const services = Effect.all({
  slack: SlackThreadParticipation,
  msteams: MsTeamsSentMessages,
  bluebubbles: BlueBubblesInboundDedupe,
  feishu: FeishuMessageDedupe
})
type Services = Effect.Effect.Success<typeof services>

/** What one round's traffic did wrong (must stay empty), and its answers. */
interface Tally {
  readonly wrong: Array<string>
  syncThrows: number
  answered: number
}

/** The keys one round writes, as stored, per namespace. */
const keysOf = {
  slack: (tag: string, i: number) => `T1:C1:${tag}.${i}`,
  msteams: (tag: string, i: number) => `conv-${tag}:m${i}`,
  bluebubbles: (tag: string, i: number) => `acc:${tag}-${i}`,
  feishu: (tag: string, i: number) => `app:om_${tag}_${i}`
}
const CHANNEL_OF = ["slack", "msteams", "bluebubbles", "feishu"] as const

const mixedOp = (s: Services, tally: Tally, tag: string, i: number): Effect.Effect<void> => {
  const wrong = (what: string, got: unknown) => void tally.wrong.push(`${what} ${tag}/${i}: ${String(got)}`)
  const sync = (f: () => boolean, what: string) => {
    try {
      if (!f()) wrong(what, false)
    } catch (error) {
      tally.syncThrows++
      wrong(`${what} threw`, error)
    }
  }
  const expect = <A>(effect: Effect.Effect<A>, expected: A, what: string) => Effect.map(effect, (got) => (got === expected ? undefined : wrong(what, got)))
  const op = (): Effect.Effect<void> => {
    switch (i % 4) {
      case 0:
        return Effect.suspend(() => {
          sync(() => {
            s.slack.record("T1", "C1", `${tag}.${i}`, { agentId: "main" })
            return s.slack.has("T1", "C1", `${tag}.${i}`)
          }, "slack.has")
          return Effect.zipRight(expect(s.slack.check("T1", "C1", `${tag}.${i}`), true, "slack.check"), expect(s.slack.check("T1", "C1", `never-${tag}.${i}`), false, "slack.check(cold)"))
        })
      case 1:
        return Effect.suspend(() => {
          sync(() => {
            s.msteams.record(`conv-${tag}`, `m${i}`)
            return s.msteams.wasSent(`conv-${tag}`, `m${i}`)
          }, "msteams.wasSent")
          return expect(s.msteams.check(`conv-${tag}`, `m${i}`), true, "msteams.check")
        })
      case 2:
        return Effect.gen(function* () {
          const message = { accountId: "acc", guid: `${tag}-${i}` }
          const first = yield* s.bluebubbles.claim(message)
          if (first._tag !== "Claimed") return wrong("bluebubbles.claim", first._tag)
          yield* expect(first.finalize, "done", "bluebubbles.finalize")
          yield* expect(Effect.map(s.bluebubbles.claim(message), (again) => again._tag), "Duplicate", "bluebubbles.claim again")
        })
      default:
        return Effect.gen(function* () {
          const message = { namespace: "app", messageId: `om_${tag}_${i}` }
          const first = yield* s.feishu.beginProcessing(message)
          if (first._tag !== "Claimed") return wrong("feishu.beginProcessing", first._tag)
          yield* expect(first.finalize, "done", "feishu.finalize")
          yield* expect(s.feishu.hasProcessed(message), true, "feishu.hasProcessed")
        })
    }
  }
  return Effect.map(op(), () => {
    tally.answered++
  })
}

/** OPS operations, the i-th arriving i × ARRIVAL_MS after the start (each on its own fiber). */
const traffic = (s: Services, tally: Tally, tag: string) =>
  Effect.forEach(
    Array.from({ length: OPS }, (_, i) => i),
    (i) => Effect.zipRight(Effect.sleep(Duration.millis(i * ARRIVAL_MS)), mixedOp(s, tally, tag, i)),
    { concurrency: "unbounded", discard: true }
  )

const flushed = (namespace: string) => Metric.tagged(Metric.tagged(CacheMetricFamilies.flushedWrites, "plugin", PLUGIN), "namespace", namespace)
const dropped = (namespace: string) => Metric.tagged(Metric.tagged(CacheMetricFamilies.droppedWrites, "plugin", PLUGIN), "namespace", namespace)
/** Writes flushed and dropped so far by the two write-behind caches (Slack and MS Teams), process-wide. */
const mirrorTotals = () => {
  const count = (metric: Metric.Metric.Counter<number>) => metric.unsafeValue([]).count
  return { flushed: count(flushed(NS.slack)) + count(flushed(NS.msteams)), dropped: count(dropped(NS.slack)) + count(dropped(NS.msteams)) }
}
/** Slack and MS Teams writes of one round: a quarter of the operations each. */
const QUEUED_PER_ROUND = 2 * (OPS / 4)

/** The keys of round `tag` missing from the file (claims must be stored committed). */
const missingRows = (file: string, tag: string): Array<string> => {
  const db = new Database(file, { readonly: true })
  try {
    const select = db.prepare<[string, string], { entry_key: string; value_json: string }>(
      "SELECT entry_key, value_json FROM channel_state_entries WHERE owner = ? AND namespace = ?"
    )
    const missing: Array<string> = []
    for (const channel of ["slack", "msteams", "bluebubbles", "feishu"] as const) {
      const stored = new Map(select.all(PLUGIN, NS[channel]).map((r) => [r.entry_key, r.value_json]))
      for (let i = CHANNEL_OF.indexOf(channel); i < OPS; i += 4) {
        const value = stored.get(keysOf[channel](tag, i))
        const claim = channel === "bluebubbles" || channel === "feishu"
        if (value === undefined || (claim && !value.includes('"committed"'))) missing.push(`${NS[channel]}|${keysOf[channel](tag, i)}`)
      }
    }
    return missing
  } finally {
    db.close()
  }
}

interface Round {
  readonly worstNs: number
  readonly p99Ns: number
  /** From the first arrival until everything answered and every queued write was flushed. */
  readonly windowMs: number
}

// ---------------------------------------------------------------------------------------

/**
 * The plugin runtime on `<dir>/state/state.sqlite` and the lock-holding process; `round`
 * runs one measured round of traffic (with the lock held for it, or not), checked.
 * Exported for bench/profile.ts (attribution).
 */
export const openFaultsRig = async (dir: string) => {
  const file = path.join(dir, "state", "state.sqlite")
  const logs = captureProblems()
  const runtime = ManagedRuntime.make(PluginRuntime.layer({ pluginId: PLUGIN, config, store: { sqlitePath: file }, channels: CHANNELS }).pipe(Layer.provide(logs.layer)))
  let holder: Child<HolderLine> | undefined
  let s: Services
  try {
    // The runtime creates the file; then the other process opens it.
    s = await runtime.runPromise(services)
    holder = spawnChild<HolderLine>(SELF, ["--lock-holder", file])
    await holder.next("ready")
  } catch (error) {
    await holder?.close()
    await runtime.dispose()
    throw error
  }
  const lock = holder

  const measure = async (tag: string): Promise<Round> => {
    const tally: Tally = { wrong: [], syncThrows: 0, answered: 0 }
    const before = mirrorTotals()
    const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
    histogram.enable()
    const start = performance.now()
    await runtime.runPromise(traffic(s, tally, tag))
    const deadline = Date.now() + 20_000
    while (mirrorTotals().flushed - before.flushed < QUEUED_PER_ROUND) {
      if (Date.now() > deadline) fail(`faults ${tag}: ${mirrorTotals().flushed - before.flushed} of ${QUEUED_PER_ROUND} queued writes flushed within 20 s`)
      await sleep(2)
    }
    const windowMs = performance.now() - start
    histogram.disable()
    const after = mirrorTotals()
    if (tally.syncThrows > 0 || tally.wrong.length > 0) fail(`faults ${tag}: ${tally.syncThrows} sync throws, ${tally.wrong.length} wrong answers (${tally.wrong.slice(0, 3).join("; ")})`)
    if (tally.answered !== OPS) fail(`faults ${tag}: ${tally.answered} of ${OPS} operations answered`)
    if (after.dropped !== before.dropped) fail(`faults ${tag}: ${after.dropped - before.dropped} writes dropped`)
    if (after.flushed - before.flushed !== QUEUED_PER_ROUND) fail(`faults ${tag}: ${after.flushed - before.flushed} writes flushed, expected ${QUEUED_PER_ROUND}`)
    const missing = missingRows(file, tag)
    if (missing.length > 0) fail(`faults ${tag}: ${missing.length} writes not in the file (${missing.slice(0, 3).join(", ")})`)
    return { worstNs: histogram.max, p99Ns: histogram.percentile(99), windowMs }
  }

  return {
    logs,
    /** One round of traffic tagged `tag`; with `locked`, the other process holds the lock from just before the first arrival for LOCK_MS. */
    round: async (tag: string, locked: boolean): Promise<Round & { readonly heldMs?: number }> => {
      if (!locked) return measure(tag)
      lock.send({ type: "lock", ms: LOCK_MS })
      await lock.next("locked")
      const result = await measure(tag)
      return { ...result, heldMs: (await lock.next("released")).heldMs }
    },
    close: async () => {
      await lock.close()
      await runtime.dispose()
    }
  }
}

const loopDelayRow = async (dir: string): Promise<Row> => {
  const rig = await openFaultsRig(dir)
  try {
    const rounds: Record<"locked" | "free", Array<Round>> = { locked: [], free: [] }
    const heldMs: Array<number> = []
    const side =
      (name: "locked" | "free"): Work =>
      async (round) => {
        const result = await rig.round(`${name}${round}`, name === "locked")
        if (result.heldMs !== undefined) heldMs.push(result.heldMs)
        if (round >= timing.warmup) rounds[name].push(result)
        return timed(result.worstNs)
      }
    const times = await timeInterleaved({ locked: side("locked"), free: side("free") }, timing, { rotate: true })
    const ms = (ns: number) => `${(ns / 1e6).toFixed(1)} ms`
    const summary = (name: "locked" | "free") => {
      const r = rounds[name]
      return `worst per round ${r.map((x) => ms(x.worstNs)).join(", ")}; p99 median ${ms(median(r.map((x) => x.p99Ns)))}; window median ${(median(r.map((x) => x.windowMs)) / 1000).toFixed(2)} s`
    }
    return row(
      "faults.loop_delay_under_lock",
      "ns (worst loop delay)",
      times.locked,
      times.free,
      TARGET,
      `PluginRuntime (slack, msteams, bluebubbles, feishu; persistence on, default write-behind) on one SQLite file; ${OPS} mixed operations arriving ${ARRIVAL_MS} ms apart; monitorEventLoopDelay(resolution ${RESOLUTION_MS} ms) from the first arrival until all answered and all queued writes flushed; median of ${timing.rounds} rounds per side (after ${timing.warmup}), alternating. ` +
        `Locked: a second process holds BEGIN EXCLUSIVE + a write for ${LOCK_MS} ms from the first arrival (held ${Math.round(median(heldMs))} ms median) — ${summary("locked")}. ` +
        `Baseline, no lock: the same traffic — ${summary("free")}. ` +
        `Checked every round: no sync throw, every answer right (claims Claimed, finalizes done, second claims Duplicate), nothing dropped, every write in the file; ${rig.logs.lines.length} warning/error log lines in all.`
    )
  } finally {
    await rig.close()
  }
}

/** Runs the fault benchmarks and returns their rows. */
export const faultsBench = async (): Promise<Array<Row>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-faults-"))
  try {
    console.error(`bench: worst event-loop delay while another process holds the SQLite write lock for ${LOCK_MS / 1000} s …`)
    return [await loopDelayRow(dir)]
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (isMain(import.meta.url)) {
  if (process.argv[2] === "--lock-holder") runChild(() => lockHolder(process.argv[3]!))
  else await runAlone(faultsBench)
}
