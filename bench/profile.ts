/**
 * Where our side of a benchmark spends its time (attribution only: no row, nothing merged).
 *
 *   node --import tsx bench/profile.ts writebehind [rounds]   writebehind.vs_raw_batched
 *   node --import tsx bench/profile.ts restart [children]     restart.open_to_first_answer_*
 *   node --import tsx bench/profile.ts faults                 faults.loop_delay_under_lock
 *
 * writebehind — the row's work (20 000 distinct records through the Slack record path into a
 * namespace whose store max is above 20 000, until the flusher has committed them) against
 * raw better-sqlite3 (two 500-row upserts per transaction of 1 000), fresh file and runtime
 * per round, in three passes:
 * 1. timing splits (this process: every better-sqlite3 statement timed, the keyed store's
 *    `writeBatch` wrapped and timed): per record, the sync record loop; inside `writeBatch`,
 *    the time in SQLite by statement and the JavaScript around it; the flusher's wake-up,
 *    the gaps between batches and the tail. The raw side the same way;
 * 2. differential timings (a child process, nothing wrapped): the same rows through ours end
 *    to end, through `writeBatch` alone, through `@effect/sql`'s client alone, raw, and the
 *    values through `encodeValue` alone — the differences attribute the cost by layer;
 * 3. CPU profiles (the same child; V8 sampling every 100 µs, only while a round is timed):
 *    per record by area, by function (self time), and our functions (inclusive time; frames
 *    are mapped back to src/ lines through tsx's source maps).
 * restart — fresh child processes opening one more layer each before the same point read
 * (raw driver, `@effect/sql` client, keyed store, plugin runtime), then one CPU profile.
 * faults — one locked and one free round CPU-profiled, with the SQLITE_BUSY answers counted.
 *
 * Profiles are written to $TMPDIR/channel-state-profiles/ (Chrome DevTools or speedscope).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import Database from "better-sqlite3"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Layer, ManagedRuntime, Metric } from "effect"
import { Participation } from "../src/channels/SlackThreadParticipation.js"
import { type BatchOp, KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { makeStatements } from "../src/layers/store/sqlStatements.js"
import { makeWriteTransactions } from "../src/layers/store/sqlTransaction.js"
import { type ResolvedNamespace, resolveNamespace } from "../src/layers/store/storeRules.js"
import { encodeValue } from "../src/layers/store/valueRules.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import {
  BATCH,
  compositeKey,
  PLUGIN,
  rawWork,
  rawWriters,
  storeLayer,
  THROUGHPUT_MIRROR,
  UNBOUNDED_NAMESPACE,
  UnboundedThreads,
  unboundedFlushed,
  unboundedLayers,
  untilFlushed,
  WRITES,
  writeThread
} from "./channels.js"
import { REPO_ROOT, spawnChild } from "./children.js"
import { type CpuProfile, formatSummary, profileRegion, summarize } from "./cpuProfile.js"
import { adminSql, createStoreFile, fail, freshPgDatabase, median, openRawStoreFile, pgBaseUrl, sampleInterleaved, sleep, type Work } from "./harness.js"
import { openFaultsRig } from "./faults.js"
import { type Backend, fill, type RestartLine, type RestartMode } from "./restart.js"
import { instrumentSqlite, type SqliteProbe } from "./sqliteProbe.js"

const SELF = fileURLToPath(import.meta.url)
const PROFILES = path.join(os.tmpdir(), "channel-state-profiles")
const WARMUP = 3
const TTL_MS = 24 * 60 * 60 * 1000
const flushedSoFar = () => Effect.runSync(Metric.value(unboundedFlushed)).count

/** Spent time of the wrapped `writeBatch` calls, and when the first began and the last ended. */
interface Spent {
  ns: number
  calls: number
  first: bigint
  last: bigint
}

/** The keyed store in context, with every handle's `writeBatch` timed into `spent`. */
const timedWriteBatch = (spent: Spent) =>
  Layer.effect(
    KeyedStore,
    Effect.map(KeyedStore, (store) =>
      KeyedStore.of({
        ...store,
        open: (options) =>
          Effect.map(store.open(options), (handle) => ({
            ...handle,
            writeBatch: (ops) =>
              Effect.suspend(() => {
                const start = process.hrtime.bigint()
                if (spent.calls === 0) spent.first = start
                return Effect.ensuring(
                  handle.writeBatch(ops),
                  Effect.sync(() => {
                    spent.last = process.hrtime.bigint()
                    spent.ns += Number(spent.last - start)
                    spent.calls++
                  })
                )
              })
          }))
      })
    )
  )

