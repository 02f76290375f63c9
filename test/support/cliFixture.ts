/**
 * State databases for the CLI tests, written through the library (the real store, with its
 * migrations and file modes): two owners, two namespaces, live and expired rows, values with
 * non-ASCII text so byte counts differ from character counts.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Duration, Effect, Exit, Layer, Schema, Scope } from "effect"
import { KeyedStore, type NamespaceHandle } from "../../src/KeyedStore.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../../src/StateStoreError.js"
import { freshPgDatabase, pgClientLayer } from "./backends.js"

const Value = Schema.Struct({ text: Schema.String, n: Schema.Number })
type Value = typeof Value.Type

export interface FixtureRow {
  readonly owner: string
  readonly namespace: string
  readonly key: string
  readonly value: Value
  readonly expired: boolean
}

const rowsOf = (owner: string, namespace: string, live: number, expired: number): Array<FixtureRow> => [
  ...Array.from({ length: live }, (_, i) => ({
    owner,
    namespace,
    key: `${namespace}-live-${i}`,
    value: { text: `secret-${owner}-${namespace}-${i} café ✅`, n: i },
    expired: false
  })),
  ...Array.from({ length: expired }, (_, i) => ({
    owner,
    namespace,
    key: `${namespace}-old-${i}`,
    value: { text: `secret-${owner}-${namespace}-old-${i} ünïcödé`, n: 100 + i },
    expired: true
  }))
]

/** What every fixture database holds. */
export const fixtureRows: ReadonlyArray<FixtureRow> = [
  ...rowsOf("alpha", "threads", 3, 1),
  ...rowsOf("alpha", "buttons", 2, 2),
  ...rowsOf("beta", "threads", 2, 1)
]

/** The summary `inspect --json` should report for `rows`, sorted by owner then namespace. */
export const expectedSummary = (rows: ReadonlyArray<FixtureRow>) => {
  const groups = new Map<string, { owner: string; namespace: string; live: number; expired: number; bytes: number }>()
  for (const row of rows) {
    const id = `${row.owner}/${row.namespace}`
    const g = groups.get(id) ?? { owner: row.owner, namespace: row.namespace, live: 0, expired: 0, bytes: 0 }
    if (row.expired) g.expired++
    else g.live++
    g.bytes += Buffer.byteLength(JSON.stringify(row.value), "utf8")
    groups.set(id, g)
  }
  return [...groups.values()].sort((a, b) => (a.owner === b.owner ? (a.namespace < b.namespace ? -1 : 1) : a.owner < b.owner ? -1 : 1))
}

/** Settings that keep the background sweeper from deleting the fixture's expired rows. */
const noSweep = { sweepInterval: Duration.days(1) }

/** Writes the fixture rows through the store `layer`. */
export const populate = (layer: Layer.Layer<KeyedStore, StateStoreError>, rows: ReadonlyArray<FixtureRow> = fixtureRows): Promise<void> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const store = yield* KeyedStore
      const now = Date.now()
      const handles = new Map<string, NamespaceHandle<Value>>()
      for (const [i, row] of rows.entries()) {
        const id = `${row.owner}/${row.namespace}`
        let handle = handles.get(id)
        if (handle === undefined) {
          handle = yield* store.open({ owner: row.owner, namespace: row.namespace, schema: Value, maxEntries: 1000 })
          handles.set(id, handle)
        }
        yield* handle.register(
          row.key,
          row.value,
          row.expired ? { createdAt: now - 7_200_000 + i, expiresAt: now - 3_600_000 } : { createdAt: now - 60_000 + i, expiresAt: now + 3_600_000 }
        )
      }
    }).pipe(Effect.provide(layer))
  )

/** A fresh temp directory (0700) per test; all removed by {@link removeTempDirs}. */
const dirs: Array<string> = []
export const freshDir = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-cli-"))
  dirs.push(dir)
  return dir
}
export const removeTempDirs = (): void => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/** A SQLite state file holding the fixture, in a fresh directory. */
export const sqliteFixture = async (rows: ReadonlyArray<FixtureRow> = fixtureRows): Promise<string> => {
  const file = path.join(freshDir(), "state", "channel-state.sqlite")
  await populate(SqliteStore.layer({ filename: file, ...noSweep }), rows)
  return file
}

/** Runs raw SQL on a SQLite file (e.g. to stamp a future schema version). */
export const sqliteExec = (file: string, statement: (sql: SqlClient) => Effect.Effect<unknown, unknown>): Promise<void> =>
  Effect.runPromise(
    Effect.flatMap(SqlClient, statement).pipe(
      Effect.provide(SqliteClient.layer({ filename: file }).pipe(Layer.provide(Reactivity.layer))),
      Effect.orDie,
      Effect.asVoid
    )
  )

/** Resources (PostgreSQL databases) kept until {@link closeResources}. */
const resources = Effect.runSync(Scope.make())
export const closeResources = (): Promise<void> => Effect.runPromise(Scope.close(resources, Exit.void))

/** A fresh PostgreSQL database holding the fixture (dropped by {@link closeResources}); its URL. */
export const pgFixture = async (baseUrl: string, rows: ReadonlyArray<FixtureRow> = fixtureRows): Promise<string> => {
  const { url } = await Effect.runPromise(Scope.extend(freshPgDatabase(baseUrl), resources))
  if (rows.length > 0) await populate(PgStore.layer({ url, ...noSweep }), rows)
  return url
}

/** Runs raw SQL on a PostgreSQL database. */
export const pgExec = (url: string, statement: (sql: SqlClient) => Effect.Effect<unknown, unknown>): Promise<void> =>
  Effect.runPromise(Effect.flatMap(SqlClient, statement).pipe(Effect.provide(pgClientLayer(url)), Effect.orDie, Effect.asVoid))
