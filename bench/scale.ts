/**
 * `npm run bench:scale`: the keyed store on SQLite at 1 000 000 rows (issue 5, "Scale").
 *
 * - `scale.lookup_1m_vs_100k_p50` / `_p99`: one `handle.lookup` of a random existing key
 *   through a ManagedRuntime, per sample, on a 1 000 000-row file against a 100 000-row file
 *   (samples interleaved); raw better-sqlite3 point selects on both files in the note.
 * - `scale.cold_start_first_lookup`: a child process opens the 1 000 000-row file with
 *   `SqliteStore.make` and answers one lookup (timed from just before `make`), against a
 *   child doing a raw better-sqlite3 open + first point select; process start to the first
 *   answer in the note. `_large_wal`: the same after a writer was killed (SIGKILL) leaving a
 *   large WAL behind.
 * - `scale.sweep_500k_worst_loop_delay`: 500 000 of the rows expired; the store's own
 *   sweeper (interval 100 ms, default batch 500) runs until none is left while
 *   `monitorEventLoopDelay({ resolution: 5 })` watches; the baseline is one raw 500-row
 *   sweep DELETE, i.e. how long one batch has to block.
 *
 * The files are built fast: the schema by the real store (migrations), the rows by raw
 * better-sqlite3 in transactions of 10 000. Everything lives in one temp dir, removed at
 * the end. Stand-alone (not part of `npm run bench`): prints a table and merges its rows
 * into bench/results.json.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import Database from "better-sqlite3"
import { type Duration, Effect, ManagedRuntime, Option } from "effect"
import { Participation } from "../src/channels/SlackThreadParticipation.js"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { defaultStoreSettings } from "../src/layers/store/storeRules.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { mergeResults, printTable, type Row } from "./harness.js"

/** When this module's imports were done, in ms since process start (used by the cold-start child). */
const importsDone = performance.now()

const SELF = fileURLToPath(import.meta.url)
const REPO = path.dirname(path.dirname(SELF))

const OWNER = "slack"
const NAMESPACE = "slack.thread-participation"
const HOUR = 60 * 60 * 1000
const TTL_MS = 24 * HOUR
const BIG = 1_000_000
const SMALL = 100_000
const BUILD_TX = 10_000
/** created_at of row i is base + i * STEP_MS: 1 000 000 rows spread over ~17 h before now. */
const STEP_MS = 60
const SAMPLES = 5_000
const WARMUP = 500
const COLD_RUNS = 3
// The store's own default: the bench measures what plugins get.
const SWEEP_BATCH = defaultStoreSettings.sweepBatchSize
/** Raw baseline sweep batches, deleting rows expired earlier than the 500 000 the store sweeps. */
const BASELINE_BATCHES = 5
/** Every BASELINE_EVERY-th row (i % BASELINE_EVERY === 1) is the baseline's: BASELINE_BATCHES × SWEEP_BATCH rows. */
const BASELINE_EVERY = BIG / (BASELINE_BATCHES * SWEEP_BATCH)
/** A key that stays live through every phase (odd, and not a baseline row). */
const COLD_KEY_INDEX = 777_777

const namespaceOptions = { owner: OWNER, namespace: NAMESPACE, schema: Participation, maxEntries: 2_000_000, ttl: TTL_MS }
const storeOptions = (filename: string, sweepInterval: Duration.DurationInput): SqliteStore.SqliteStoreOptions => ({ filename, sweepInterval, ownerMaxEntries: 5_000_000 })

const ACCOUNTS = ["default", "T024BE7LD", "T08QKR2MN"] as const
/** `accountId:channelId:threadTs`, distinct per i (i % 3 and floor(i / 3) give i back). */
const keyOf = (i: number): string =>
  `${ACCOUNTS[i % 3]}:C${(i % 4999).toString(36).toUpperCase().padStart(8, "0")}:${1_712_000_000 + Math.floor(i / 3)}.${String((i * 37) % 1_000_000).padStart(6, "0")}`
const valueJson = (i: number, createdAt: number): string =>
  JSON.stringify(i % 4 === 0 ? { repliedAt: createdAt } : { agentId: `agent-${i % 7}`, repliedAt: createdAt })

const LOOKUP_SQL = `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
  WHERE owner = ? AND namespace = ? AND entry_key = ? AND (expires_at IS NULL OR expires_at > ?)`
const SWEEP_SQL = `DELETE FROM channel_state_entries WHERE (owner, namespace, entry_key) IN (
  SELECT owner, namespace, entry_key FROM channel_state_entries WHERE expires_at <= ? LIMIT ?) RETURNING entry_key`