/** Runs the timed part of a round (profiling it, say). */
type During = <A>(timed: () => Promise<A>) => Promise<A>
const plain: During = (timed) => timed()

interface OursRound {
  readonly totalNs: number
  readonly loopNs: number
  /** When the record loop ended and when the flushed count was seen complete (hrtime). */
  readonly loopEnd: bigint
  readonly end: bigint
}

/** One round of ours on a fresh file and runtime (built before the clock starts). */
const oursRound = async (dir: string, round: number, options: { readonly wrap?: Spent; readonly during?: During } = {}): Promise<OursRound> => {
  const file = path.join(dir, `ours-${round}.sqlite`)
  const base = unboundedLayers.layerPersistent({ pluginId: PLUGIN, mirror: THROUGHPUT_MIRROR })
  const layer =
    options.wrap === undefined ? base.pipe(Layer.provide(storeLayer(file))) : base.pipe(Layer.provide(timedWriteBatch(options.wrap)), Layer.provide(storeLayer(file)))
  const runtime = ManagedRuntime.make(layer)
  const { record } = await runtime.runPromise(UnboundedThreads)
  const reader = new Database(file, { readonly: true })
  const flushedBefore = flushedSoFar()
  try {
    const result = await (options.during ?? plain)(async () => {
      const start = process.hrtime.bigint()
      for (let i = 0; i < WRITES; i++) {
        const t = writeThread(round, i)
        record(t.accountId, t.channelId, t.threadTs)
      }
      const loopEnd = process.hrtime.bigint()
      await untilFlushed(unboundedFlushed, flushedBefore + WRITES)
      const end = process.hrtime.bigint()
      return { totalNs: Number(end - start), loopNs: Number(loopEnd - start), loopEnd, end }
    })
    const rows = reader.prepare<[], { n: number }>("SELECT count(*) AS n FROM channel_state_entries").get()!.n
    if (rows !== WRITES) fail(`ours holds ${rows} rows`)
    return result
  } finally {
    reader.close()
    await runtime.dispose()
  }
}

const rawRound = async (dir: string, round: number, during: During = plain): Promise<number> => {
  const db = await openRawStoreFile(path.join(dir, `raw-${round}.sqlite`))
  try {
    return await during(async () => {
      const start = process.hrtime.bigint()
      rawWork(rawWriters(db).multiRow)(round, WRITES)
      return Number(process.hrtime.bigint() - start)
    })
  } finally {
    db.close()
  }
}

const perRecord = (ns: number) => `${(ns / WRITES / 1000).toFixed(2).padStart(6)} µs`

const printCosts = (probe: SqliteProbe) => {
  for (const [label, cost] of [...probe.costs()].sort((a, b) => b[1].ns - a[1].ns)) {
    console.log(`    ${perRecord(cost.ns)}  ${String(cost.calls).padStart(5)} calls  ${label}`)
  }
}
const sqliteNs = (probe: SqliteProbe) => [...probe.costs().values()].reduce((sum, cost) => sum + cost.ns, 0)

