/**
 * `claims.contended_sqlite` / `claims.contended_pg`: THREE OS processes claim the same ids
 * at the same time, on one SQLite file / one PostgreSQL database.
 *
 * - ours: each process runs the BlueBubbles plugin runtime (`PluginRuntime.makeRuntime`,
 *   persistence on, the store at the file or URL) and calls `claim` for every id, one after
 *   another, inside one Effect per round;
 * - store (attribution, in the note): the same processes' work on the keyed store directly
 *   (`PluginRuntime.storeLayer`): `registerIfAbsent`, and on a loss a `lookup` to tell a
 *   duplicate from one in flight — what `claim` does under its memory check;
 * - raw (the baseline): better-sqlite3 (`timeout` 5 000 ms, i.e. `busy_timeout`, its
 *   default, as a raw user leaves it; a `SQLITE_BUSY` that still escapes is retried and
 *   counted) or `pg` (one `Client`), running the atomic claim statement
 *   `INSERT … ON CONFLICT … DO UPDATE … WHERE expired RETURNING` in autocommit, and on a loss
 *   the point select of the holder's status — so both sides give the caller the same answer
 *   (Claimed / Duplicate / InFlight).
 *
 * Every contender has its own three processes (started once, kept across rounds) and its
 * own file or database, made by the store. Each round the parent tells the three processes
 * of one contender to go (a line on their stdin); each claims `r<round>-0 … r<round>-<n-1>`
 * in the same order, so they race on the same id at the same moment. A round's time is
 * from the first process starting to the last finishing (their own clocks), divided by the
 * 3 × n claim calls. Rounds are interleaved across contenders, order rotated.
 *
 * Checked in the bench: in every round each id was won by exactly one process (every other
 * answer for it `InFlight`: nobody finalizes), and afterwards the database holds exactly one
 * row per id claimed.
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import Database from "better-sqlite3"
import { Duration, Effect, Layer, ManagedRuntime, Option } from "effect"
import * as BlueBubbles from "../src/channels/BlueBubblesInboundDedupe.js"
import { KeyedStore } from "../src/KeyedStore.js"
import { ClaimState } from "../src/layers/ClaimLedger.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type Child, commands, isMain, runChild, say, spawnChild } from "./children.js"
import {
  captureProblems,
  createStoreFile,
  createStoreSchemaPg,
  fail,
  freshPgDatabase,
  pgBaseUrl,
  type Row,
  row,
  runAlone,
  sleep,
  type TimingOptions,
  timed,
  timeInterleaved,
  type Work
} from "./harness.js"
import { pgPlaceholders, rawPgClient } from "./rawPg.js"
import { instrumentSqlite } from "./sqliteProbe.js"

const SELF = fileURLToPath(import.meta.url)
const PLUGIN = "bluebubbles"
const NAMESPACE = BlueBubbles.spec.namespace
const ACCOUNT = "acc"
const WORKERS = 3
const CLAIM_TTL_MS = Duration.toMillis(BlueBubbles.CLAIM_TTL)
/** better-sqlite3's default `timeout` (busy_timeout), spelled out: what a raw user runs with. */
const RAW_BUSY_TIMEOUT_MS = 5000
const config = { plugins: { entries: { [PLUGIN]: { config: { experimentalPersistentState: true } } } } }

const timing = {
  // Raw claims take ~50 µs: 600 ids (1 800 calls) keep a raw round near 100 ms, well above the start skew.
  sqlite: { n: 600, rounds: 7, warmup: 2 },
  pg: { n: 150, rounds: 5, warmup: 1 }
} satisfies Record<string, TimingOptions>

type Backend = "sqlite" | "pg"
type Contender = "ours" | "store" | "raw"
const CONTENDERS: ReadonlyArray<Contender> = ["ours", "store", "raw"]
/** What one claim call answered; `Undecided` is a store failure on the store contender. */
type Outcome = "Claimed" | "Duplicate" | "InFlight" | "Skip" | "Undecided"

interface GoCommand {
  readonly type: "go"
  readonly round: number
  readonly n: number
  /** Epoch ms at which all three processes start claiming. */
  readonly startAt: number
}

