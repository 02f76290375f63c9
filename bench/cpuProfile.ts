/**
 * CPU profiles of a region of the bench process (V8's sampling profiler through
 * `node:inspector`), and a plain-text summary: where the region's time went by area (our
 * src files, Effect, @effect/sql, SQLite native calls, GC, idle), the top functions by self
 * time, and our functions by inclusive time. Attribution only; no row comes from here.
 */
import * as fs from "node:fs"
import { Session } from "node:inspector/promises"
import { findSourceMap } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { REPO_ROOT } from "./children.js"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

/** A `.cpuprofile` (the DevTools format). */
export interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** Profiles `region` (sampling every `intervalUs` µs); writes the profile to `file` when given. */
export const profileRegion = async <A>(
  region: () => Promise<A>,
  options: { readonly intervalUs?: number; readonly file?: string } = {}
): Promise<{ readonly result: A; readonly profile: CpuProfile }> => {
  const session = new Session()
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: options.intervalUs ?? 100 })
  await session.post("Profiler.start")
  const outcome = await region().then(
    (result) => ({ ok: true as const, result }),
    (error: unknown) => ({ ok: false as const, error })
  )
  const { profile } = (await session.post("Profiler.stop")) as unknown as { profile: CpuProfile }
  session.disconnect()
  if (options.file !== undefined) fs.writeFileSync(options.file, JSON.stringify(profile))
  if (!outcome.ok) throw outcome.error
  return { result: outcome.result, profile }
}

/** Where a frame's code lives, for the by-area table. */
export const areaOf = (frame: CallFrame): string => {
  const { url, functionName } = frame
  if (url === "") {
    if (functionName.startsWith("(")) return functionName
    return `native ${functionName}()`
  }
  const file = url.startsWith("file://") ? url.slice("file://".length) : url
  const inModules = file.lastIndexOf("/node_modules/")
  if (inModules >= 0) {
    const rest = file.slice(inModules + "/node_modules/".length).split("/")
    const pkg = rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!
    if (pkg === "effect") return `effect/${rest.at(-1)!.replace(/\.js$/, "")}`
    return pkg
  }
  if (file.startsWith("node:")) return "node internals"
  if (file.startsWith(REPO_ROOT)) return path.relative(REPO_ROOT, file)
  return path.basename(file)
}

const sourceLines = new Map<string, ReadonlyArray<string>>()
const located = new Map<string, string>()

/**
 * A frame as `name file:line`, the line in the original TypeScript: tsx serves our modules
 * compiled to one line with `__name` wrappers (so V8 names most functions "(anonymous)"), and
 * registers their source maps, which this process can read back. An anonymous function is
 * shown by the start of its original line.
 */
const frameName = (frame: CallFrame): string => {
  const id = `${frame.functionName} ${frame.url}:${frame.lineNumber}:${frame.columnNumber}`
  const cached = located.get(id)
  if (cached !== undefined) return cached
  let name = `${frame.functionName || "(anonymous)"} ${areaOf(frame)}:${frame.lineNumber + 1}`
  const map = frame.url.startsWith("file://") && !frame.url.includes("/node_modules/") ? findSourceMap(frame.url) : undefined
  const entry = map?.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string; originalLine?: number } | undefined
  if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
    const file = fileURLToPath(entry.originalSource)
    let lines = sourceLines.get(file)
    if (lines === undefined) {
      lines = fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n") : []
      sourceLines.set(file, lines)
    }
    const text = (lines[entry.originalLine] ?? "").trim().slice(0, 70)
    name = `${path.relative(REPO_ROOT, file)}:${entry.originalLine + 1} ${frame.functionName ? `${frame.functionName} ` : ""}| ${text}`
  }
  located.set(id, name)
  return name
}

export interface ProfileSummary {
  /** Sampled time in ms (idle excluded). */
  readonly busyMs: number
  readonly idleMs: number
  readonly byArea: ReadonlyArray<readonly [string, number]>
  /** Areas grouped coarser: our code, effect, @effect/sql*, SQLite native, GC, other. */
  readonly byGroup: ReadonlyArray<readonly [string, number]>
  readonly topSelf: ReadonlyArray<readonly [string, number]>
  /** Frames of our src/ (and @effect/sql) by inclusive time. */
  readonly topInclusive: ReadonlyArray<readonly [string, number]>
}

