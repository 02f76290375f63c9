/**
 * The Slack thread-participation cache end to end, on a real SQLite temp file:
 * - the sync path (`record` + `has`) of the memory layer against a plain bounded Map with
 *   TTL written here, and of the persistent layer (write-behind on, flusher running)
 *   against the memory layer;
 * - write-behind throughput: records until everything is committed, against raw
 *   better-sqlite3 upserting the same rows in transactions of 1 000;
 * - `check` on a memory miss that hits the store, against a raw point select.
 *
 * Contenders run in interleaved rounds, their order rotated every round; work that must
 * not be timed (building a fresh runtime, waiting for the flusher) runs in an untimed first
 * step of every round (the harness's `timeInterleaved` with `setup` and `rotate`).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import Database from "better-sqlite3"
import { LRUCache } from "lru-cache"
import { Context, Effect, Layer, ManagedRuntime, Metric } from "effect"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { CacheMetricFamilies } from "../src/layers/mirror/CacheMetrics.js"
import { channelLayers } from "../src/layers/channelCache.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import type { MirrorSettings } from "../src/layers/mirror/StoreMirror.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { fail, median, openRawStoreFile, type Row, row, sampleInterleaved, sleep, type TimingOptions, timeInterleaved, type Work } from "./harness.js"

export const PLUGIN = "slack"
const NAMESPACE = Slack.spec.namespace
const TTL_MS = 24 * 60 * 60 * 1000
const MEMORY_MAX = Slack.spec.memoryMaxEntries
const STORE_MAX = Slack.spec.storeMaxEntries
/** Records per write-behind round. */
export const WRITES = 20_000
/** Rows per raw transaction, and the mirror's batch size. */
export const BATCH = 1000

const timing = {
  sync: { n: 5000, rounds: 31, warmup: 6 },
  writeBehind: { n: WRITES, rounds: 15, warmup: 5 },
  check: { n: STORE_MAX, rounds: 7, warmup: 2 }
} satisfies Record<string, TimingOptions>

type SlackService = Slack.SlackThreadParticipation["Type"]
type SlackRuntime = ManagedRuntime.ManagedRuntime<Slack.SlackThreadParticipation, StateStoreError>

// ---------------------------------------------------------------------------------------
// keys: realistic Slack ids, built before timing (the composite key is built in the loop)

interface Thread {
  readonly accountId: string
  readonly channelId: string
  readonly threadTs: string
}

const ACCOUNTS = ["T024BE7LD", "T07QCRPMVH2", "T01HX8Z3K9P"]
const channelId = (i: number) => `C0${(i * 2_654_435_761).toString(36).toUpperCase().padStart(9, "0").slice(-9)}`
const threadTs = (seconds: number, micros: number) => `${seconds}.${String(micros).padStart(6, "0")}`

/** A pool of distinct threads across 3 workspaces and 200 channels. */
const threadPool = (size: number): Array<Thread> =>
  Array.from({ length: size }, (_, i) => ({
    accountId: ACCOUNTS[i % ACCOUNTS.length]!,
    channelId: channelId(i % 200),
    threadTs: threadTs(1_712_345_678 + i * 37, (i * 7919) % 1_000_000)
  }))

/**
 * Write-behind keys: one channel, thread timestamps increasing with `i`, so "oldest first"
 * (created_at, then key) is recording order and the survivors of the store's eviction are
 * exactly the last STORE_MAX records of a round.
 */
export const writeThread = (round: number, i: number): Thread => ({
  accountId: ACCOUNTS[0]!,
  channelId: "C05QX2V8J3L",
  threadTs: threadTs(1_712_000_000 + round * WRITES + i, 100)
})

export const compositeKey = (t: Thread) => `${t.accountId}:${t.channelId}:${t.threadTs}`

// ---------------------------------------------------------------------------------------
// the plain baseline: the same work on a Map directly (TTL via Date.now(), oldest evicted
// past the bound with a kept iterator, as BoundedTtlMap does)

interface PlainEntry {
  readonly value: { readonly repliedAt: number }
  readonly createdAt: number
  readonly expiresAt: number
}