type ClaimLine =
  | { readonly type: "ready" }
  | {
      readonly type: "result"
      readonly round: number
      /** Epoch ms (fractional) when this process started claiming and when its last claim answered. */
      readonly startedAt: number
      readonly finishedAt: number
      /** The ids this process won. */
      readonly won: ReadonlyArray<string>
      readonly outcomes: Readonly<Record<string, number>>
      /** SQLite: statements that answered SQLITE_BUSY (and were retried: by the store from its fiber, by raw at once). */
      readonly busy: number
      /** Warning and error log lines of our runtime during the round. */
      readonly problems: ReadonlyArray<string>
    }

const guidOf = (round: number, i: number) => `r${round}-${i}`
/** The key BlueBubbles stores a guid under (`<accountId>:<guid>`). */
const keyOf = (guid: string) => `${ACCOUNT}:${guid}`
const epochMs = () => performance.timeOrigin + performance.now()
const claimedValue = (now: number): ClaimState => ({ status: "claimed", at: now, token: randomUUID() })
/** How far ahead of the go lines the common start is set (the lines reach every process well before). */
const START_DELAY_MS = 40

// ---------------------------------------------------------------------------------------
// the raw claim: the store's claim statement, and the holder's status on a loss

const CLAIM_SQL = `INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
  ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at
  WHERE channel_state_entries.expires_at IS NOT NULL AND channel_state_entries.expires_at <= ? RETURNING entry_key`
const STATUS_SQL = `SELECT value_json FROM channel_state_entries
  WHERE owner = ? AND namespace = ? AND entry_key = ? AND (expires_at IS NULL OR expires_at > ?)`
const statusOf = (valueJson: string | undefined): Outcome =>
  valueJson !== undefined && (JSON.parse(valueJson) as ClaimState).status === "committed" ? "Duplicate" : "InFlight"

interface Claimer {
  /** Claims every guid, one after another; what each answered, in order. */
  readonly claimAll: (guids: ReadonlyArray<string>) => Promise<Array<Outcome>>
  readonly problems: Array<string>
  readonly close: () => Promise<void>
}

const isBusy = (error: unknown) => typeof (error as { code?: unknown })?.code === "string" && (error as { code: string }).code.startsWith("SQLITE_BUSY")

const rawSqliteClaimer = (file: string): Claimer => {
  const db = new Database(file, { timeout: RAW_BUSY_TIMEOUT_MS })
  db.pragma("synchronous = NORMAL")
  const claim = db.prepare<Array<unknown>, { entry_key: string }>(CLAIM_SQL)
  const status = db.prepare<[string, string, string, number], { value_json: string }>(STATUS_SQL)
  const retryingBusy = <T>(f: () => T): T => {
    for (;;) {
      try {
        return f()
      } catch (error) {
        if (!isBusy(error)) throw error
      }
    }
  }
  const claimOne = (key: string): Outcome => {
    const now = Date.now()
    const json = JSON.stringify(claimedValue(now))
    // `.all()`, not `.get()`: a `RETURNING` statement reset before it is done skips SQLite's
    // WAL auto-checkpoint (see bench/store.ts, the raw consume).
    if (retryingBusy(() => claim.all(PLUGIN, NAMESPACE, key, json, now, now + CLAIM_TTL_MS, now))[0] !== undefined) return "Claimed"
    return statusOf(retryingBusy(() => status.get(PLUGIN, NAMESPACE, key, Date.now()))?.value_json)
  }
  return {
    claimAll: async (guids) => guids.map((guid) => claimOne(keyOf(guid))),
    problems: [],
    close: async () => {
      db.close()
    }
  }
}

const rawPgClaimer = async (url: string): Promise<Claimer> => {
  const client = rawPgClient(url)
  await client.connect()
  const claimSql = pgPlaceholders(CLAIM_SQL)
  const statusSql = pgPlaceholders(STATUS_SQL)
  const claimOne = async (key: string): Promise<Outcome> => {
    const now = Date.now()
    const json = JSON.stringify(claimedValue(now))
    const claimed = await client.query(claimSql, [PLUGIN, NAMESPACE, key, json, now, now + CLAIM_TTL_MS, now])
    if (claimed.rows.length > 0) return "Claimed"
    const held = await client.query<{ value_json: string }>(statusSql, [PLUGIN, NAMESPACE, key, Date.now()])
    return statusOf(held.rows[0]?.value_json)
  }
  return {
    claimAll: async (guids) => {
      const outcomes: Array<Outcome> = []
      for (const guid of guids) outcomes.push(await claimOne(keyOf(guid)))
      return outcomes
    },
    problems: [],
    close: () => client.end()
  }
}

