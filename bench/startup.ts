/**
 * Start-up, as a user's process pays it: from spawning `node` to its exit, everything
 * included (Node's own start, loading the modules, opening the database).
 *
 * - `startup.cli_help_vs_node`: `channel-state --help` (the built `bin`) vs `node -e 0`;
 * - `startup.first_lookup_vs_raw_sqlite`: a script that imports the built package, opens the
 *   SQLite store (`SqliteStore.layer`), opens a namespace and answers one `lookup` of a row
 *   that is there, vs a script that opens the same file with better-sqlite3, prepares the
 *   same select and parses the row.
 *
 * The scripts import `effect` and better-sqlite3 from this checkout, and the package from its
 * built `dist/` (what an installed package runs: `npm ci` builds it), one
 * child at a time, ours and the baseline alternating, one warmup pair first; the figure is the
 * median wall time. Each lookup child's answer is checked.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { isMain } from "./children.js"
import { fail, median, type Row, row, runAlone } from "./harness.js"

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..")
const ROUNDS = 7

/** Wall time of one child, in ns; its stdout checked by `check`. */
const timeChild = (args: ReadonlyArray<string>, check: (stdout: string) => boolean): number => {
  const start = process.hrtime.bigint()
  const child = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8" })
  const elapsed = Number(process.hrtime.bigint() - start)
  if (child.status !== 0 || !check(child.stdout)) fail(`child ${args.join(" ")} exited ${child.status}: ${child.stdout}${child.stderr}`)
  return elapsed
}

/** Medians of `ours` and `baseline`, alternating (order rotated), after one warmup pair. */
const alternate = (ours: () => number, baseline: () => number) => {
  const samples = { ours: [] as Array<number>, baseline: [] as Array<number> }
  for (let round = 0; round <= ROUNDS; round++) {
    let oursNs: number
    let baselineNs: number
    if (round % 2 === 0) {
      oursNs = ours()
      baselineNs = baseline()
    } else {
      baselineNs = baseline()
      oursNs = ours()
    }
    if (round === 0) continue
    samples.ours.push(oursNs)
    samples.baseline.push(baselineNs)
  }
  return { ours: median(samples.ours), baseline: median(samples.baseline) }
}

const Value = Schema.Struct({ repliedAt: Schema.Number })

export const startupBench = async (): Promise<ReadonlyArray<Row>> => {
  if (!fs.existsSync(path.join(ROOT, "dist", "index.js"))) fail("dist/ is not built: run `npm run build` first")
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-startup-"))
  try {
    const file = path.join(dir, "state.sqlite")
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const store = yield* KeyedStore
          const h = yield* store.open({ owner: "bench", namespace: "startup", schema: Value, maxEntries: 1000 })
          yield* h.register("probe", { repliedAt: 42 })
        }).pipe(Effect.provide(SqliteStore.layer({ filename: file })))
      )
    )
    const oursScript = path.join(dir, "ours.mjs")
    const rawScript = path.join(dir, "raw.mjs")
    fs.writeFileSync(
      oursScript,
      `import { Effect, Schema } from ${JSON.stringify(import.meta.resolve("effect"))}
import { KeyedStore, SqliteStore } from ${JSON.stringify(path.join(ROOT, "dist", "index.js"))}
const found = await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const store = yield* KeyedStore
  const h = yield* store.open({ owner: "bench", namespace: "startup", schema: Schema.Struct({ repliedAt: Schema.Number }), maxEntries: 1000 })
  return yield* h.lookup("probe")
}).pipe(Effect.provide(SqliteStore.layer({ filename: process.argv[2] })))))
console.log(JSON.stringify(found._tag === "Some" ? found.value : null))
`
    )
    fs.writeFileSync(
      rawScript,
      `import Database from ${JSON.stringify(import.meta.resolve("better-sqlite3"))}
const db = new Database(process.argv[2])
db.pragma("journal_mode = WAL")
const row = db.prepare("SELECT value_json FROM channel_state_entries WHERE owner = ? AND namespace = ? AND entry_key = ? AND (expires_at IS NULL OR expires_at > ?)").get("bench", "startup", "probe", Date.now())
console.log(JSON.stringify(row === undefined ? null : JSON.parse(row.value_json)))
db.close()
`
    )
    const answered = (stdout: string) => stdout.trim() === JSON.stringify({ repliedAt: 42 })
    const lookup = alternate(
      () => timeChild([oursScript, file], answered),
      () => timeChild([rawScript, file], answered)
    )
    const help = alternate(
      () => timeChild([path.join(ROOT, "bin", "channel-state.js"), "--help"], (out) => out.includes("Commands:")),
      () => timeChild(["-e", "0"], () => true)
    )
    return [
      row("startup.first_lookup_vs_raw_sqlite", "ns/op", lookup.ours, lookup.baseline, 2, "spawn → exit: import the built package, open the SQLite store and a namespace, one lookup; vs a better-sqlite3 script opening the file, preparing the select, parsing the row"),
      row("startup.cli_help_vs_node", "ns/op", help.ours, help.baseline, 2, "spawn → exit: `channel-state --help` (built bin) vs `node -e 0`")
    ]
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (isMain(import.meta.url)) await runAlone(startupBench)