const makePlainMap = (maxEntries: number) => {
  const map = new Map<string, PlainEntry>()
  let cursor = map.keys()
  return {
    record: (accountId: string, channelId: string, threadTs: string): void => {
      const now = Date.now()
      const key = `${accountId}:${channelId}:${threadTs}`
      map.delete(key)
      map.set(key, { value: { repliedAt: now }, createdAt: now, expiresAt: now + TTL_MS })
      while (map.size > maxEntries) {
        let next = cursor.next()
        if (next.done) {
          cursor = map.keys()
          next = cursor.next()
        }
        if (!next.done) map.delete(next.value)
      }
    },
    has: (accountId: string, channelId: string, threadTs: string): boolean => {
      const entry = map.get(`${accountId}:${channelId}:${threadTs}`)
      return entry !== undefined && entry.expiresAt > Date.now()
    }
  }
}

/**
 * lru-cache as its README sets up a bounded cache with a TTL (`max`, `ttl`): the same keys,
 * value, bound and TTL as Slack's memory layer; `set` then `has`.
 */
const makeLruCache = (maxEntries: number) => {
  const cache = new LRUCache<string, { repliedAt: number }>({ max: maxEntries, ttl: TTL_MS })
  return {
    record: (accountId: string, channelId: string, threadTs: string): void => {
      cache.set(`${accountId}:${channelId}:${threadTs}`, { repliedAt: Date.now() })
    },
    has: (accountId: string, channelId: string, threadTs: string): boolean => cache.has(`${accountId}:${channelId}:${threadTs}`)
  }
}

// ---------------------------------------------------------------------------------------
// runtimes and the store's table

export const storeLayer = (filename: string) => SqliteStore.layer({ filename, sweepInterval: "1 hour" })

const openPersistent = async (filename: string, mirror: Partial<MirrorSettings> = {}) => {
  const runtime: SlackRuntime = ManagedRuntime.make(Slack.layerPersistent({ pluginId: PLUGIN, mirror }).pipe(Layer.provide(storeLayer(filename))))
  const service: SlackService = await runtime.runPromise(Slack.SlackThreadParticipation)
  return { runtime, service }
}

const tagged = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>, namespace: string = NAMESPACE) =>
  Metric.tagged(Metric.tagged(metric, "plugin", PLUGIN), "namespace", namespace)
const flushedCounter = tagged(CacheMetricFamilies.flushedWrites)
const droppedCounter = tagged(CacheMetricFamilies.droppedWrites)
/** Process-wide totals of the Slack cache's flushed and dropped writes (Effect's global metric registry). */
const mirrorTotals = () => ({
  flushed: Effect.runSync(Metric.value(flushedCounter)).count,
  dropped: Effect.runSync(Metric.value(droppedCounter)).count
})

const COLUMNS = `INSERT INTO channel_state_entries ("owner","namespace","entry_key","value_json","created_at","expires_at") VALUES `
const ON_CONFLICT = ` ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET
  value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at`
const tuples = (n: number) => Array.from({ length: n }, () => "(?,?,?,?,?,?)").join(",")
/** The store's multi-row chunk (SqlStore CHUNK). */
const RAW_CHUNK = 500
const LIVE = "(expires_at IS NULL OR expires_at > ?)"

const keysIn = (db: Database.Database, namespace: string = NAMESPACE): Array<string> =>
  db
    .prepare<[string, string], { entry_key: string }>("SELECT entry_key FROM channel_state_entries WHERE owner = ? AND namespace = ? ORDER BY entry_key")
    .all(PLUGIN, namespace)
    .map((r) => r.entry_key)

// ---------------------------------------------------------------------------------------
// sync.memory_vs_map and sync.persistent_vs_memory

