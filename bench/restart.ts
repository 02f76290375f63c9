/**
 * `restart.open_to_first_answer_sqlite` / `_pg`: a restart's cost to the plugin, measured in
 * a fresh child process from "start opening" to "first answer" — Node and tsx start-up and
 * module loading excluded (the child has imported everything before it starts the clock,
 * and both kinds of child import the same modules).
 *
 * The store already holds data: 10 000 rows of the Slack thread-participation namespace
 * (written by the store itself, before; ten times Slack's own namespace max, which only a
 * write would enforce). The probe is one of those threads.
 * - ours: `PluginRuntime.layer({ pluginId: "slack", persistence on, store })` in a
 *   ManagedRuntime, then Slack `check` of the probe thread (a memory miss answered by the
 *   store) — building the runtime opens the store (client, pragmas, migrations check, the
 *   namespace, the write-behind mirror);
 * - raw: better-sqlite3 `new Database(file)` + prepare + the point select + JSON.parse, or a
 *   `pg` Client connect + the same select.
 *
 * Children run one after another, ours and raw alternating (rotated), one warmup pair first
 * (page cache, PostgreSQL's caches); the figure is the median. Each child's answer is checked
 * (the probe thread is known).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import Database from "better-sqlite3"
import { Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { type BatchOp, KeyedStore } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { isMain, runChild, say, spawnChild } from "./children.js"
import { formatSummary, profileRegion, summarize } from "./cpuProfile.js"
import { adminSql, captureProblems, fail, freshPgDatabase, median, pgBaseUrl, type Row, row, runAlone, type TimingOptions, timed, timeInterleaved, type Work } from "./harness.js"
import { pgPlaceholders, rawPgClient } from "./rawPg.js"

/** When this module's imports were done, in ms since process start (the child reports it). */
const importsDone = performance.now()

const SELF = fileURLToPath(import.meta.url)
const PLUGIN = "slack"
const NAMESPACE = Slack.spec.namespace
const ROWS = 10_000
const BATCH = 1000
const TTL_MS = 24 * 60 * 60 * 1000
const TARGET = 3
const config = { plugins: { entries: { [PLUGIN]: { config: { experimentalPersistentState: true } } } } }

const timing = {
  sqlite: { n: 1, rounds: 7, warmup: 1 },
  pg: { n: 1, rounds: 5, warmup: 1 }
} satisfies Record<string, TimingOptions>

export type Backend = "sqlite" | "pg"
type Mode = "ours" | "raw"

interface Thread {
  readonly accountId: string
  readonly channelId: string
  readonly threadTs: string
}
const ACCOUNTS = ["T024BE7LD", "T07QCRPMVH2", "T01HX8Z3K9P"]
const threadOf = (i: number): Thread => ({
  accountId: ACCOUNTS[i % ACCOUNTS.length]!,
  channelId: `C0${((i % 200) * 2_654_435_761).toString(36).toUpperCase().padStart(9, "0").slice(-9)}`,
  threadTs: `${1_712_345_678 + i * 37}.${String((i * 7919) % 1_000_000).padStart(6, "0")}`
})
const keyOf = (t: Thread) => `${t.accountId}:${t.channelId}:${t.threadTs}`
/** The thread every child asks about. */
const PROBE = threadOf(7_777)

const LOOKUP_SQL = `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
  WHERE owner = ? AND namespace = ? AND entry_key = ? AND (expires_at IS NULL OR expires_at > ?)`

export type RestartLine = {
  readonly type: "answered"
  /** Slack `check` (ours) / the select found a live row (raw). */
  readonly known: boolean
  /** performance.now() (ms since process start) at: imports done, just before opening, the first answer. */
  readonly importsDone: number
  readonly openStart: number
  readonly answered: number
  readonly problems: ReadonlyArray<string>
  /** With CHANNEL_STATE_BENCH_PROFILE: the CPU profile of the timed region, summarised. */
  readonly profile?: string
}

// ---------------------------------------------------------------------------------------
// the child

const location = (backend: Backend, where: string): PluginRuntime.StoreLocation => (backend === "pg" ? { pgUrl: where } : { sqlitePath: where })

/**
 * What a child opens and asks, timed from just before opening to the answer:
 * - `ours`: the plugin runtime and Slack `check` (the row);
 * - `raw`: the raw driver's open and point select (the row's baseline);
 * - attribution only (bench/profile.ts restart): `client`, the `@effect/sql` client alone and
 *   the same select through it; `store`, the keyed store the plugin runtime builds
 *   (`PluginRuntime.storeLayer`) and `lookup` on the namespace.
 */
