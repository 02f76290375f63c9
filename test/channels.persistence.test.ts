/**
 * Every channel cache through the plugin runtime, on real SQLite files and a real
 * PostgreSQL database: opt-in off writes nothing, opt-in on survives restarts with the
 * original timestamps, read-your-writes before any flush, flush on shutdown, and one-shot
 * removals never resurrect.
 */
import * as fs from "node:fs"
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, type Layer, TestClock } from "effect"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type BackendFactory, sqlBackends, type TestDatabase } from "./support/backends.js"
import { type ChannelScenario, scenarios } from "./support/channelScenarios.js"
import { eventually } from "./support/eventually.js"

const configWith = (pluginId: string, flag: unknown) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: flag } } } } })

// TestClock drives these lifetimes, so PostgreSQL runs on the application's clock here.
const storeOf = (db: TestDatabase): PluginRuntime.StoreLocation =>
  db.backend === "pg" ? { pgUrl: db.location, clock: "application" } : { sqlitePath: db.location }

/** One "process lifetime": builds the plugin runtime's layer, runs `body`, disposes (flushing). */
const lifetime = <A, E>(db: TestDatabase, pluginId: string, flag: unknown, body: Effect.Effect<A, E, PluginRuntime.ChannelServices>) =>
  Effect.scoped(Effect.provide(body, PluginRuntime.layer({ pluginId, config: configWith(pluginId, flag), store: storeOf(db) })))

interface Row {
  readonly entry_key: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
}

/** The rows of a namespace as stored, read with plain SQL; `[]` when the table does not exist. */
const rawRows = (db: TestDatabase, namespace: string) =>
  Effect.provide(
    Effect.flatMap(SqlClient, (sql) =>
      sql<Row>`SELECT entry_key, created_at, expires_at FROM channel_state_entries WHERE namespace = ${namespace} ORDER BY entry_key`.pipe(
        Effect.map((rows) => rows.map((r) => ({ key: r.entry_key, createdAt: Number(r.created_at), expiresAt: Number(r.expires_at) }))),
        Effect.catchAll(() => Effect.succeed([]))
      )
    ),
    db.sql as Layer.Layer<SqlClient>
  )

const flushInterval = "100 millis"

const persistence = (backend: BackendFactory, scenario: ChannelScenario) =>
  describe(`${scenario.channel} on ${backend.name}`, () => {
    const plugin = scenario.channel
    /** One process lifetime of the plugin with persistence on. */
    const optedIn = <A, E>(db: TestDatabase, body: Effect.Effect<A, E, PluginRuntime.ChannelServices>) => lifetime(db, plugin, true, body)
    /** The scenario's rows as stored. */
    const stored = (db: TestDatabase) => rawRows(db, scenario.namespace)

    it.scoped("opt-in off (absent or false): nothing is opened, no file is created, no row is written", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        for (const flag of [undefined, false]) {
          yield* lifetime(
            db,
            plugin,
            flag,
            Effect.gen(function* () {
              for (let i = 0; i < 5; i++) yield* scenario.write(i)
              expect(yield* scenario.found(0)).toBe(true)
              yield* TestClock.adjust("1 second")
            })
          )
        }
        if (db.backend === "sqlite") expect(fs.existsSync(db.location as string)).toBe(false)
        expect(yield* stored(db)).toEqual([])
      })
    )

    it.scoped("opt-in on: found after a restart, backfilled into memory, timestamps unchanged", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* optedIn(
          db,
          Effect.gen(function* () {
            yield* scenario.write(0)
            yield* scenario.write(1)
          })
        )
        const before = yield* stored(db)
        expect(before).toHaveLength(2)
        yield* TestClock.adjust("10 minutes")
        yield* optedIn(
          db,
          Effect.gen(function* () {
            if (scenario.foundSync) expect(yield* scenario.foundSync(0)).toBe(false)
            expect(yield* scenario.found(0)).toBe(true)
            if (scenario.foundSync) expect(yield* scenario.foundSync(0)).toBe(true)
            expect(yield* scenario.found(1)).toBe(true)
            expect(yield* scenario.found(2)).toBe(false)
          })
        )
        // (A dedupe "check" is itself a claim, so it may add rows; the earlier ones must not change.)
        const after = yield* stored(db)
        expect(after.filter((row) => before.some((b) => b.key === row.key))).toEqual(before)
      })
    )

    it.scoped("a queued write is visible before any flush, and disposing at once still writes it", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* optedIn(
          db,
          Effect.gen(function* () {
            yield* scenario.write(0)
            expect(yield* scenario.found(0)).toBe(true)
            if (scenario.channel !== "bluebubbles" && scenario.channel !== "feishu") {
              // Claims are written at once; everything else waits for the flusher (TestClock never moved).
              expect(yield* stored(db)).toEqual([])
            }
          })
        )
        expect((yield* stored(db)).map((r) => r.key)).toHaveLength(1)
      })
    )

    if (scenario.remove) {
      const remove = scenario.remove
      it.scoped("removed (consumed / unregistered / released) entries never come back after a restart", () =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          yield* optedIn(
            db,
            Effect.gen(function* () {
              yield* scenario.write(0)
              yield* scenario.write(1)
              yield* TestClock.adjust(flushInterval)
              expect(yield* eventually(stored(db), (rows) => rows.length === 2)).toHaveLength(2)
              yield* remove(0)
              expect(yield* scenario.found(0)).toBe(false)
            })
          )
          yield* optedIn(
            db,
            Effect.gen(function* () {
              expect(yield* scenario.found(0)).toBe(false)
              expect(yield* scenario.found(1)).toBe(true)
            })
          )
          expect((yield* stored(db)).map((r) => r.key)).toHaveLength(1)
        })
      )
    }
  })

for (const backend of sqlBackends) for (const scenario of scenarios) persistence(backend, scenario)