const splits = async (dir: string, rounds: number) => {
  const probe = instrumentSqlite({ timing: true })
  const spent: Spent = { ns: 0, calls: 0, first: 0n, last: 0n }
  const ours: Array<OursRound & { batchNs: number; sqlNs: number; wakeNs: number; gapsNs: number; tailNs: number }> = []
  const raw: Array<{ totalNs: number; sqlNs: number }> = []
  for (let r = 0; r < WARMUP + rounds; r++) {
    const last = r === WARMUP + rounds - 1
    probe.reset()
    spent.ns = 0
    spent.calls = 0
    spent.first = 0n
    spent.last = 0n
    const o = await oursRound(dir, r, { wrap: spent })
    if (r >= WARMUP) {
      const wakeNs = Number(spent.first - o.loopEnd)
      const tailNs = Number(o.end - spent.last)
      ours.push({ ...o, batchNs: spent.ns, sqlNs: sqliteNs(probe), wakeNs, tailNs, gapsNs: Number(spent.last - spent.first) - spent.ns })
    }
    if (last) {
      console.log(`ours, time in SQLite by statement, last round (per record; ${spent.calls} writeBatch calls):`)
      printCosts(probe)
    }
    probe.reset()
    const rawNs = await rawRound(dir, r)
    if (r >= WARMUP) raw.push({ totalNs: rawNs, sqlNs: sqliteNs(probe) })
    if (last) {
      console.log("raw, time in SQLite by statement, last round (per record):")
      printCosts(probe)
    }
    await sleep(20)
  }
  const m = (values: ReadonlyArray<number>) => perRecord(median(values))
  console.log(`\nsplits, per record (medians of ${rounds} rounds after ${WARMUP}; every statement timed, writeBatch wrapped):`)
  console.log(`  ours: record loop, then until committed                   ${m(ours.map((o) => o.totalNs))}`)
  console.log(`    the sync record loop                                    ${m(ours.map((o) => o.loopNs))}`)
  console.log(`    inside writeBatch                                       ${m(ours.map((o) => o.batchNs))}`)
  console.log(`      in SQLite (every statement, BEGIN/COMMIT included)    ${m(ours.map((o) => o.sqlNs))}`)
  console.log(`      JavaScript around it (Effect, @effect/sql, checks)    ${m(ours.map((o) => o.batchNs - o.sqlNs))}`)
  console.log(`    outside both                                            ${m(ours.map((o) => o.totalNs - o.loopNs - o.batchNs))}`)
  console.log(`      loop end → first writeBatch (1 ms flush timer, startFlight, GC)  ${m(ours.map((o) => o.wakeNs))}`)
  console.log(`      between writeBatch calls (flush loop, metrics, GC pauses)       ${m(ours.map((o) => o.gapsNs))}`)
  console.log(`      last writeBatch → seen flushed                        ${m(ours.map((o) => o.tailNs))}`)
  console.log(`  raw: the same rows, 2 × 500-row upserts per transaction   ${m(raw.map((x) => x.totalNs))}`)
  console.log(`    in SQLite                                               ${m(raw.map((x) => x.sqlNs))}`)
  console.log(`    JavaScript (rows, JSON, parameter arrays)               ${m(raw.map((x) => x.totalNs - x.sqlNs))}`)
}

/**
 * Differential timings, interleaved rounds on fresh files (medians): the same 20 000 rows
 * A. through ours end to end (the sync record loop, then until committed),
 * B. as 20 prepared batches of 1 000 Register steps through the keyed store's `writeBatch`,
 * C. as the same statements (the store's own statement builder: 2 × 500-row upserts and the
 *    row-count read per transaction) through `@effect/sql-sqlite-node`'s client directly,
 * D. as raw better-sqlite3 (the bench's baseline);
 * E. and `encodeValue` (Schema encode + JSON checks + stringify) of the 20 000 values alone.
 * A − loop − B is the mirror's own cost (queue, flusher, scheduling); B − C the keyed store's
 * JavaScript; C − D `@effect/sql`'s.
 */