const fail = (what: string): never => {
  throw new Error(`scale bench: ${what}`)
}

/** A small deterministic PRNG (mulberry32), so runs pick the same keys. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const quantile = (sorted: ReadonlyArray<number>, q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
const median = (values: ReadonlyArray<number>): number => quantile([...values].sort((a, b) => a - b), 0.5)
const us = (ns: number) => `${(ns / 1e3).toFixed(1)} µs`
const ms = (ns: number) => `${(ns / 1e6).toFixed(1)} ms`
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`
const fileSize = (file: string) => fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0
const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))

const makeRow = (name: string, unit: string, ours: number, baseline: number, note: string): Row => ({
  name,
  unit,
  ours: Math.round(ours),
  baseline: Math.round(baseline),
  ratio: Math.round((ours / baseline) * 100) / 100,
  target: null,
  note
})

// ---------------------------------------------------------------------------------------
// building the files

/** Creates `filename` with the store's schema (migrations run by the real store), then bulk-inserts `rows` rows raw. */
const buildFile = async (filename: string, rows: number, base: number): Promise<number> => {
  const started = performance.now()
  await Effect.runPromise(Effect.scoped(Effect.asVoid(SqliteStore.make(storeOptions(filename, "1 hour")))))
  const db = new Database(filename)
  try {
    db.pragma("synchronous = OFF")
    db.pragma("cache_size = -262144")
    const insert = db.prepare(
      "INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
    )
    const insertRange = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const createdAt = base + i * STEP_MS
        insert.run(OWNER, NAMESPACE, keyOf(i), valueJson(i, createdAt), createdAt, createdAt + TTL_MS)
      }
    })
    for (let from = 0; from < rows; from += BUILD_TX) insertRange(from, Math.min(rows, from + BUILD_TX))
    db.pragma("wal_checkpoint(TRUNCATE)")
    const count = (db.prepare("SELECT count(*) AS n FROM channel_state_entries").get() as { n: number }).n
    if (count !== rows) fail(`built ${count} rows, expected ${rows}`)
  } finally {
    db.close()
  }
  return performance.now() - started
}

// ---------------------------------------------------------------------------------------
// lookups: 1 000 000 vs 100 000 rows

type StoreRuntime = ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>
type Value = typeof Participation.Type

interface Opened {
  readonly runtime: StoreRuntime
  readonly handle: NamespaceHandle<Value>
  readonly raw: Database.Database
  readonly select: Database.Statement<[string, string, string, number], { value_json: string }>
  readonly rows: number
}

const openBoth = async (filename: string, rows: number): Promise<Opened> => {
  const runtime: StoreRuntime = ManagedRuntime.make(SqliteStore.layer(storeOptions(filename, "1 hour")))
  const handle = await runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open(namespaceOptions)))
  const raw = new Database(filename, { readonly: true })
  const select = raw.prepare<[string, string, string, number], { value_json: string }>(LOOKUP_SQL)
  return { runtime, handle, raw, select, rows }
}

const sampleLookups = async (files: ReadonlyArray<Opened>) => {
  const random = prng(0x5ca1e)
  const ours = files.map((): Array<number> => [])
  const raw = files.map((): Array<number> => [])
  for (let s = 0; s < WARMUP + SAMPLES; s++) {
    for (let f = 0; f < files.length; f++) {
      const file = files[f]!
      const key = keyOf(Math.floor(random() * file.rows))
      let start = process.hrtime.bigint()
      const found = await file.runtime.runPromise(file.handle.lookup(key))
      const oursNs = Number(process.hrtime.bigint() - start)
      if (Option.isNone(found)) fail(`lookup missed ${key}`)
      const rawKey = keyOf(Math.floor(random() * file.rows))
      start = process.hrtime.bigint()
      const hit = file.select.get(OWNER, NAMESPACE, rawKey, Date.now())
      if (hit !== undefined) JSON.parse(hit.value_json)
      const rawNs = Number(process.hrtime.bigint() - start)
      if (hit === undefined) fail(`raw lookup missed ${rawKey}`)
      if (s >= WARMUP) {
        ours[f]!.push(oursNs)
        raw[f]!.push(rawNs)
      }
    }
  }
  const stats = (values: Array<number>) => {
    values.sort((a, b) => a - b)
    return { p50: quantile(values, 0.5), p99: quantile(values, 0.99) }
  }
  return { ours: ours.map(stats), raw: raw.map(stats) }
}

