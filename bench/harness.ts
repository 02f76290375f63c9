/**
 * Shared benchmark helpers: timing, the result row, the table, and bench/results.json.
 *
 * Every figure is a time per operation in nanoseconds (lower is better): the median of
 * several timed rounds after warmup rounds. `ours` and `baseline` are measured in the same
 * run, their rounds interleaved, so drift (CPU frequency, GC, page cache) hits both alike.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import Database from "better-sqlite3"
import { Effect } from "effect"
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

/** Runs `n` operations of round `round`; may be sync or async. */
export type Work = (round: number, n: number) => void | Promise<void>

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
  await work(round, n)
  return Number(process.hrtime.bigint() - start)
}

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
 * and returns each one's median time per operation (ns), keyed like `contenders`.
 */
export const timeInterleaved = async <K extends string>(
  contenders: Readonly<Record<K, Work>>,
  options: TimingOptions,
  round: RoundOptions = {}
): Promise<Record<K, number>> => {
  const names = Object.keys(contenders) as Array<K>
  const samples = new Map<K, Array<number>>(names.map((name) => [name, []]))
  const ops = options.n * (options.perOp ?? 1)
  for (let r = 0; r < options.warmup + options.rounds; r++) {
    await round.setup?.(r, options.n)
    for (let k = 0; k < names.length; k++) {
      const name = names[round.rotate ? (r + k) % names.length : k]!
      const elapsed = await timeRound(contenders[name], r, options.n)
      if (r >= options.warmup) samples.get(name)!.push(elapsed / ops)
    }
  }
  const result = {} as Record<K, number>
  for (const name of names) result[name] = median(samples.get(name)!)
  return result
}

/**
 * Opens `filename` with raw better-sqlite3, on a file made the way the store makes it: the
 * store opens it once first (directory `0700`, file `0600`, WAL, its migrations: the same
 * table and indexes) and closes it; the raw connection then sets `synchronous = NORMAL`, as
 * the store's connection does.
 */
export const openRawStoreFile = async (filename: string): Promise<Database.Database> => {
  await Effect.runPromise(Effect.scoped(Effect.asVoid(SqliteStore.make({ filename }))))
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  return db
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