const differential = async (dir: string, rounds: number) => {
  let ours: { record: UnboundedThreads["Type"]["record"]; runtime: ManagedRuntime.ManagedRuntime<UnboundedThreads, StateStoreError> } | undefined
  let store: { runtime: ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>; handle: NamespaceHandle<Participation> } | undefined
  let client: { runtime: ManagedRuntime.ManagedRuntime<SqlClient, unknown>; sql: SqlClient } | undefined
  let raw: Database.Database | undefined
  let ns: ResolvedNamespace<Participation> | undefined
  const loopNs: Array<number> = []
  const namespaceOptions = { owner: PLUGIN, namespace: UNBOUNDED_NAMESPACE, schema: Participation, maxEntries: 1_000_000, ttl: TTL_MS }
  const statements = makeStatements({ backend: "sqlite", databaseClock: false }, PLUGIN, UNBOUNDED_NAMESPACE)
  const close = async () => {
    await ours?.runtime.dispose()
    await store?.runtime.dispose()
    await client?.runtime.dispose()
    raw?.close()
  }
  const setup = async (round: number) => {
    await close()
    const file = (what: string) => path.join(dir, `${what}-${round}.sqlite`)
    const oursRuntime = ManagedRuntime.make(unboundedLayers.layerPersistent({ pluginId: PLUGIN, mirror: THROUGHPUT_MIRROR }).pipe(Layer.provide(storeLayer(file("ours")))))
    ours = { runtime: oursRuntime, record: (await oursRuntime.runPromise(UnboundedThreads)).record }
    const storeRuntime = ManagedRuntime.make(storeLayer(file("store")))
    store = { runtime: storeRuntime, handle: await storeRuntime.runPromise(Effect.flatMap(KeyedStore, (s) => s.open(namespaceOptions))) }
    await createStoreFile(file("client"))
    const clientRuntime = ManagedRuntime.make(SqliteClient.layer({ filename: file("client") }))
    const sql = await clientRuntime.runPromise(SqlClient)
    await clientRuntime.runPromise(sql`PRAGMA synchronous = NORMAL`)
    client = { runtime: clientRuntime, sql }
    raw = await openRawStoreFile(file("raw"))
    ns ??= await Effect.runPromise(resolveNamespace(namespaceOptions))
  }
  const batchesOf = <T>(round: number, f: (t: ReturnType<typeof writeThread>, now: number) => T): Array<Array<T>> => {
    const batches: Array<Array<T>> = []
    for (let first = 0; first < WRITES; first += BATCH) {
      const batch: Array<T> = []
      for (let i = first; i < first + BATCH; i++) batch.push(f(writeThread(round, i), Date.now()))
      batches.push(batch)
    }
    return batches
  }
  const oursWork: Work = async (round) => {
    const { record } = ours!
    const flushedBefore = flushedSoFar()
    const start = process.hrtime.bigint()
    for (let i = 0; i < WRITES; i++) {
      const t = writeThread(round, i)
      record(t.accountId, t.channelId, t.threadTs)
    }
    if (round >= WARMUP) loopNs.push(Number(process.hrtime.bigint() - start))
    await untilFlushed(unboundedFlushed, flushedBefore + WRITES)
  }
  let prepared: Array<Array<BatchOp<Participation>>> = []
  const storeWork: Work = async () => {
    const { runtime, handle } = store!
    await runtime.runPromise(Effect.forEach(prepared, (ops) => handle.writeBatch(ops), { discard: true }))
  }
  const clientWork: Work = async (round) => {
    const { runtime, sql } = client!
    // Inside the transactions below its statements go to the transaction's connection.
    const { execute } = makeWriteTransactions(sql, 5_000)
    const batches = batchesOf(round, (t, now) => ({ key: compositeKey(t), json: JSON.stringify({ repliedAt: now }), createdAt: now, expiresAt: now + TTL_MS }))
    await runtime.runPromise(
      Effect.forEach(
        batches,
        (rows) =>
          sql.withTransaction(
            Effect.zipRight(
              Effect.forEach([rows.slice(0, BATCH / 2), rows.slice(BATCH / 2)], (chunk) => execute(statements.upsertMany(chunk)), { discard: true }),
              execute(statements.counts(false))
            )
          ),
        { discard: true }
      )
    )
  }
  const rawWorkOf: Work = (round) => rawWork(rawWriters(raw!).multiRow)(round, WRITES)
  const encodeWork: Work = (round) => {
    for (let i = 0; i < WRITES; i++) {
      const encoded = encodeValue(ns!, "writeBatch", compositeKey(writeThread(round, i)), { repliedAt: Date.now() })
      if (encoded._tag === "Left") fail("encodeValue refused")
    }
  }
  try {
    const samples = await sampleInterleaved(
      { ours: oursWork, store: storeWork, client: clientWork, raw: rawWorkOf, encode: encodeWork },
      { n: WRITES, rounds, warmup: WARMUP },
      {
        setup: async (round) => {
          await setup(round)
          prepared = batchesOf(round, (t, now) => ({ _tag: "Register", key: compositeKey(t), value: { repliedAt: now }, createdAt: now, expiresAt: now + TTL_MS }))
        },
        rotate: true
      }
    )
    const m = (values: ReadonlyArray<number>) => median(values)
    const us = (ns: number) => `${(ns / 1000).toFixed(2).padStart(6)} µs`
    const [a, b, c, d, e, loop] = [m(samples.ours), m(samples.store), m(samples.client), m(samples.raw), m(samples.encode), m(loopNs) / WRITES]
    console.log(`\ndifferential timings, per record (medians of ${rounds} interleaved rounds after ${WARMUP}, nothing wrapped):`)
    console.log(`  A. ours end to end (record loop, then until committed)         ${us(a)}`)
    console.log(`     the sync record loop (memory set, storageKey, queue)        ${us(loop)}`)
    console.log(`     the mirror's rest: A − loop − B (flusher, queue → batches)  ${us(a - loop - b)}`)
    console.log(`  B. keyed store writeBatch of prepared 1 000-step batches       ${us(b)}`)
    console.log(`     the keyed store's JavaScript: B − C                        ${us(b - c)}`)
    console.log(`       of which encodeValue alone (E)                           ${us(e)}`)
    console.log(`  C. the same statements through @effect/sql's SqliteClient      ${us(c)}`)
    console.log(`     @effect/sql's JavaScript: C − D                            ${us(c - d)}`)
    console.log(`  D. raw better-sqlite3 (the baseline)                           ${us(d)}`)
    console.log(`  A / D = ${(a / d).toFixed(2)}`)
  } finally {
    await close()
  }
}