const syncRows = async (dir: string): Promise<Array<Row>> => {
  // Four times the memory bound: every round records threads not in memory, so each record evicts.
  const pool = threadPool(MEMORY_MAX * 4)
  const at = (round: number, i: number) => pool[(round * timing.sync.n + i) % pool.length]!
  /** Records made by the persistent contender: the flusher must have committed them all. */
  let recorded = 0
  // One loop literal per contender: closures of one literal share V8's type feedback, which
  // would make every `record`/`has` call site polymorphic and skew the comparison.
  const mapLoop = (plain: ReturnType<typeof makePlainMap>): Work => (round, n) => {
    for (let i = 0; i < n; i++) {
      const t = at(round, i)
      plain.record(t.accountId, t.channelId, t.threadTs)
      if (!plain.has(t.accountId, t.channelId, t.threadTs)) fail("has after record")
    }
  }
  const lruLoop = (lru: ReturnType<typeof makeLruCache>): Work => (round, n) => {
    for (let i = 0; i < n; i++) {
      const t = at(round, i)
      lru.record(t.accountId, t.channelId, t.threadTs)
      if (!lru.has(t.accountId, t.channelId, t.threadTs)) fail("has after record")
    }
  }
  const memoryLoop = (svc: SlackService): Work => (round, n) => {
    for (let i = 0; i < n; i++) {
      const t = at(round, i)
      svc.record(t.accountId, t.channelId, t.threadTs)
      if (!svc.has(t.accountId, t.channelId, t.threadTs)) fail("has after record")
    }
  }
  const persistentLoop = (svc: SlackService): Work => (round, n) => {
    for (let i = 0; i < n; i++) {
      const t = at(round, i)
      svc.record(t.accountId, t.channelId, t.threadTs)
      if (!svc.has(t.accountId, t.channelId, t.threadTs)) fail("has after record")
    }
    recorded += n
  }

  const memoryRuntime = ManagedRuntime.make(Slack.layer)
  const persistent = await openPersistent(path.join(dir, "sync", "state.sqlite"))
  try {
    const memory: SlackService = await memoryRuntime.runPromise(Slack.SlackThreadParticipation)
    const start = mirrorTotals()
    // Untimed: let the flusher commit the previous round's writes, so every round starts
    // with an empty write-behind queue (as between bursts of traffic).
    const settle: Work = async () => {
      const deadline = Date.now() + 10_000
      while (mirrorTotals().flushed - start.flushed < recorded) {
        if (Date.now() > deadline) fail("persistent writes not flushed within 10 s")
        await sleep(5)
      }
    }
    const times = await timeInterleaved(
      {
        map: mapLoop(makePlainMap(MEMORY_MAX)),
        lru: lruLoop(makeLruCache(MEMORY_MAX)),
        memory: memoryLoop(memory),
        persistent: persistentLoop(persistent.service)
      },
      timing.sync,
      { setup: settle, rotate: true }
    )
    await settle(0, 0)
    const end = mirrorTotals()
    if (end.dropped !== start.dropped) fail(`${end.dropped - start.dropped} writes dropped`)
    const each = `${timing.sync.n} threads a round from a pool of ${pool.length} (memory max ${MEMORY_MAX}: every record evicts)`
    return [
      row("sync.memory_vs_map", "ns/op", times.memory, times.map, 1.25, `record + has; ${each}; baseline: a Map of {value, createdAt, expiresAt} with Date.now() expiry and kept-iterator eviction`),
      row("sync.memory_vs_lru_cache", "ns/op", times.memory, times.lru, 1, `record + has; ${each}; baseline: lru-cache (new LRUCache({ max, ttl }), as its README shows), set + has of the same keys and value`),
      row("sync.persistent_vs_memory", "ns/op", times.persistent, times.memory, 1.3, `record + has; ${each}; persistent = layerPersistent on a SQLite file, write-behind queue drained by the flusher between rounds`)
    ]
  } finally {
    await memoryRuntime.dispose()
    await persistent.runtime.dispose()
  }
}

// ---------------------------------------------------------------------------------------
// writebehind.vs_raw_batched

/** Rows of one raw transaction: key, value JSON, now. */
type RawBatch = ReadonlyArray<readonly [string, string, number]>
type RawWay = "perRow" | "multiRow" | "evicting"

