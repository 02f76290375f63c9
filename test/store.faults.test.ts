/**
 * More real faults, through the plugin runtime's persistent caches: a full database, the file
 * replaced by garbage bytes while running, and a database stamped by a newer channel-state.
 * For each: the sync path never throws, async reads answer from memory, the failure is logged
 * (a bounded number of lines), nothing already stored is lost or overwritten, and the mirror
 * recovers by itself once the fault is gone.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Layer, Logger } from "effect"
import { SlackThreadParticipation } from "../src/channels/SlackThreadParticipation.js"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { SCHEMA_VERSION } from "../src/layers/store/migrations.js"
import * as SqlStore from "../src/layers/store/SqlStore.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { tempDir } from "./support/backends.js"
import { eventually } from "./support/eventually.js"

const mirror = { flushInterval: "20 millis", backoffBase: "50 millis", backoffMax: "200 millis" } as const
const config = { plugins: { entries: { slack: { config: { experimentalPersistentState: true } } } } }

/** Collects WARN/ERROR lines (message and annotations, as text). */
const captureProblems = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message, annotations }) => {
    if (logLevel._tag === "Warning" || logLevel._tag === "Error") lines.push(`${String(message)} ${JSON.stringify([...annotations])}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** Records `count` threads tagged `tag`; answers how many the async check did not see. */
const traffic = (tag: string, count: number) =>
  Effect.gen(function* () {
    const slack = yield* SlackThreadParticipation
    let wrong = 0
    for (let i = 0; i < count; i++) {
      slack.record("T", "C", `${tag}.${i}`)
      if (!slack.has("T", "C", `${tag}.${i}`) || !(yield* slack.check("T", "C", `${tag}.${i}`))) wrong++
    }
    return wrong
  })

const storedKeys = (file: string) =>
  Effect.sync(() => {
    try {
      const db = new Database(file, { readonly: true, fileMustExist: true })
      try {
        return new Set((db.prepare("SELECT entry_key FROM channel_state_entries").all() as Array<{ entry_key: string }>).map((r) => r.entry_key))
      } finally {
        db.close()
      }
    } catch {
      return new Set<string>()
    }
  })
const keys = (tag: string, count: number) => Array.from({ length: count }, (_, i) => `T:C:${tag}.${i}`)
const missing = (want: ReadonlyArray<string>, have: ReadonlySet<string>) => want.filter((k) => !have.has(k))

describe("real faults through the persistent caches (SQLite)", () => {
  it.scopedLive("the database is full (PRAGMA max_page_count), then has room again: nothing stored is lost, queued writes land", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const file = path.join(dir, "full.sqlite")
      const problems = captureProblems()
      // The store over a client we hold, so the page limit applies to the store's own connection.
      const client = yield* SqliteClient.make({ filename: file }).pipe(Effect.provide(Reactivity.layer))
      const store = SqlStore.layer().pipe(Layer.provide(Layer.succeed(SqlClient, client)))
      yield* Layer.build(Slack.layerPersistent({ pluginId: "slack", mirror }).pipe(Layer.provide(store), Layer.provide(problems.layer))).pipe(
        Effect.flatMap((context) =>
          Effect.gen(function* () {
            expect(yield* traffic("before", 50)).toBe(0)
            const stored = yield* eventually(storedKeys(file), (have) => missing(keys("before", 50), have).length === 0)
            expect(missing(keys("before", 50), stored)).toEqual([])

            const [pages] = yield* client<{ page_count: number }>`PRAGMA page_count`
            yield* client.unsafe(`PRAGMA max_page_count = ${pages?.page_count ?? 1}`)
            expect(yield* traffic("full", 400)).toBe(0)
            yield* Effect.sleep("300 millis")
            expect(problems.lines.some((line) => line.includes("WriteFailed") || line.includes("full"))).toBe(true)
            expect(problems.lines.length).toBeLessThan(20)
            const during = yield* storedKeys(file)
            expect(missing(keys("before", 50), during)).toEqual([])

            yield* client.unsafe("PRAGMA max_page_count = 1073741823")
            const want = [...keys("before", 50), ...keys("full", 400)]
            const after = yield* eventually(storedKeys(file), (have) => missing(want, have).length === 0)
            expect(missing(want, after)).toEqual([])
          }).pipe(Effect.provide(context))
        )
      )
    })
  )

  it.scopedLive("the file is replaced by garbage bytes while running: never overwritten; served from memory; recovers once it is moved away", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const file = path.join(dir, "state", "state.sqlite")
      const problems = captureProblems()
      const context = yield* Layer.build(
        PluginRuntime.layer({ pluginId: "slack", config, store: { sqlitePath: file }, mirror }).pipe(Layer.provide(problems.layer))
      )
      yield* Effect.gen(function* () {
        expect(yield* traffic("before", 20)).toBe(0)
        yield* eventually(storedKeys(file), (have) => missing(keys("before", 20), have).length === 0)

        const garbage = Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7919) % 251))
        const replacement = `${file}.garbage`
        fs.writeFileSync(replacement, garbage)
        for (const sidecar of ["-wal", "-shm"]) fs.rmSync(`${file}${sidecar}`, { force: true })
        fs.renameSync(replacement, file)

        expect(yield* traffic("garbage", 50)).toBe(0)
        yield* Effect.sleep("300 millis")
        expect(fs.readFileSync(file).equals(garbage)).toBe(true)
        expect(problems.lines.some((line) => line.includes("not a SQLite database") || line.includes("NOTADB") || line.includes("not a database"))).toBe(true)
        expect(problems.lines.length).toBeLessThan(30)

        // The operator moves the garbage away; the store recreates the file and the queue drains.
        fs.renameSync(file, `${file}.bad`)
        const after = yield* eventually(storedKeys(file), (have) => missing(keys("garbage", 50), have).length === 0)
        expect(missing(keys("garbage", 50), after)).toEqual([])
        expect(fs.readFileSync(`${file}.bad`).equals(garbage)).toBe(true)
      }).pipe(Effect.provide(context))
    })
  )

  it.scopedLive("a database stamped by a newer channel-state: refused and untouched; the plugin serves from memory and says why", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const file = path.join(dir, "future.sqlite")
      // A database written by a newer version: our schema plus a newer stamp and a row.
      yield* Effect.scoped(
        Effect.provide(
          Effect.flatMap(SlackThreadParticipation, (slack) => Effect.sync(() => slack.record("T", "C", "old"))),
          PluginRuntime.layer({ pluginId: "slack", config, store: { sqlitePath: file } })
        )
      )
      const raw = new Database(file)
      raw.prepare("INSERT INTO channel_state_migrations (migration_id, name) VALUES (?, ?)").run(SCHEMA_VERSION + 1, "from_the_future")
      raw.pragma("wal_checkpoint(TRUNCATE)")
      raw.close()
      const before = fs.readFileSync(file)

      const problems = captureProblems()
      yield* Effect.scoped(
        Effect.gen(function* () {
          expect(yield* traffic("now", 30)).toBe(0)
          yield* Effect.sleep("200 millis")
        }).pipe(Effect.provide(PluginRuntime.layer({ pluginId: "slack", config, store: { sqlitePath: file }, mirror }).pipe(Layer.provide(problems.layer))))
      )
      expect(problems.lines.some((line) => line.includes("SchemaUnsupported") && line.includes(`schema version ${SCHEMA_VERSION + 1}`))).toBe(true)
      expect(problems.lines.length).toBeLessThan(20)
      expect(fs.readFileSync(file).equals(before)).toBe(true)
    })
  )
})