const storeLocation = (backend: Backend, location: string): PluginRuntime.StoreLocation =>
  backend === "pg" ? { pgUrl: location } : { sqlitePath: location }

/** Ours: the BlueBubbles plugin runtime, `claim` per id. */
const oursClaimer = async (backend: Backend, location: string): Promise<Claimer> => {
  const logs = captureProblems()
  const runtime = ManagedRuntime.make(
    PluginRuntime.layer({ pluginId: PLUGIN, config, store: storeLocation(backend, location) }).pipe(Layer.provide(logs.layer))
  )
  const dedupe = await runtime.runPromise(BlueBubbles.BlueBubblesInboundDedupe)
  return {
    claimAll: (guids) =>
      runtime.runPromise(Effect.forEach(guids, (guid) => Effect.map(dedupe.claim({ accountId: ACCOUNT, guid }), (outcome): Outcome => outcome._tag))),
    problems: logs.lines,
    close: () => runtime.dispose()
  }
}

/** Attribution: the keyed store the plugin runtime builds, used directly. */
const storeClaimer = async (backend: Backend, location: string): Promise<Claimer> => {
  const logs = captureProblems()
  const runtime = ManagedRuntime.make(PluginRuntime.storeLayer(storeLocation(backend, location)).pipe(Layer.provide(logs.layer)))
  const handle = await runtime.runPromise(
    Effect.flatMap(KeyedStore, (store) =>
      store.open({ owner: PLUGIN, namespace: NAMESPACE, schema: ClaimState, maxEntries: BlueBubbles.spec.storeMaxEntries, ttl: BlueBubbles.spec.ttl })
    )
  )
  const claimOne = (key: string): Effect.Effect<Outcome> =>
    Effect.gen(function* () {
      if (yield* handle.registerIfAbsent(key, claimedValue(Date.now()), { ttl: CLAIM_TTL_MS })) return "Claimed" as const
      const held = yield* handle.lookup(key)
      return Option.isSome(held) && held.value.status === "committed" ? ("Duplicate" as const) : ("InFlight" as const)
    }).pipe(Effect.catchAll(() => Effect.succeed("Undecided" as const)))
  return {
    claimAll: (guids) => runtime.runPromise(Effect.forEach(guids, (guid) => claimOne(keyOf(guid)))),
    problems: logs.lines,
    close: () => runtime.dispose()
  }
}

const makeClaimer = (contender: Contender, backend: Backend, location: string): Promise<Claimer> => {
  if (contender === "ours") return oursClaimer(backend, location)
  if (contender === "store") return storeClaimer(backend, location)
  return backend === "pg" ? rawPgClaimer(location) : Promise.resolve(rawSqliteClaimer(location))
}

/** In the child: build the claimer, say ready, run a round per go line. */
const claimChild = async (contender: Contender, backend: Backend, location: string) => {
  const probe = backend === "sqlite" ? instrumentSqlite({ timing: false }) : undefined
  const claimer = await makeClaimer(contender, backend, location)
  say({ type: "ready" })
  for await (const command of commands<GoCommand>()) {
    const guids = Array.from({ length: command.n }, (_, i) => guidOf(command.round, i))
    const problemsBefore = claimer.problems.length
    probe?.reset()
    // Sleep to just before the common start, then spin to it.
    await sleep(Math.max(0, command.startAt - epochMs() - 3))
    while (epochMs() < command.startAt) {}
    const startedAt = epochMs()
    const outcomes = await claimer.claimAll(guids)
    const finishedAt = epochMs()
    const tally: Record<string, number> = {}
    for (const outcome of outcomes) tally[outcome] = (tally[outcome] ?? 0) + 1
    say({
      type: "result",
      round: command.round,
      startedAt,
      finishedAt,
      won: guids.filter((_, i) => outcomes[i] === "Claimed"),
      outcomes: tally,
      busy: probe?.busy() ?? 0,
      problems: claimer.problems.slice(problemsBefore)
    })
  }
  await claimer.close()
}