export const rawWriters = (db: Database.Database, namespace: string = NAMESPACE): Record<RawWay, (rows: RawBatch) => void> => {
  const upsert = db.prepare(COLUMNS + tuples(1) + ON_CONFLICT)
  const upsertChunk = db.prepare(COLUMNS + tuples(RAW_CHUNK) + ON_CONFLICT)
  const counts = db.prepare<[string, string, number, string, number], { ns_live: number; owner_live: number }>(
    `SELECT (SELECT count(*) FROM channel_state_entries WHERE owner = ? AND namespace = ? AND ${LIVE}) AS ns_live,
            (SELECT count(*) FROM channel_state_entries WHERE owner = ? AND ${LIVE}) AS owner_live`
  )
  const deleteExpired = db.prepare("DELETE FROM channel_state_entries WHERE owner = ? AND namespace = ? AND expires_at <= ?")
  const deleteOldest = db.prepare(
    `DELETE FROM channel_state_entries WHERE owner = ? AND namespace = ? AND entry_key IN (
       SELECT entry_key FROM channel_state_entries WHERE owner = ? AND namespace = ? ORDER BY created_at, entry_key LIMIT ?)`
  )
  // What the store's cap check reads after every batch: the namespace's trigger-kept row count.
  const rowCount = db.prepare<[string, string], { row_count: number }>("SELECT row_count FROM channel_state_counts WHERE owner = ? AND namespace = ?")
  type Batch = RawBatch
  const perRow = db.transaction((rows: Batch) => {
    for (const [key, json, now] of rows) upsert.run(PLUGIN, namespace, key, json, now, now + TTL_MS)
    if (rowCount.get(PLUGIN, namespace) === undefined) fail("raw: no row count")
  })
  const multiRow = (rows: Batch) => {
    for (let start = 0; start < rows.length; start += RAW_CHUNK) {
      const params: Array<unknown> = []
      for (const [key, json, now] of rows.slice(start, start + RAW_CHUNK)) params.push(PLUGIN, namespace, key, json, now, now + TTL_MS)
      upsertChunk.run(...params)
    }
  }
  /** The same upserts plus what the store does past its namespace max: count, then evict the oldest. */
  const evicting = db.transaction((rows: Batch) => {
    multiRow(rows)
    const now = rows[0]![2]
    const c = counts.get(PLUGIN, namespace, now, PLUGIN, now)!
    if (c.ns_live > STORE_MAX) {
      deleteExpired.run(PLUGIN, namespace, now)
      deleteOldest.run(PLUGIN, namespace, PLUGIN, namespace, c.ns_live - STORE_MAX)
    }
  })
  const multiRowCounted = (rows: Batch) => {
    multiRow(rows)
    if (rowCount.get(PLUGIN, namespace) === undefined) fail("raw: no row count")
  }
  return { perRow, multiRow: db.transaction(multiRowCounted), evicting }
}

/** N records as raw rows, in transactions of BATCH; keys, JSON and Date.now() built in the loop. */
export const rawWork =
  (tx: (rows: ReadonlyArray<readonly [string, string, number]>) => void) =>
  (round: number, n: number): void => {
    for (let first = 0; first < n; first += BATCH) {
      const rows: Array<readonly [string, string, number]> = []
      for (let i = first; i < Math.min(n, first + BATCH); i++) {
        const now = Date.now()
        rows.push([compositeKey(writeThread(round, i)), JSON.stringify({ repliedAt: now }), now])
      }
      tx(rows)
    }
  }

/**
 * Attribution only: the same record path (a MirroredCache of the same spec, the same write)
 * in a namespace whose store max is above N, so flushed batches evict nothing. Slack's own
 * layer cannot be given another store max, so this is built from the same internal pieces.
 */
export class UnboundedThreads extends Context.Tag("bench/UnboundedThreads")<
  UnboundedThreads,
  { readonly record: (accountId: string, channelId: string, threadTs: string) => void }
>() {}
export const UNBOUNDED_NAMESPACE = "bench.thread-participation-unbounded"
export const unboundedLayers = channelLayers(UnboundedThreads, (openCache) =>
  Effect.map(openCache({ ...Slack.spec, namespace: UNBOUNDED_NAMESPACE, storeMaxEntries: 1_000_000 }), (cache) => ({
    record: (accountId: string, channelId: string, threadTs: string) => {
      const repliedAt = cache.now()
      cache.set(`${accountId}:${channelId}:${threadTs}`, { repliedAt }, repliedAt, repliedAt + TTL_MS)
    }
  }))
)
export const unboundedFlushed = tagged(CacheMetricFamilies.flushedWrites, UNBOUNDED_NAMESPACE)