const cpuProfiles = async (dir: string, rounds: number) => {
  fs.mkdirSync(PROFILES, { recursive: true })
  const collect =
    (into: Array<CpuProfile>, name: string): During =>
    async (timed) => {
      const { result, profile } = await profileRegion(timed, { file: path.join(PROFILES, `${name}-${into.length}.cpuprofile`) })
      into.push(profile)
      return result
    }
  for (let r = 0; r < WARMUP; r++) {
    await oursRound(dir, 100 + r)
    await rawRound(dir, 100 + r)
  }
  const ours: Array<CpuProfile> = []
  const raw: Array<CpuProfile> = []
  const oursNs: Array<number> = []
  const rawNs: Array<number> = []
  for (let r = 0; r < rounds; r++) {
    oursNs.push((await oursRound(dir, 200 + r, { during: collect(ours, "writebehind-ours") })).totalNs)
    rawNs.push(await rawRound(dir, 200 + r, collect(raw, "writebehind-raw")))
  }
  console.log(`\nCPU profile of ours, per record (${rounds} rounds; profiled median ${perRecord(median(oursNs)).trim()} per record, raw ${perRecord(median(rawNs)).trim()}):`)
  console.log(formatSummary(summarize(ours), rounds * WRITES, "µs"))
  console.log(`\nCPU profile of raw, per record (${rounds} rounds):`)
  console.log(formatSummary(summarize(raw, 12), rounds * WRITES, "µs"))
  console.log(`\nprofiles: ${PROFILES}/writebehind-{ours,raw}-<round>.cpuprofile`)
}

/**
 * `restart.open_to_first_answer_*`, attributed: fresh child processes (bench/restart.ts as
 * the script, the same file of 10 000 Slack rows) each opening one more layer before the same
 * point read — raw driver; the `@effect/sql` client; the keyed store the plugin runtime
 * builds and a `lookup`; the plugin runtime and Slack `check` — medians of `runs` children
 * each, interleaved; then one more `ours` child with its timed region CPU-profiled.
 */
