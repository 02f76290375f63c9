/**
 * Shared benchmark helpers: timing, the result row, the table, and bench/results.json.
 *
 * Every figure is a time per operation in nanoseconds (lower is better): the median of
 * several timed rounds after warmup rounds. `ours` and `baseline` are measured in the same
 * run, their rounds interleaved, so drift (CPU frequency, GC, page cache) hits both alike.
 * A round may time itself ({@link timed}): work done in child processes reports their own
 * clocks, a loop-delay round its worst delay.
 *
 * Also here: the store's files and PostgreSQL databases made the way the store makes them,
 * a problem-line logger, and {@link runAlone} for running one module by itself. Child
 * processes: ./children.ts; raw `pg`: ./rawPg.ts; attribution: ./profile.ts.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import Database from "better-sqlite3"
import { Effect, HashMap, Layer, Logger, Redacted } from "effect"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"

/** One benchmark result. */
export interface Row {
  readonly name: string
  /** What one operation is (e.g. "ns/op", "ns/row"). */
  readonly unit: string
  /** Our time per operation. */
  readonly ours: number
  /** The baseline's time per operation. */
  readonly baseline: number
  /** ours / baseline: lower is better. */
  readonly ratio: number
  /** The most `ratio` may be, or `null` when the row is only reported. */
  readonly target: number | null
  /** What the baseline is, or anything a reader needs to read the figure right. */
  readonly note?: string
}

const TIMED: unique symbol = Symbol("bench/Timed")

/**
 * What a self-timed round measured: its own elapsed time in ns, used instead of the wall
 * time around the call (work that times itself, e.g. inside child processes).
 */
export interface Timed {
  readonly [TIMED]: true
  readonly elapsedNs: number
}

/** Marks a round's result as self-timed (see {@link Timed}). */
export const timed = (elapsedNs: number): Timed => ({ [TIMED]: true, elapsedNs })

const isTimed = (value: unknown): value is Timed => typeof value === "object" && value !== null && TIMED in value

/**
 * Runs `n` operations of round `round`; may be sync or async. A round whose work returns
 * (or resolves to) a {@link Timed} is self-timed: its `elapsedNs` is the round's time; any
 * other result is ignored.
 */
export type Work = (round: number, n: number) => unknown

export interface TimingOptions {
  /** Operations per round. */
  readonly n: number
  /** Timed rounds (the median is kept). */
  readonly rounds: number
  /** Untimed rounds first. */
  readonly warmup: number
  /** Operations counted per call of `n` (e.g. rows per batch); default 1. */
  readonly perOp?: number
}

/** The median of `values`. */
export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const timeRound = async (work: Work, round: number, n: number): Promise<number> => {
  const start = process.hrtime.bigint()
  const result = await work(round, n)
  const wall = Number(process.hrtime.bigint() - start)
  return isTimed(result) ? result.elapsedNs : wall
}

/** Throws: a benchmark whose work went wrong must not report a figure. */
export const fail = (what: string): never => {
  throw new Error(`bench sanity check failed: ${what}`)
}

/** Resolves after `ms` on a timer. */
export const sleep = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Median time per operation (ns) of `work`. Round numbers run 0, 1, 2, … across warmup and
 * timed rounds, so `work` can pick fresh keys per round.
 */
export const timePerOp = async (work: Work, options: TimingOptions): Promise<number> => {
  const perRound: Array<number> = []
  const ops = options.n * (options.perOp ?? 1)
  for (let round = 0; round < options.warmup + options.rounds; round++) {
    const elapsed = await timeRound(work, round, options.n)
    if (round >= options.warmup) perRound.push(elapsed / ops)
  }
  return median(perRound)
}

/** What `timeInterleaved` does around the timed work of each round. */
export interface RoundOptions {
  /**
   * Untimed work first in every round (building fresh runtimes, waiting for a flusher);
   * called with the round number and `n`.
   */
  readonly setup?: Work
  /**
   * Rotates the contenders' order by one each round, so none always runs first (after
   * `setup`, paying for its garbage or a cold CPU). Default: the order of `contenders`.
   */
  readonly rotate?: boolean
}

/**
 * Times several contenders with interleaved rounds (round r of each, then round r + 1 …)
 * and returns each one's time per operation (ns) in every timed round, keyed like
 * `contenders` (index i of every contender is the same round).
 */
export const sampleInterleaved = async <K extends string>(
  contenders: Readonly<Record<K, Work>>,
  options: TimingOptions,
  round: RoundOptions = {}
): Promise<Record<K, Array<number>>> => {
  const names = Object.keys(contenders) as Array<K>
  const samples = {} as Record<K, Array<number>>
  for (const name of names) samples[name] = []
  const ops = options.n * (options.perOp ?? 1)
  for (let r = 0; r < options.warmup + options.rounds; r++) {
    await round.setup?.(r, options.n)
    for (let k = 0; k < names.length; k++) {
      const name = names[round.rotate ? (r + k) % names.length : k]!
      const elapsed = await timeRound(contenders[name], r, options.n)
      if (r >= options.warmup) samples[name].push(elapsed / ops)
    }
  }
  return samples
}

/**
 * Times several contenders with interleaved rounds (see {@link sampleInterleaved}) and
 * returns each one's median time per operation (ns), keyed like `contenders`.
 */
export const timeInterleaved = async <K extends string>(
  contenders: Readonly<Record<K, Work>>,
  options: TimingOptions,
  round: RoundOptions = {}
): Promise<Record<K, number>> => {
  const samples = await sampleInterleaved(contenders, options, round)
  const result = {} as Record<K, number>
  for (const name of Object.keys(samples) as Array<K>) result[name] = median(samples[name])
  return result
}