const RAW_WAYS: ReadonlyArray<RawWay> = ["perRow", "multiRow", "evicting"]

/**
 * Write-behind tuning for throughput: nothing dropped, and a 1 ms flush interval so the wait
 * for the flusher's next tick (default 100 ms) is not counted as write time.
 */
export const THROUGHPUT_MIRROR: Partial<MirrorSettings> = { maxQueue: 100_000, flushInterval: "1 millis" }

/**
 * Waits, yielding to the flusher every turn of the event loop, until the flusher has counted
 * `target` writes of `counter` (it counts a batch once it is committed). The process's own
 * counter, not a poll of the file: a second connection's read transactions would hold back
 * the WAL's checkpoints on our side only.
 */
export const untilFlushed = async (counter: Metric.Metric.Counter<number>, target: number) => {
  const deadline = Date.now() + 30_000
  // unsafeValue: ~3 µs a read (Effect.runSync(Metric.value(…)) costs 30–150 µs, on our side's clock).
  while (counter.unsafeValue([]).count < target) {
    if (Date.now() > deadline) fail(`${counter.unsafeValue([]).count} of ${target} writes flushed within 30 s`)
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

const writeBehindRows = async (dir: string): Promise<Array<Row>> => {
  const expectedSurvivors = (round: number, n: number) =>
    Array.from({ length: Math.min(n, STORE_MAX) }, (_, j) => compositeKey(writeThread(round, n - Math.min(n, STORE_MAX) + j))).sort()

  interface Mirrored<S> {
    readonly runtime: ManagedRuntime.ManagedRuntime<S, StateStoreError>
    readonly record: (accountId: string, channelId: string, threadTs: string) => void
    /** A read-only connection on the runtime's file: verifies the round, untimed. */
    readonly reader: Database.Database
  }
  // Each round: fresh files and fresh runtimes, built untimed in `setup`.
  let ours: Mirrored<Slack.SlackThreadParticipation> | undefined
  let unbounded: Mirrored<UnboundedThreads> | undefined
  const raw: Partial<Record<RawWay, Database.Database>> = {}
  let before = mirrorTotals()
  let unboundedBefore = 0
  /** The sync record loop alone, per record, of every timed round of ours. */
  const loopNs: Array<number> = []
  // Checks of a round's result, run untimed once its runtimes are disposed.
  const checks: Array<() => void> = []

  const finishRound = async () => {
    await ours?.runtime.dispose()
    await unbounded?.runtime.dispose()
    for (const check of checks.splice(0)) check()
    ours?.reader.close()
    unbounded?.reader.close()
    ours = unbounded = undefined
    for (const way of RAW_WAYS) {
      raw[way]?.close()
      delete raw[way]
    }
  }
  const setup: Work = async (round) => {
    await finishRound()
    const file = path.join(dir, "writes", `ours-${round}.sqlite`)
    const opened = await openPersistent(file, THROUGHPUT_MIRROR)
    ours = { runtime: opened.runtime, record: opened.service.record, reader: new Database(file, { readonly: true }) }
    const unboundedFile = path.join(dir, "writes", `unbounded-${round}.sqlite`)
    const runtime = ManagedRuntime.make(
      unboundedLayers.layerPersistent({ pluginId: PLUGIN, mirror: THROUGHPUT_MIRROR }).pipe(Layer.provide(storeLayer(unboundedFile)))
    )
    const record = (await runtime.runPromise(UnboundedThreads)).record
    unbounded = { runtime, record, reader: new Database(unboundedFile, { readonly: true }) }
    for (const way of RAW_WAYS) raw[way] = await openRawStoreFile(path.join(dir, "writes", `raw-${way}-${round}.sqlite`))
    before = mirrorTotals()
    unboundedBefore = Effect.runSync(Metric.value(unboundedFlushed)).count
  }
  const oursWork: Work = async (round, n) => {
    const { record, reader } = ours!
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) {
      const t = writeThread(round, i)
      record(t.accountId, t.channelId, t.threadTs)
    }
    if (round >= timing.writeBehind.warmup) loopNs.push(Number(process.hrtime.bigint() - start) / n)
    await untilFlushed(flushedCounter, before.flushed + n)
    checks.push(() => {
      const after = mirrorTotals()
      if (after.flushed - before.flushed !== n) fail(`flushed ${after.flushed - before.flushed} of ${n} writes`)
      if (after.dropped !== before.dropped) fail(`${after.dropped - before.dropped} writes dropped`)
      const survivors = keysIn(reader)
      const expected = expectedSurvivors(round, n)
      if (survivors.length !== expected.length || survivors.some((k, j) => k !== expected[j])) {
        fail(`store holds ${survivors.length} rows, expected the last ${expected.length} records`)
      }
    })
  }
  const unboundedWork: Work = async (round, n) => {
    const { record, reader } = unbounded!
    for (let i = 0; i < n; i++) {
      const t = writeThread(round, i)
      record(t.accountId, t.channelId, t.threadTs)
    }
    await untilFlushed(unboundedFlushed, unboundedBefore + n)
    checks.push(() => {
      const flushed = Effect.runSync(Metric.value(unboundedFlushed)).count - unboundedBefore
      if (flushed !== n) fail(`unbounded: flushed ${flushed} of ${n} writes`)
      const { rows } = reader.prepare<[], { rows: number }>("SELECT count(*) AS rows FROM channel_state_entries").get()!
      if (rows !== n) fail(`unbounded: store holds ${rows} rows, expected ${n}`)
    })
  }
  // Statements are prepared inside the timed work, as our fresh connection has to. Each raw
  // way writes the namespace of the side it is compared with (the same rows, byte for byte).
  const rawContender =
    (way: RawWay): Work =>
    (round, n) => {
      const db = raw[way]!
      const namespace = way === "evicting" ? NAMESPACE : UNBOUNDED_NAMESPACE
      rawWork(rawWriters(db, namespace)[way])(round, n)
      checks.push(() => {
        const rows = keysIn(db, namespace).length
        const expected = way === "evicting" ? Math.min(n, STORE_MAX) : n
        if (rows !== expected) fail(`raw ${way} holds ${rows} rows, expected ${expected}`)
      })
    }
  try {
    const samples = await sampleInterleaved(
      {
        ours: oursWork,
        perRow: rawContender("perRow"),
        multiRow: rawContender("multiRow"),
        evicting: rawContender("evicting"),
        unbounded: unboundedWork
      },
      timing.writeBehind,
      { setup, rotate: true }
    )
    await finishRound()
    const times = { ours: median(samples.ours), perRow: median(samples.perRow), multiRow: median(samples.multiRow), evicting: median(samples.evicting), unbounded: median(samples.unbounded) }
    const baseline = Math.min(times.perRow, times.multiRow)
    const way = times.perRow <= times.multiRow ? "1 000 prepared one-row upserts" : "two prepared 500-row upserts"
    const ns = (x: number) => `${Math.round(x)} ns`
    // The same ratio round by round (each round's unbounded against that round's faster raw way): its spread says how sturdy the median is.
    const perRound = samples.unbounded.map((u, r) => u / Math.min(samples.perRow[r]!, samples.multiRow[r]!)).sort((a, b) => a - b)
    const spread = `per-round ratios ${perRound[0]!.toFixed(2)}–${perRound.at(-1)!.toFixed(2)}, their median ${median(perRound).toFixed(2)}, middle half ${perRound[Math.floor(perRound.length / 4)]!.toFixed(2)}–${perRound[Math.ceil((3 * perRound.length) / 4) - 1]!.toFixed(2)}`
    return [
      row(
        "writebehind.vs_raw_batched",
        "ns/record",
        times.unbounded,
        baseline,
        1.5,
        `${WRITES} distinct records through the Slack record path into a namespace whose store max is above ${WRITES}, so every record is persisted: ` +
          `the sync record loop, then until the flusher has committed them all (its flushed-writes counter); mirror maxQueue 100 000, flushInterval 1 ms, maxBatch ${BATCH}; fresh file and runtime per round. ` +
          `Raw: the same rows (same namespace), ${way} per transaction of ${BATCH} plus the row-count read the store's cap check makes, the fastest way this run (per-row ${ns(times.perRow)}, multi-row ${ns(times.multiRow)}). ` +
          `Medians of ${timing.writeBehind.rounds} interleaved rounds (after ${timing.writeBehind.warmup}), 5 contenders, order rotated; ${spread}. Where ours spends it: node --import tsx bench/profile.ts writebehind.`
      ),
      row(
        "writebehind.evicting_vs_raw_evicting",
        "ns/record",
        times.ours,
        times.evicting,
        null,
        `The Slack layer itself (store max ${STORE_MAX}): ${WRITES} distinct records (the sync loop alone ${ns(median(loopNs))}), every flushed batch of ${BATCH} also evicts ${BATCH} rows; ` +
          `verified after: all flushed, none dropped, the newest ${STORE_MAX} rows in the file. Raw: the same upserts plus the store's eviction (count, delete the oldest past ${STORE_MAX}); ` +
          `against raw without eviction (${ns(baseline)}) ours is ${(times.ours / baseline).toFixed(2)}×.`
      )
    ]
  } finally {
    await finishRound()
  }
}

// ---------------------------------------------------------------------------------------
// check.store_hit_vs_raw

const checkRow = async (dir: string): Promise<Row> => {
  const file = path.join(dir, "check", "state.sqlite")
  const threads = threadPool(STORE_MAX)
  // Fill the namespace to its max through the layer itself, then flush by disposing.
  const filler = await openPersistent(file)
  for (const t of threads) filler.service.record(t.accountId, t.channelId, t.threadTs)
  await filler.runtime.dispose()

  const db = new Database(file)
  const select = db.prepare<[string, string, string, number], { entry_key: string; value_json: string; created_at: number; expires_at: number | null }>(
    `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
     WHERE owner = ? AND namespace = ? AND entry_key = ? AND ${LIVE}`
  )
  if (keysIn(db).length !== threads.length) fail("check: the store was not filled")
  /** Each key once per round, in a scattered order. */
  const at = (round: number, i: number) => threads[(i * 7919 + round * 101) % threads.length]!

  let current: { runtime: SlackRuntime; service: SlackService } | undefined
  const setup: Work = async () => {
    await current?.runtime.dispose()
    current = await openPersistent(file)
  }
  const oursWork: Work = (round, n) => {
    const { service, runtime } = current!
    return runtime.runPromise(
      Effect.gen(function* () {
        for (let i = 0; i < n; i++) {
          const t = at(round, i)
          if (service.has(t.accountId, t.channelId, t.threadTs)) fail("check: already in memory")
          if (!(yield* service.check(t.accountId, t.channelId, t.threadTs))) fail("check: store miss")
        }
      })
    )
  }
  const rawSelect: Work = (round, n) => {
    for (let i = 0; i < n; i++) {
      const found = select.get(PLUGIN, NAMESPACE, compositeKey(at(round, i)), Date.now())
      if (found === undefined) fail("raw select missed")
      else JSON.parse(found.value_json)
    }
  }
  try {
    const times = await timeInterleaved({ ours: oursWork, raw: rawSelect }, timing.check, { setup, rotate: true })
    return row(
      "check.store_hit_vs_raw",
      "ns/op",
      times.ours,
      times.raw,
      null,
      `fresh runtime per round on a file holding ${STORE_MAX} rows (Slack's namespace max); each key checked once: memory miss, store hit, backfill; raw: prepared point SELECT .get() + JSON.parse`
    )
  } finally {
    db.close()
    await current?.runtime.dispose()
  }
}

/** Runs the channel-cache benchmarks and returns their rows. */
export const channelsBench = async (): Promise<Array<Row>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-channels-"))
  for (const sub of ["sync", "writes", "check"]) fs.mkdirSync(path.join(dir, sub), { mode: 0o700 })
  try {
    console.error("bench: Slack thread participation: sync path …")
    const sync = await syncRows(dir)
    console.error("bench: Slack thread participation: write-behind throughput …")
    const writes = await writeBehindRows(dir)
    console.error("bench: Slack thread participation: check on a store hit …")
    const check = await checkRow(dir)
    return [...sync, ...writes, check]
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