const lookupRows = async (bigFile: string, smallFile: string): Promise<Array<Row>> => {
  const files = [await openBoth(bigFile, BIG), await openBoth(smallFile, SMALL)]
  try {
    const { ours, raw } = await sampleLookups(files)
    const [big, small] = [ours[0]!, ours[1]!]
    const [rawBig, rawSmall] = [raw[0]!, raw[1]!]
    const load = `load average ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} CPUs`
    const common = `${SAMPLES} samples per file, interleaved; each one runtime.runPromise(handle.lookup(random existing key)); baseline = the same at 100 000 rows`
    return [
      makeRow(
        "scale.lookup_1m_vs_100k_p50",
        "ns/op (p50)",
        big.p50,
        small.p50,
        `${common}. p50 1M ${us(big.p50)} vs 100k ${us(small.p50)}; raw better-sqlite3 select+parse p50 1M ${us(rawBig.p50)} vs 100k ${us(rawSmall.p50)}; ${load}`
      ),
      makeRow(
        "scale.lookup_1m_vs_100k_p99",
        "ns/op (p99)",
        big.p99,
        small.p99,
        `${common}. p99 1M ${us(big.p99)} vs 100k ${us(small.p99)}; raw better-sqlite3 select+parse p99 1M ${us(rawBig.p99)} vs 100k ${us(rawSmall.p99)}; ${load}`
      )
    ]
  } finally {
    for (const file of files) {
      file.raw.close()
      await file.runtime.dispose()
    }
  }
}

// ---------------------------------------------------------------------------------------
// cold start: child processes

interface ColdResult {
  /** ms from process start until this module's imports were done. */
  readonly importsDone: number
  /** ms from process start to just before the open (SqliteStore.make or new Database). */
  readonly openStart: number
  /** ms from process start to the first lookup answered. */
  readonly answered: number
}

const writeJson = (value: unknown) => fs.writeSync(1, `${JSON.stringify(value)}\n`)

/** In the child: open `filename` (ours or raw), look `key` up once, print the times; SIGKILL itself when `crash`. */
const coldChild = async (mode: string, filename: string, key: string, crash: boolean) => {
  let result: ColdResult
  if (mode === "ours") {
    const openStart = performance.now()
    const runtime: StoreRuntime = ManagedRuntime.make(SqliteStore.layer(storeOptions(filename, "1 hour")))
    const found = await runtime.runPromise(
      Effect.flatMap(KeyedStore, (store) => store.open(namespaceOptions)).pipe(Effect.flatMap((handle) => handle.lookup(key)))
    )
    result = { importsDone, openStart, answered: performance.now() }
    if (Option.isNone(found)) fail("cold lookup missed")
    writeJson(result)
    if (crash) process.kill(process.pid, "SIGKILL")
    await runtime.dispose()
  } else {
    const openStart = performance.now()
    const db = new Database(filename)
    const hit = db.prepare<[string, string, string, number], { value_json: string }>(LOOKUP_SQL).get(OWNER, NAMESPACE, key, Date.now())
    if (hit !== undefined) JSON.parse(hit.value_json)
    result = { importsDone, openStart, answered: performance.now() }
    if (hit === undefined) fail("raw cold lookup missed")
    writeJson(result)
    if (crash) process.kill(process.pid, "SIGKILL")
    db.close()
  }
}

/** In the child: expire rows (one transaction, no checkpoint), then SIGKILL itself so the WAL stays behind. */
const crashWriter = (filename: string, base: number, now: number) => {
  const db = new Database(filename)
  db.pragma("synchronous = NORMAL")
  db.pragma("wal_autocheckpoint = 0")
  const started = performance.now()
  const index = `((created_at - ${base}) / ${STEP_MS})`
  db.transaction(() => {
    // 500 000 rows (even i) expired over the last ~20 h, in created_at order …
    db.prepare(`UPDATE channel_state_entries SET expires_at = created_at - ${21 * HOUR} WHERE ${index} % 2 = 0`).run()
    // … and 2 500 odd rows expired earlier than all of them: the raw baseline's batches.
    db.prepare(`UPDATE channel_state_entries SET expires_at = ? WHERE ${index} % ${BASELINE_EVERY} = 1`).run(now - 48 * HOUR)
  })()
  writeJson({ updateMs: performance.now() - started })
  process.kill(process.pid, "SIGKILL")
}