/** Creates `filename` the way the store makes it (directory `0700`, file `0600`, WAL, its migrations), then closes it. */
export const createStoreFile = (filename: string): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.asVoid(SqliteStore.make({ filename }))))

/** Creates the store's schema (its migrations) in the PostgreSQL database at `url`, then disconnects. */
export const createStoreSchemaPg = (url: string): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.asVoid(PgStore.make({ url }))))

/** CHANNEL_STATE_TEST_PG_URL, when set: the PostgreSQL server the PostgreSQL rows run on. */
export const pgBaseUrl = (): string | undefined => process.env.CHANNEL_STATE_TEST_PG_URL || undefined

/** Runs one statement on the PostgreSQL database at `url` (one connection, closed after). */
export const adminSql = (url: string, statement: string): Promise<unknown> =>
  Effect.runPromise(
    Effect.flatMap(SqlClient, (sql) => sql.unsafe(statement)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 }).pipe(Layer.provide(Reactivity.layer)))
    )
  )

/** A database of the bench's own on the PostgreSQL server, and how to drop it. */
export interface BenchPgDatabase {
  readonly url: string
  readonly drop: () => Promise<void>
}

/** Creates an empty database `cs_bench_<pid>_<tag>` on the server of `baseUrl` (dropping a leftover one first). */
export const freshPgDatabase = async (baseUrl: string, tag: string): Promise<BenchPgDatabase> => {
  const name = `cs_bench_${process.pid}_${tag}`
  const drop = async () => void (await adminSql(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  await drop()
  await adminSql(baseUrl, `CREATE DATABASE ${name}`)
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  return { url: url.toString(), drop }
}

/**
 * Opens `filename` with raw better-sqlite3, on a file made the way the store makes it: the
 * store opens it once first (directory `0700`, file `0600`, WAL, its migrations: the same
 * table and indexes) and closes it; the raw connection then sets `synchronous = NORMAL`, as
 * the store's connection does.
 */
export const openRawStoreFile = async (filename: string): Promise<Database.Database> => {
  await createStoreFile(filename)
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  return db
}

/**
 * A logger that keeps the runtime's warning and error lines (prints nothing): provide
 * `layer` to a runtime's layer, read `lines` after.
 */
export const captureProblems = () => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    if (logLevel.label !== "WARN" && logLevel.label !== "ERROR" && logLevel.label !== "FATAL") return
    const parts = Array.isArray(message) ? message : [message]
    const notes = JSON.stringify(Object.fromEntries(HashMap.toEntries(annotations)))
    lines.push(`${logLevel.label} ${parts.map(String).join(" ")} ${notes}`.slice(0, 500))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** Builds a row, computing the ratio. */
export const row = (name: string, unit: string, ours: number, baseline: number, target: number | null, note?: string): Row => ({
  name,
  unit,
  ours: Math.round(ours),
  baseline: Math.round(baseline),
  ratio: Math.round((ours / baseline) * 100) / 100,
  target,
  ...(note === undefined ? {} : { note })
})

/** Whether a row misses its target. */
export const missed = (r: Row): boolean => r.target !== null && r.ratio > r.target

const formatNs = (ns: number): string =>
  ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e4 ? `${(ns / 1e3).toFixed(1)} µs` : `${Math.round(ns)} ns`

/** Prints the rows as an aligned table, then the notes. */
export const printTable = (rows: ReadonlyArray<Row>): void => {
  const header = ["name", "unit", "ours", "baseline", "ratio", "target", ""]
  const lines = rows.map((r) => [
    r.name,
    r.unit,
    formatNs(r.ours),
    formatNs(r.baseline),
    r.ratio.toFixed(2),
    r.target === null ? "-" : `≤ ${r.target.toFixed(2)}`,
    missed(r) ? "MISSED" : r.target === null ? "" : "ok"
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const format = (cells: ReadonlyArray<string>) =>
    cells.map((cell, i) => (i >= 2 && i <= 5 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join("  ").trimEnd()
  console.log(format(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const line of lines) console.log(format(line))
  const notes = rows.filter((r) => r.note !== undefined)
  if (notes.length > 0) {
    console.log("")
    for (const r of notes) console.log(`${r.name}: ${r.note}`)
  }
}

/** bench/results.json, next to this file. */
export const resultsFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "results.json")

/**
 * Merges `rows` into the results file by name: a row replaces the stored row of the same
 * name, other stored rows are kept (new names are appended).
 */
export const mergeResults = (rows: ReadonlyArray<Row>, file: string = resultsFile): ReadonlyArray<Row> => {
  let stored: Array<Row> = []
  if (fs.existsSync(file)) {
    const parsed: unknown = JSON.parse(fs.readFileSync(file, "utf8"))
    if (Array.isArray(parsed)) stored = parsed as Array<Row>
  }
  const fresh = new Map(rows.map((r) => [r.name, r]))
  const merged = stored.map((r) => fresh.get(r.name) ?? r)
  const storedNames = new Set(stored.map((r) => r.name))
  for (const r of rows) if (!storedNames.has(r.name)) merged.push(r)
  fs.writeFileSync(file, `${JSON.stringify(merged, null, 2)}\n`)
  return merged
}

/**
 * Runs one benchmark module on its own (`node --import tsx bench/<module>.ts`): prints its
 * table, merges its rows into the results file, and sets a non-zero exit code when a row
 * misses its target — what `npm run bench` does for all of them.
 */
export const runAlone = async (bench: () => Promise<ReadonlyArray<Row>>): Promise<void> => {
  const rows = await bench()
  console.log("")
  printTable(rows)
  mergeResults(rows)
  if (rows.some(missed)) process.exitCode = 1
}