const restart = async (runs: number) => {
  const script = path.join(path.dirname(SELF), "restart.ts")
  const modes: ReadonlyArray<RestartMode> = ["raw", "client", "store", "ours"]
  const report = async (backend: Backend, where: string) => {
    const once = async (mode: RestartMode, env: NodeJS.ProcessEnv = process.env) => {
      const child = spawnChild<RestartLine>(script, ["--restart-child", mode, backend, where], env)
      const line = await child.next("answered")
      await child.close()
      if (!line.known) fail(`${mode}: probe not found`)
      return line
    }
    for (const mode of modes) await once(mode) // warms the page cache and the server
    const samples = new Map<RestartMode, Array<number>>(modes.map((m) => [m, []]))
    for (let r = 0; r < runs; r++) {
      for (const mode of modes) {
        const line = await once(mode)
        samples.get(mode)!.push(line.answered - line.openStart)
      }
    }
    const ms = (x: number) => `${x.toFixed(1).padStart(6)} ms`
    const med = (mode: RestartMode) => median(samples.get(mode)!)
    console.log(`\nrestart on ${backend}: open → first answer in a fresh process (medians of ${runs} children each, interleaved):`)
    console.log(`  raw driver open + point select                                   ${ms(med("raw"))}`)
    console.log(`  @effect/sql client + the same select                             ${ms(med("client"))}   (+${(med("client") - med("raw")).toFixed(1)} ms)`)
    console.log(`  keyed store (PluginRuntime.storeLayer) + namespace open + lookup ${ms(med("store"))}   (+${(med("store") - med("client")).toFixed(1)} ms: pragmas, migrations check, sweeper, store layers)`)
    console.log(`  plugin runtime (all channel layers) + Slack check                ${ms(med("ours"))}   (+${(med("ours") - med("store")).toFixed(1)} ms: channel layers, mirror, the check's path)`)
    const profiled = await once("ours", { ...process.env, CHANNEL_STATE_BENCH_PROFILE: "1" })
    console.log(`\n  CPU profile of one ours child's open → answer (${(profiled.answered - profiled.openStart).toFixed(1)} ms with the profiler on):`)
    console.log(profiled.profile)
  }
  await inTempDir(async (dir) => {
    const file = path.join(dir, "state", "state.sqlite")
    await fill(SqliteStore.layer({ filename: file }))
    await report("sqlite", file)
  })
  const baseUrl = pgBaseUrl()
  if (baseUrl === undefined) return
  const database = await freshPgDatabase(baseUrl, "profile_restart")
  try {
    await fill(PgStore.layer({ url: database.url }))
    await adminSql(database.url, "ANALYZE channel_state_entries")
    await report("pg", database.url)
  } finally {
    await database.drop()
  }
}

/** `faults.loop_delay_under_lock`, attributed: one locked and one free round CPU-profiled (after a warmup round of each). */
const faults = async () => {
  // Counts SQLITE_BUSY answers (a try/catch around every statement, nothing timed).
  const probe = instrumentSqlite({ timing: false })
  await inTempDir(async (dir) => {
    const rig = await openFaultsRig(dir)
    try {
      await rig.round("warm-free", false)
      await rig.round("warm-locked", true)
      for (const locked of [true, false]) {
        probe.reset()
        const { result, profile } = await profileRegion(() => rig.round(locked ? "profiled-locked" : "profiled-free", locked), {
          file: path.join(PROFILES, `faults-${locked ? "locked" : "free"}.cpuprofile`)
        })
        const summary = summarize(profile, 30)
        const busy = probe.busy()
        console.log(
          `\n${locked ? "locked" : "free"} round: worst loop delay ${(result.worstNs / 1e6).toFixed(1)} ms, p99 ${(result.p99Ns / 1e6).toFixed(1)} ms, window ${(result.windowMs / 1000).toFixed(2)} s; ` +
            `${busy} statements answered SQLITE_BUSY (${busy > 0 ? `${((summary.busyMs * 1000) / busy).toFixed(0)} µs of busy CPU per BUSY answer` : "none"}); CPU profile (ms in the window):`
        )
        console.log(formatSummary(summary))
      }
    } finally {
      await rig.close()
    }
  })
}

const inTempDir = async (f: (dir: string) => Promise<void>) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-profile-"))
  try {
    await f(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const [what = "writebehind", count = "7"] = process.argv.slice(2)
const rounds = Number(count)
if (what === "writebehind") {
  await inTempDir((dir) => splits(dir, rounds))
  // The profiles in a fresh process: the statement probe above stays installed in this one.
  const child = spawnSync(process.execPath, ["--import", "tsx", SELF, "writebehind-cpu", count], { cwd: REPO_ROOT, stdio: "inherit" })
  if (child.status !== 0) process.exitCode = 1
} else if (what === "writebehind-cpu") {
  await inTempDir((dir) => differential(dir, rounds * 2))
  await inTempDir((dir) => cpuProfiles(dir, rounds))
} else if (what === "restart") {
  await restart(Number(process.argv[3] ?? 5))
} else if (what === "faults") {
  fs.mkdirSync(PROFILES, { recursive: true })
  await faults()
} else fail(`unknown profile ${what} (writebehind, restart, faults)`)