const runChild = (args: ReadonlyArray<string>): { parsed: Record<string, number>; wallMs: number } => {
  const started = performance.now()
  const child = spawnSync(process.execPath, ["--import", "tsx", SELF, ...args], { cwd: REPO, encoding: "utf8" })
  const wallMs = performance.now() - started
  const line = child.stdout.trim().split("\n").pop() ?? ""
  if (!line.startsWith("{")) fail(`child ${args.join(" ")} printed no result (status ${child.status}, signal ${child.signal}): ${child.stderr}`)
  return { parsed: JSON.parse(line) as Record<string, number>, wallMs }
}

const coldStart = (filename: string, crash: boolean) => {
  const ours: Array<ColdResult> = []
  const raw: Array<ColdResult> = []
  for (let run = 0; run < COLD_RUNS; run++) {
    for (const mode of run % 2 === 0 ? ["ours", "raw"] : ["raw", "ours"]) {
      const { parsed } = runChild(["--cold-child", mode, filename, keyOf(COLD_KEY_INDEX), crash ? "crash" : "clean"])
      ;(mode === "ours" ? ours : raw).push(parsed as unknown as ColdResult)
    }
  }
  const openToAnswer = (results: ReadonlyArray<ColdResult>) => median(results.map((r) => (r.answered - r.openStart) * 1e6))
  return {
    ours: openToAnswer(ours),
    raw: openToAnswer(raw),
    processToAnswer: median(ours.map((r) => r.answered * 1e6)),
    imports: median(ours.map((r) => r.importsDone * 1e6))
  }
}

// ---------------------------------------------------------------------------------------
// sweeping 500 000 expired rows

const sweepRow = async (filename: string, walNote: { checkpointNs: number }): Promise<Row> => {
  const db = new Database(filename)
  try {
    db.pragma("synchronous = NORMAL")
    let start = process.hrtime.bigint()
    db.pragma("wal_checkpoint(TRUNCATE)")
    walNote.checkpointNs = Number(process.hrtime.bigint() - start)

    const sweep = db.prepare<[number, number], { entry_key: string }>(SWEEP_SQL)
    const expired = db.prepare<[number], { n: number }>("SELECT count(*) AS n FROM channel_state_entries WHERE expires_at <= ?")
    const anyExpired = db.prepare<[number], { one: number }>("SELECT 1 AS one FROM channel_state_entries WHERE expires_at <= ? LIMIT 1")
    const baselineCutoff = Date.now() - 47 * HOUR
    const batchNs: Array<number> = []
    for (let b = 0; b < BASELINE_BATCHES; b++) {
      start = process.hrtime.bigint()
      const deleted = sweep.all(baselineCutoff, SWEEP_BATCH).length
      batchNs.push(Number(process.hrtime.bigint() - start))
      if (deleted !== SWEEP_BATCH) fail(`raw sweep batch deleted ${deleted}`)
    }
    if (sweep.all(baselineCutoff, SWEEP_BATCH).length !== 0) fail("baseline rows left")
    const toSweep = expired.get(Date.now())!.n
    if (toSweep !== BIG / 2) fail(`${toSweep} expired rows before the sweep, expected ${BIG / 2}`)

    // The loop's delay with nothing running, for reference.
    const idle = monitorEventLoopDelay({ resolution: 5 })
    idle.enable()
    await sleep(500)
    idle.disable()

    const runtime: StoreRuntime = ManagedRuntime.make(SqliteStore.layer(storeOptions(filename, "100 millis")))
    try {
      await runtime.runtime()
      const delay = monitorEventLoopDelay({ resolution: 5 })
      delay.enable()
      // A second, independent witness: the longest gap between two runs of a 5 ms interval.
      let lastBeat = process.hrtime.bigint()
      let worstGap = 0
      let beats = 0
      const heartbeat = setInterval(() => {
        const now = process.hrtime.bigint()
        worstGap = Math.max(worstGap, Number(now - lastBeat))
        lastBeat = now
        beats++
      }, 5)
      const sweepStart = process.hrtime.bigint()
      const deadline = Date.now() + 150_000
      while (anyExpired.get(Date.now()) !== undefined) {
        if (Date.now() > deadline) fail("the sweeper did not finish within 150 s")
        await sleep(10)
      }
      const sweepNs = Number(process.hrtime.bigint() - sweepStart)
      // Let the histogram's own timer run once more: it records a long stall only when it fires after it.
      await sleep(30)
      clearInterval(heartbeat)
      delay.disable()
      const left = expired.get(Date.now())!.n
      const total = (db.prepare("SELECT count(*) AS n FROM channel_state_entries").get() as { n: number }).n
      if (left !== 0 || total !== BIG - BIG / 2 - BASELINE_BATCHES * SWEEP_BATCH) fail(`after the sweep: ${left} expired, ${total} rows`)
      const batch = median(batchNs)
      return makeRow(
        "scale.sweep_500k_worst_loop_delay",
        "ns (worst loop delay)",
        delay.max,
        batch,
        `${toSweep} expired of 1M rows, the store's sweeper (every 100 ms, batches of ${SWEEP_BATCH}): swept in ${ms(sweepNs)} (from the store being ready to no expired row left, ${Math.round(toSweep / (sweepNs / 1e9))} rows/s); ` +
          `monitorEventLoopDelay(resolution 5 ms): worst ${ms(delay.max)}, p99 ${ms(delay.percentile(99))}, ${delay.count} samples; a 5 ms setInterval ran ${beats} times, longest gap ${ms(worstGap)}; idle loop worst ${ms(idle.max)}; load average ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} CPUs. ` +
          `Baseline: one raw ${SWEEP_BATCH}-row sweep DELETE (the store's statement, autocommit) median ${ms(batch)} of ${BASELINE_BATCHES} (min ${ms(Math.min(...batchNs))}, max ${ms(Math.max(...batchNs))})`
      )
    } finally {
      await runtime.dispose()
    }
  } finally {
    db.close()
  }
}