export type RestartMode = "ours" | "raw" | "client" | "store"

const openAndAnswer = async (mode: RestartMode, backend: Backend, where: string, logs: ReturnType<typeof captureProblems>): Promise<{ known: boolean; close: () => Promise<void> }> => {
  const t = PROBE
  const params = [PLUGIN, NAMESPACE, keyOf(t), Date.now()] as const
  if (mode === "ours") {
    const runtime = ManagedRuntime.make(PluginRuntime.layer({ pluginId: PLUGIN, config, store: location(backend, where) }).pipe(Layer.provide(logs.layer)))
    const known = await runtime.runPromise(Effect.flatMap(Slack.SlackThreadParticipation, (slack) => slack.check(t.accountId, t.channelId, t.threadTs)))
    return { known, close: () => runtime.dispose() }
  }
  if (mode === "store") {
    const runtime = ManagedRuntime.make(PluginRuntime.storeLayer(location(backend, where)).pipe(Layer.provide(logs.layer)))
    const found = await runtime.runPromise(
      Effect.flatMap(KeyedStore, (store) => store.open({ owner: PLUGIN, namespace: NAMESPACE, schema: Slack.Participation, maxEntries: Slack.spec.storeMaxEntries, ttl: TTL_MS })).pipe(
        Effect.flatMap((handle) => handle.lookup(keyOf(t)))
      )
    )
    return { known: Option.isSome(found), close: () => runtime.dispose() }
  }
  if (mode === "client") {
    const layer: Layer.Layer<SqlClient, unknown> =
      backend === "sqlite" ? SqliteClient.layer({ filename: where }) : PgClient.layer({ url: Redacted.make(where) }).pipe(Layer.provide(Reactivity.layer))
    const runtime = ManagedRuntime.make(layer)
    const rows = await runtime.runPromise(
      Effect.flatMap(SqlClient, (sql) => sql.unsafe<{ value_json: string }>(backend === "pg" ? pgPlaceholders(LOOKUP_SQL) : LOOKUP_SQL, [...params]))
    )
    if (rows[0] !== undefined) JSON.parse(rows[0].value_json)
    return { known: rows[0] !== undefined, close: () => runtime.dispose() }
  }
  if (backend === "sqlite") {
    const db = new Database(where)
    const hit = db.prepare<[string, string, string, number], { value_json: string }>(LOOKUP_SQL).get(...params)
    if (hit !== undefined) JSON.parse(hit.value_json)
    return { known: hit !== undefined, close: async () => void db.close() }
  }
  const client = rawPgClient(where)
  await client.connect()
  const hit = (await client.query<{ value_json: string }>(pgPlaceholders(LOOKUP_SQL), [...params])).rows[0]
  if (hit !== undefined) JSON.parse(hit.value_json)
  return { known: hit !== undefined, close: () => client.end() }
}

/** With CHANNEL_STATE_BENCH_PROFILE set, the child profiles its timed region and sends the summary along. */
const restartChild = async (mode: RestartMode, backend: Backend, where: string) => {
  const logs = captureProblems()
  const profiling = process.env.CHANNEL_STATE_BENCH_PROFILE !== undefined
  const openStart = performance.now()
  const region = () => openAndAnswer(mode, backend, where, logs)
  const { result, profile } = profiling ? await profileRegion(region, { intervalUs: 50 }) : { result: await region(), profile: undefined }
  const answered = performance.now()
  say({
    type: "answered",
    known: result.known,
    importsDone,
    openStart,
    answered,
    problems: logs.lines,
    ...(profile === undefined ? {} : { profile: formatSummary(summarize(profile, 30)) })
  } satisfies RestartLine)
  await result.close()
}

// ---------------------------------------------------------------------------------------
// the parent

