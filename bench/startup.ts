/**
 * Start-up, as a user's process pays it: from spawning `node` to its exit, everything
 * included (Node's own start, loading the modules, opening the database).
 *
 * - `startup.cli_help_vs_node`: `channel-state --help` (the built `bin`) vs `node -e 0`;
 * - `startup.first_lookup_vs_raw_sqlite`: a script that imports the built package (and
 *   effect module by module, as the package does), opens the SQLite store
 *   (`SqliteStore.layer`), opens a namespace and answers one `lookup` of a row that is there,
 *   vs a script that opens the same file with better-sqlite3, prepares the same select and
 *   parses the row.
 *
 * Attribution (reported, no target), from the same rounds as the lookup row:
 * - `startup.attr.effect_floor_vs_raw_sqlite`: what any Effect program answering that query
 *   pays — a script that imports only effect/Effect, effect/Schema, effect/Layer and the SQLite
 *   client (`@effect/sql-sqlite-node`), runs the same select and decodes the row with a Schema
 *   — vs the raw script: the part of the start-up this package cannot remove on Effect 3.x;
 * - `startup.attr.ours_vs_effect_floor`: the package's lookup script vs that floor: what the
 *   package adds (its modules, migrations check, namespace registration).
 *
 * The scripts import effect, its SQL packages and better-sqlite3 from this checkout, and the
 * package from its built `dist/` (what an installed package runs: `npm ci` builds it), one
 * child at a time, the contenders taking turns (the order rotated each round), one warmup
 * round first; the figure is the median wall time. Each lookup child's answer is checked.
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

/** The median wall time of each contender, taking turns (the order rotated each round), after one warmup round. */
const interleaved = <K extends string>(contenders: Record<K, () => number>): Record<K, number> => {
  const names = Object.keys(contenders) as Array<K>
  const samples = new Map<K, Array<number>>(names.map((name) => [name, []]))
  for (let round = 0; round <= ROUNDS; round++) {
    for (let turn = 0; turn < names.length; turn++) {
      const name = names[(round + turn) % names.length]!
      const ns = contenders[name]()
      if (round > 0) samples.get(name)!.push(ns)
    }
  }
  return Object.fromEntries(names.map((name) => [name, median(samples.get(name)!)])) as Record<K, number>
}

/** A module specifier a script in a temp directory can import: resolved from this checkout. */
const from = (specifier: string): string => JSON.stringify(import.meta.resolve(specifier))

/** The select the raw script and the floor script run (the store's lookup, on one key). */
const SELECT =
  "SELECT value_json FROM channel_state_entries WHERE owner = ? AND namespace = ? AND entry_key = ? AND (expires_at IS NULL OR expires_at > ?)"

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
    const floorScript = path.join(dir, "floor.mjs")
    const rawScript = path.join(dir, "raw.mjs")
    fs.writeFileSync(
      oursScript,
      `import * as Effect from ${from("effect/Effect")}
import * as Schema from ${from("effect/Schema")}
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
      floorScript,
      `import * as Effect from ${from("effect/Effect")}
import * as Layer from ${from("effect/Layer")}
import * as Schema from ${from("effect/Schema")}
import * as SqliteClient from ${from("@effect/sql-sqlite-node/SqliteClient")}
const decode = Schema.decodeUnknown(Schema.parseJson(Schema.Struct({ repliedAt: Schema.Number })))
const found = await Effect.runPromise(Effect.gen(function* () {
  const sql = yield* SqliteClient.SqliteClient
  const rows = yield* sql.unsafe(${JSON.stringify(SELECT)}, ["bench", "startup", "probe", Date.now()])
  return rows.length === 0 ? null : yield* decode(rows[0].value_json)
}).pipe(Effect.provide(Layer.orDie(SqliteClient.layer({ filename: process.argv[2] })))))
console.log(JSON.stringify(found))
`
    )
    fs.writeFileSync(
      rawScript,
      `import Database from ${from("better-sqlite3")}
const db = new Database(process.argv[2])
db.pragma("journal_mode = WAL")
const row = db.prepare(${JSON.stringify(SELECT)}).get("bench", "startup", "probe", Date.now())
console.log(JSON.stringify(row === undefined ? null : JSON.parse(row.value_json)))
db.close()
`
    )
    const answered = (stdout: string) => stdout.trim() === JSON.stringify({ repliedAt: 42 })
    const lookup = interleaved({
      ours: () => timeChild([oursScript, file], answered),
      floor: () => timeChild([floorScript, file], answered),
      raw: () => timeChild([rawScript, file], answered)
    })
    const help = interleaved({
      ours: () => timeChild([path.join(ROOT, "bin", "channel-state.js"), "--help"], (out) => out.includes("Commands:")),
      node: () => timeChild(["-e", "0"], () => true)
    })
    return [
      row("startup.first_lookup_vs_raw_sqlite", "ns/op", lookup.ours, lookup.raw, 2, "spawn → exit: import the built package (effect module by module), open the SQLite store and a namespace, one lookup; vs a better-sqlite3 script opening the file, preparing the select, parsing the row"),
      row("startup.attr.effect_floor_vs_raw_sqlite", "ns/op", lookup.floor, lookup.raw, null, "attribution: spawn → exit of a script importing only effect/Effect, effect/Schema, effect/Layer and @effect/sql-sqlite-node, answering the same select (row decoded by a Schema); vs the better-sqlite3 script"),
      row("startup.attr.ours_vs_effect_floor", "ns/op", lookup.ours, lookup.floor, null, "attribution: the package's first-lookup script vs that Effect floor: what the package adds"),
      row("startup.cli_help_vs_node", "ns/op", help.ours, help.node, 2, "spawn → exit: `channel-state --help` (built bin) vs `node -e 0`")
    ]
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (isMain(import.meta.url)) await runAlone(startupBench)