// ---------------------------------------------------------------------------------------

const main = async () => {
  const started = Date.now()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-scale-"))
  try {
    const bigFile = path.join(dir, "big", "state.sqlite")
    const smallFile = path.join(dir, "small", "state.sqlite")
    const base = Date.now() - 17 * HOUR
    console.error(`scale: building ${BIG} + ${SMALL} rows in ${dir} …`)
    const buildBig = await buildFile(bigFile, BIG, base)
    await buildFile(smallFile, SMALL, base)
    console.error(`scale: 1M rows built in ${(buildBig / 1000).toFixed(1)} s, file ${mb(fileSize(bigFile))}; lookups …`)
    const rows = await lookupRows(bigFile, smallFile)

    console.error("scale: cold start (child processes) …")
    const clean = coldStart(bigFile, false)
    rows.push(
      makeRow(
        "scale.cold_start_first_lookup",
        "ns (open → 1st lookup)",
        clean.ours,
        clean.raw,
        `1M-row file (${mb(fileSize(bigFile))}, in the OS page cache), new node process each, median of ${COLD_RUNS}: SqliteStore.make (ManagedRuntime) + open + first lookup ${ms(clean.ours)} vs raw new Database + first point select ${ms(clean.raw)}; from process start to the first answer ${ms(clean.processToAnswer)} (imports of effect, @effect/sql, the SQLite client and tsx done at ${ms(clean.imports)})`
      )
    )

    console.error("scale: expiring 502 500 rows in a writer killed before any checkpoint …")
    const writer = runChild(["--crash-writer", bigFile, String(base), String(Date.now())])
    const walBytes = fileSize(`${bigFile}-wal`)
    if (walBytes === 0) fail("the killed writer left no WAL")
    const crashed = coldStart(bigFile, true)
    const walAfter = fileSize(`${bigFile}-wal`)
    const walNote = { checkpointNs: 0 }

    console.error("scale: sweeping 500 000 expired rows …")
    const sweep = await sweepRow(bigFile, walNote)
    rows.push(
      makeRow(
        "scale.cold_start_first_lookup_large_wal",
        "ns (open → 1st lookup)",
        crashed.ours,
        crashed.raw,
        `the same file after a writer expiring 502 500 rows (${(writer.parsed.updateMs! / 1000).toFixed(1)} s) was SIGKILLed with wal_autocheckpoint 0, leaving a ${mb(walBytes)} WAL (every child is SIGKILLed too, so each one recovers it; ${mb(walAfter)} after): ours ${ms(crashed.ours)} vs raw ${ms(crashed.raw)}; process start to the first answer ${ms(crashed.processToAnswer)}; checkpointing that WAL (wal_checkpoint(TRUNCATE), what the first write's autocheckpoint pays on the event loop) took ${ms(walNote.checkpointNs)}`
      ),
      sweep
    )

    console.log("")
    printTable(rows)
    mergeResults(rows)
    console.log(`\n${rows.length} rows merged into bench/results.json in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const flag = process.argv[2]
if (flag === "--cold-child") {
  const [mode, filename, key, crash] = process.argv.slice(3)
  await coldChild(mode!, filename!, key!, crash === "crash")
} else if (flag === "--crash-writer") {
  const [filename, base, now] = process.argv.slice(3)
  crashWriter(filename!, Number(base), Number(now))
} else {
  await main()
}