const groupOf = (area: string): string => {
  if (area.startsWith("src/")) return "ours (src/)"
  if (area.startsWith("effect/")) return "effect (runtime, Schema, …)"
  if (area.startsWith("@effect/")) return area
  if (area.startsWith("native ")) return "native (SQLite via better-sqlite3, crypto, …)"
  if (area === "better-sqlite3") return "better-sqlite3 (JS)"
  if (area === "(garbage collector)") return area
  if (area.startsWith("bench/")) return "bench driver"
  return "other (node internals, tsx, program)"
}

/** Self and inclusive times of one or more profiles (ms, summed), busiest first. */
export const summarize = (profiles: CpuProfile | ReadonlyArray<CpuProfile>, top = 25): ProfileSummary => {
  const inclusive = new Map<string, number>()
  const byArea = new Map<string, number>()
  const byGroup = new Map<string, number>()
  const bySelfName = new Map<string, number>()
  let idleMs = 0
  let busyMs = 0
  const all: ReadonlyArray<CpuProfile> = "nodes" in profiles ? [profiles] : profiles
  for (const profile of all) {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]))
    const parent = new Map<number, number>()
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
    const self = new Map<number, number>()
    const deltas = profile.timeDeltas
    for (let i = 0; i < profile.samples.length; i++) {
      const dt = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000
      const id = profile.samples[i]!
      self.set(id, (self.get(id) ?? 0) + dt)
      if (byId.get(id)!.callFrame.functionName === "(idle)") continue
      const seen = new Set<string>()
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at)!.callFrame
        const area = areaOf(frame)
        if (!area.startsWith("src/") && !area.startsWith("@effect/sql")) continue
        const name = frameName(frame)
        if (seen.has(name)) continue
        seen.add(name)
        inclusive.set(name, (inclusive.get(name) ?? 0) + dt)
      }
    }
    for (const [id, ms] of self) {
      const frame = byId.get(id)!.callFrame
      if (frame.functionName === "(idle)") {
        idleMs += ms
        continue
      }
      busyMs += ms
      const area = areaOf(frame)
      byArea.set(area, (byArea.get(area) ?? 0) + ms)
      byGroup.set(groupOf(area), (byGroup.get(groupOf(area)) ?? 0) + ms)
      const name = frameName(frame)
      bySelfName.set(name, (bySelfName.get(name) ?? 0) + ms)
    }
  }
  const sorted = (m: Map<string, number>, n = top) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
  return { busyMs, idleMs, byArea: sorted(byArea), byGroup: sorted(byGroup, 20), topSelf: sorted(bySelfName), topInclusive: sorted(inclusive) }
}

/** The summary as text; `per` divides every figure (e.g. records, to print µs per record with `unit`). */
export const formatSummary = (s: ProfileSummary, per = 1, unit = "ms"): string => {
  const scale = unit === "µs" ? 1000 / per : 1 / per
  const fmt = (ms: number) => `${(ms * scale).toFixed(unit === "µs" ? 2 : 1).padStart(9)} ${unit}  ${((100 * ms) / s.busyMs).toFixed(1).padStart(5)}%`
  const table = (title: string, rows: ReadonlyArray<readonly [string, number]>) => [`  ${title}`, ...rows.map(([name, ms]) => `    ${fmt(ms)}  ${name}`)].join("\n")
  return [
    `  busy ${(s.busyMs * scale).toFixed(2)} ${unit}, idle ${(s.idleMs * scale).toFixed(2)} ${unit} (sampled)`,
    table("by group (self time)", s.byGroup),
    table("by area (self time)", s.byArea),
    table("top functions (self time)", s.topSelf),
    table("src/ and @effect/sql frames (inclusive time)", s.topInclusive)
  ].join("\n")
}