// ---------------------------------------------------------------------------------------
// the parent

type ResultLine = Extract<ClaimLine, { readonly type: "result" }>

/** Each id of the round won by exactly one process; every other answer `InFlight`. */
const checkExactlyOnce = (what: string, round: number, n: number, results: ReadonlyArray<ResultLine>) => {
  const wins = new Map<string, number>()
  for (const result of results) for (const guid of result.won) wins.set(guid, (wins.get(guid) ?? 0) + 1)
  const wrong: Array<string> = []
  for (let i = 0; i < n; i++) {
    const count = wins.get(guidOf(round, i)) ?? 0
    if (count !== 1) wrong.push(`${guidOf(round, i)} won ${count}×`)
  }
  if (wrong.length > 0) fail(`${what} round ${round}: ${wrong.length} of ${n} ids not claimed exactly once (${wrong.slice(0, 5).join(", ")})`)
  const others = results.flatMap((r) => Object.entries(r.outcomes).filter(([tag]) => tag !== "Claimed" && tag !== "InFlight"))
  if (others.length > 0) fail(`${what} round ${round}: unexpected answers ${JSON.stringify(others)}`)
}

interface Totals {
  busy: number
  problems: Array<string>
  /** Spread of the three processes' start times (ms), worst timed round. */
  worstStartSkewMs: number
}

/** Rows stored for the bench's ids, and how many of them are claims: one per claimed id. */
const storedClaims = async (backend: Backend, location: string): Promise<{ rows: number; claimed: number }> => {
  const sql = `SELECT count(*) AS rows, sum(CASE WHEN value_json LIKE '%"claimed"%' THEN 1 ELSE 0 END) AS claimed
    FROM channel_state_entries WHERE owner = ? AND namespace = ?`
  if (backend === "sqlite") {
    const db = new Database(location, { readonly: true })
    try {
      return db.prepare<[string, string], { rows: number; claimed: number }>(sql).get(PLUGIN, NAMESPACE)!
    } finally {
      db.close()
    }
  }
  const client = rawPgClient(location)
  await client.connect()
  try {
    const result = await client.query<{ rows: string; claimed: string }>(pgPlaceholders(sql), [PLUGIN, NAMESPACE])
    return { rows: Number(result.rows[0]!.rows), claimed: Number(result.rows[0]!.claimed) }
  } finally {
    await client.end()
  }
}

