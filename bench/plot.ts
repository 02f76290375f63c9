/**
 * Draws `bench/results.svg` from the rows of a run: for every row, ours and its baseline (raw
 * driver or peer, as the row's name says) as two bars on one logarithmic time axis, so an
 * operation of 1 µs and one of 100 ms read on the same page. Plain SVG, no dependency.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Row } from "./harness.js"

export const plotFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "results.svg")

const ROW_HEIGHT = 26
const LABEL_WIDTH = 330
const PLOT_WIDTH = 520
const TOP = 40
const escapeXml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

const formatNs = (ns: number): string =>
  ns >= 1e9 ? `${(ns / 1e9).toFixed(2)} s` : ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(1)} µs` : `${Math.round(ns)} ns`

/** What a row's baseline is, for the legend: a peer named in the row, else the raw driver or the row's own baseline. */
const baselineOf = (name: string): string => {
  if (name.includes("keyv")) return "Keyv"
  if (name.includes("lru_cache")) return "lru-cache"
  if (name.includes("raw")) return "raw driver"
  return "baseline"
}

/** Writes the plot of `rows` (time rows only: ns/op, ns/row) to `file`. */
export const writePlot = (rows: ReadonlyArray<Row>, file: string = plotFile): void => {
  const timed = rows.filter((r) => (r.unit === "ns/op" || r.unit === "ns/row") && r.ours > 0 && r.baseline > 0)
  if (timed.length === 0) return
  const lowest = Math.min(...timed.flatMap((r) => [r.ours, r.baseline]))
  const highest = Math.max(...timed.flatMap((r) => [r.ours, r.baseline]))
  const from = Math.floor(Math.log10(lowest))
  const to = Math.ceil(Math.log10(highest))
  const x = (ns: number) => LABEL_WIDTH + ((Math.log10(ns) - from) / (to - from)) * PLOT_WIDTH
  const height = TOP + timed.length * ROW_HEIGHT + 40
  const parts: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LABEL_WIDTH + PLOT_WIDTH + 150}" height="${height}" font-family="sans-serif" font-size="11" role="img">`,
    "<title>channel-state benchmarks: time per operation, ours against its raw or peer baseline</title>",
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="16" font-size="13" font-weight="bold">channel-state (blue) vs its baseline (grey: raw driver or a peer) — time per operation, log scale</text>`
  ]
  for (let decade = from; decade <= to; decade++) {
    const gx = x(10 ** decade)
    parts.push(`<line x1="${gx}" y1="${TOP - 6}" x2="${gx}" y2="${height - 30}" stroke="#ddd"/>`, `<text x="${gx}" y="${height - 16}" text-anchor="middle" fill="#666">${formatNs(10 ** decade)}</text>`)
  }
  timed.forEach((r, i) => {
    const y = TOP + i * ROW_HEIGHT
    const missed = r.target !== null && r.ratio > r.target
    parts.push(
      `<text x="${LABEL_WIDTH - 6}" y="${y + 12}" text-anchor="end">${escapeXml(r.name)}</text>`,
      `<rect x="${LABEL_WIDTH}" y="${y + 1}" width="${Math.max(1, x(r.ours) - LABEL_WIDTH)}" height="9" fill="#2b6cb0"/>`,
      `<rect x="${LABEL_WIDTH}" y="${y + 11}" width="${Math.max(1, x(r.baseline) - LABEL_WIDTH)}" height="9" fill="#a0aec0"/>`,
      `<text x="${LABEL_WIDTH + PLOT_WIDTH + 6}" y="${y + 14}" fill="${missed ? "#c53030" : "#2f855a"}">${r.ratio}× ${escapeXml(baselineOf(r.name))}${r.target === null ? "" : ` (≤ ${r.target})`}</text>`
    )
  })
  parts.push("</svg>")
  fs.writeFileSync(file, `${parts.join("\n")}\n`)
}