/** Writes ROWS Slack threads through the keyed store (a namespace max of ROWS, so nothing is evicted). */
export const fill = async (layer: Layer.Layer<KeyedStore, StateStoreError>) => {
  const runtime = ManagedRuntime.make(layer)
  try {
    await runtime.runPromise(
      Effect.gen(function* () {
        const store = yield* KeyedStore
        const handle = yield* store.open({ owner: PLUGIN, namespace: NAMESPACE, schema: Slack.Participation, maxEntries: ROWS, ttl: TTL_MS })
        const now = Date.now()
        for (let first = 0; first < ROWS; first += BATCH) {
          const ops: Array<BatchOp<Slack.Participation>> = []
          for (let i = first; i < first + BATCH; i++) {
            const createdAt = now - (ROWS - i) * 1000
            ops.push({ _tag: "Register", key: keyOf(threadOf(i)), value: i % 4 === 0 ? { repliedAt: createdAt } : { agentId: `agent-${i % 7}`, repliedAt: createdAt }, createdAt, expiresAt: createdAt + TTL_MS })
          }
          const result = yield* handle.writeBatch(ops)
          if (result.refused.length > 0) fail(`filling: ${result.refused.length} rows refused`)
        }
        if ((yield* handle.size) !== ROWS) fail("filling: wrong size")
      })
    )
  } finally {
    await runtime.dispose()
  }
}

const restartRow = async (backend: Backend, where: string): Promise<Row> => {
  const results: Record<Mode, Array<RestartLine>> = { ours: [], raw: [] }
  const child =
    (mode: Mode): Work =>
    async (round) => {
      const c = spawnChild<RestartLine>(SELF, ["--restart-child", mode, backend, where])
      const line = await c.next("answered")
      await c.close()
      if (!line.known) fail(`restart ${backend} ${mode}: the probe thread was not found`)
      if (line.problems.length > 0) fail(`restart ${backend} ${mode}: ${line.problems.length} warning/error lines: ${line.problems[0]}`)
      if (round >= timing[backend].warmup) results[mode].push(line)
      return timed((line.answered - line.openStart) * 1e6)
    }
  const times = await timeInterleaved({ ours: child("ours"), raw: child("raw") }, timing[backend], { rotate: true })
  const ms = (x: number) => `${x.toFixed(1)} ms`
  const med = (mode: Mode, f: (l: RestartLine) => number) => median(results[mode].map(f))
  const what = backend === "sqlite" ? "a SQLite file (WAL, in the page cache)" : "a PostgreSQL database"
  const raw = backend === "sqlite" ? "raw better-sqlite3: new Database(file) + prepare + the point select + JSON.parse" : "raw pg: new Client + connect + the point select + JSON.parse"
  return row(
    `restart.open_to_first_answer_${backend}`,
    "ns (open → 1st answer)",
    times.ours,
    times.raw,
    TARGET,
    `fresh child process on ${what} holding ${ROWS} Slack rows; timed inside the child from just before opening to the first answer (Node/tsx start-up and imports excluded), median of ${timing[backend].rounds} children per side (after ${timing[backend].warmup} warmup each), alternating. ` +
      `Ours: ManagedRuntime(PluginRuntime.layer slack, persistence on) + Slack check of a stored thread (memory miss, store hit) ${ms(times.ours / 1e6)}; ${raw} ${ms(times.raw / 1e6)}. ` +
      `For reference, process start → first answer: ours ${ms(med("ours", (l) => l.answered))}, raw ${ms(med("raw", (l) => l.answered))} (imports done at ${ms(med("ours", (l) => l.importsDone))}).`
  )
}

/** Runs the restart benchmarks and returns their rows. */
export const restartBench = async (): Promise<Array<Row>> => {
  const rows: Array<Row> = []
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-restart-"))
  try {
    console.error(`bench: restart, open → first answer on a SQLite file of ${ROWS} rows …`)
    const file = path.join(dir, "state", "state.sqlite")
    await fill(SqliteStore.layer({ filename: file }))
    rows.push(await restartRow("sqlite", file))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const baseUrl = pgBaseUrl()
  if (baseUrl === undefined) {
    console.error("bench: CHANNEL_STATE_TEST_PG_URL not set, restart.open_to_first_answer_pg skipped")
    return rows
  }
  console.error(`bench: restart, open → first answer on a PostgreSQL database of ${ROWS} rows …`)
  const database = await freshPgDatabase(baseUrl, "restart")
  try {
    await fill(PgStore.layer({ url: database.url }))
    // Steady state: autovacuum has analyzed a live table (see store.ts).
    await adminSql(database.url, "ANALYZE channel_state_entries")
    rows.push(await restartRow("pg", database.url))
  } finally {
    await database.drop()
  }
  return rows
}

if (isMain(import.meta.url)) {
  if (process.argv[2] === "--restart-child") {
    const [mode, backend, where] = process.argv.slice(3) as [RestartMode, Backend, string]
    runChild(() => restartChild(mode, backend, where))
  } else await runAlone(restartBench)
}