const contendedRow = async (backend: Backend, locations: Record<Contender, string>): Promise<Row> => {
  const options = { ...timing[backend], perOp: WORKERS }
  const workers = {} as Record<Contender, Array<Child<ClaimLine>>>
  for (const contender of CONTENDERS) {
    workers[contender] = Array.from({ length: WORKERS }, () => spawnChild<ClaimLine>(SELF, ["--claims-child", contender, backend, locations[contender]]))
  }
  const all = CONTENDERS.flatMap((c) => workers[c])
  try {
    await Promise.all(all.map((w) => w.next("ready")))
    const totals = {} as Record<Contender, Totals>
    for (const c of CONTENDERS) totals[c] = { busy: 0, problems: [], worstStartSkewMs: 0 }
    const contender =
      (c: Contender): Work =>
      async (round, n) => {
        const startAt = epochMs() + START_DELAY_MS
        for (const w of workers[c]) w.send({ type: "go", round, n, startAt } satisfies GoCommand)
        const results = await Promise.all(workers[c].map((w) => w.next("result")))
        checkExactlyOnce(`${backend} ${c}`, round, n, results)
        const started = Math.min(...results.map((r) => r.startedAt))
        const finished = Math.max(...results.map((r) => r.finishedAt))
        const t = totals[c]
        t.busy += results.reduce((sum, r) => sum + r.busy, 0)
        t.problems.push(...results.flatMap((r) => r.problems))
        if (round >= options.warmup) t.worstStartSkewMs = Math.max(t.worstStartSkewMs, Math.max(...results.map((r) => r.startedAt)) - started)
        return timed((finished - started) * 1e6)
      }
    const times = await timeInterleaved({ ours: contender("ours"), store: contender("store"), raw: contender("raw") }, options, { rotate: true })
    await Promise.all(all.map((w) => w.close()))
    const ids = (options.warmup + options.rounds) * options.n
    for (const c of CONTENDERS) {
      const stored = await storedClaims(backend, locations[c])
      if (stored.rows !== ids || stored.claimed !== ids) fail(`${backend} ${c}: the database holds ${stored.rows} rows (${stored.claimed} claims) for ${ids} claimed ids`)
    }
    const perSecond = (ns: number) => `${Math.round(1e9 / ns)} claims/s`
    const busyPerClaim = (c: Contender) => (totals[c].busy / (ids * WORKERS)).toFixed(2)
    const where = backend === "sqlite" ? "one SQLite file (WAL)" : "one PostgreSQL database"
    const rawWay =
      backend === "sqlite"
        ? `raw better-sqlite3 (timeout ${RAW_BUSY_TIMEOUT_MS} ms = busy_timeout, the default; SQLITE_BUSY retried when it still escaped: ${totals.raw.busy} times)`
        : "raw pg (one Client per process)"
    return row(
      `claims.contended_${backend}`,
      "ns/claim",
      times.ours,
      times.raw,
      null,
      `${WORKERS} OS processes per side claim the same ${options.n} fresh ids per round, in the same order, each id once per process, one claim after another, on ${where} per side; ` +
        `time = first process start to last finish / ${WORKERS}×${options.n} claim calls, median of ${options.rounds} interleaved rounds (after ${options.warmup}). ` +
        `Ours: PluginRuntime (bluebubbles, persistence on) BlueBubbles claim, ${perSecond(times.ours)}; ${rawWay}: claim statement INSERT … ON CONFLICT … DO UPDATE … WHERE expired RETURNING in autocommit, on a loss the holder's status select, ${perSecond(times.raw)}. ` +
        `Attribution: the keyed store directly (registerIfAbsent, lookup on a loss) ${Math.round(times.store)} ns/claim (${(times.store / times.raw).toFixed(2)}× raw). ` +
        (backend === "sqlite"
          ? `SQLITE_BUSY answers per claim call (busy_timeout 0 in the store: each one a fiber sleep of 1–3 ms and up before the retry): ours ${busyPerClaim("ours")}, store ${busyPerClaim("store")}, raw ${busyPerClaim("raw")}. `
          : "") +
        `Checked: every id won by exactly one process, every other answer InFlight, one stored claim per id after; ${totals.ours.problems.length} warning/error lines from our runtimes, ${totals.store.problems.length} from the store's; ` +
        `worst start skew of the three processes in a timed round ${Math.max(...CONTENDERS.map((c) => totals[c].worstStartSkewMs)).toFixed(1)} ms.`
    )
  } finally {
    for (const w of all) w.process.kill("SIGKILL")
  }
}

/** Runs the contended-claim benchmarks and returns their rows. */
export const claimsBench = async (): Promise<Array<Row>> => {
  const rows: Array<Row> = []
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-claims-"))
  try {
    console.error("bench: contended claims, 3 processes on one SQLite file …")
    const files = {} as Record<Contender, string>
    for (const c of CONTENDERS) {
      files[c] = path.join(dir, c, "state.sqlite")
      await createStoreFile(files[c])
    }
    rows.push(await contendedRow("sqlite", files))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const baseUrl = pgBaseUrl()
  if (baseUrl === undefined) {
    console.error("bench: CHANNEL_STATE_TEST_PG_URL not set, claims.contended_pg skipped")
    return rows
  }
  console.error("bench: contended claims, 3 processes on one PostgreSQL database …")
  const databases = await Promise.all(CONTENDERS.map((c) => freshPgDatabase(baseUrl, `claims_${c}`)))
  try {
    const urls = {} as Record<Contender, string>
    CONTENDERS.forEach((c, i) => {
      urls[c] = databases[i]!.url
    })
    for (const c of CONTENDERS) await createStoreSchemaPg(urls[c])
    rows.push(await contendedRow("pg", urls))
  } finally {
    for (const database of databases) await database.drop()
  }
  return rows
}

if (isMain(import.meta.url)) {
  if (process.argv[2] === "--claims-child") {
    const [contender, backend, location] = process.argv.slice(3) as [Contender, Backend, string]
    runChild(() => claimChild(contender, backend, location))
  } else await runAlone(claimsBench)
}
