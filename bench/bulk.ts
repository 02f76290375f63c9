/**
 * The keyed store's many-key and compare-and-set members against their peers and the raw
 * driver, interleaved in one process:
 *
 * - `bulk.lookup_many_pg_vs_keyv`: `lookupMany` of 1 000 keys on PostgreSQL vs Keyv with
 *   @keyv/postgres `getMany` of the same 1 000 keys (configured as its README shows:
 *   `new Keyv(new KeyvPostgres(uri))`);
 * - `bulk.lookup_many_facade_pg_vs_keyv`: the same 1 000 keys through the OpenClaw-compatible
 *   facade (`createOpenClawState({ pgUrl })`, `openKeyedStore(…).lookupMany`) vs the same
 *   Keyv `getMany`;
 * - `bulk.lookup_many_pg_vs_raw` / `bulk.lookup_many_sqlite_vs_raw`: the same call vs the raw
 *   driver running the store's statement for the 1 000 keys (`pg`, named prepared: the keys
 *   as one JSON parameter joined on the primary key; better-sqlite3, prepared,
 *   `IN (SELECT value FROM json_each(?))`) and parsing each row;
 * - `cas.pg_vs_raw` / `cas.sqlite_vs_raw`: `observe` + `compareAndSet` (a `Set` of an existing
 *   row) vs the raw driver's read of the row and its conditional `UPDATE … WHERE value_json =
 *   … AND created_at = … AND expires_at IS NOT DISTINCT FROM … RETURNING`.
 *
 * Every contender reads the same 1 000 rows, and every answer is checked (all found, the
 * compare-and-set applied), so no contender can win by doing less.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import KeyvPostgres from "@keyv/postgres"
import type Database from "better-sqlite3"
import { Effect, Either, type Layer, ManagedRuntime, Option, Schema } from "effect"
import Keyv from "keyv"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import { createOpenClawState } from "../src/openclaw/index.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { isMain } from "./children.js"
import { createStoreSchemaPg, fail, freshPgDatabase, openRawStoreFile, pgBaseUrl, type Row, row, runAlone, timeInterleaved } from "./harness.js"
import { rawPgClient } from "./rawPg.js"

const KEYS = 1000
const OWNER = "bench"
const NAMESPACE = "bulk"
const Value = Schema.Struct({ repliedAt: Schema.Number })
type Value = typeof Value.Type
const keys = Array.from({ length: KEYS }, (_, i) => `thread-${String(i).padStart(5, "0")}`)
const LOOKUP_TIMING = { n: 1, rounds: 21, warmup: 3 }
const CAS_TIMING = { n: 200, rounds: 9, warmup: 2 }

// The statement the store runs: the keys as a derived table joined on the primary key.
const SELECT_MANY_PG = `SELECT entry_key, value_json, created_at, expires_at FROM (SELECT jsonb_array_elements_text($3::jsonb) AS wanted) AS wanted_keys
  JOIN channel_state_entries ON owner = $1 AND namespace = $2 AND entry_key = wanted_keys.wanted WHERE (expires_at IS NULL OR expires_at > $4)`
const SELECT_MANY_SQLITE = `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
  WHERE owner = ? AND namespace = ? AND entry_key IN (SELECT value FROM json_each(?)) AND (expires_at IS NULL OR expires_at > ?)`
const SELECT_ONE = (p: (i: number) => string) => `SELECT value_json, created_at, expires_at FROM channel_state_entries
  WHERE owner = ${p(1)} AND namespace = ${p(2)} AND entry_key = ${p(3)} AND (expires_at IS NULL OR expires_at > ${p(4)})`
const UPDATE_SEEN = (p: (i: number) => string) => `UPDATE channel_state_entries SET value_json = ${p(1)}, created_at = ${p(2)}, expires_at = NULL
  WHERE owner = ${p(3)} AND namespace = ${p(4)} AND entry_key = ${p(5)} AND value_json = ${p(6)} AND created_at = ${p(7)} AND expires_at IS NOT DISTINCT FROM ${p(8)}
  AND (expires_at IS NULL OR expires_at > ${p(9)}) RETURNING entry_key`

/** A store runtime with the bench namespace opened and its 1 000 rows written. */
const openStore = async (layer: Layer.Layer<KeyedStore, StateStoreError>) => {
  const runtime = ManagedRuntime.make(layer)
  const handle = await runtime.runPromise(
    Effect.gen(function* () {
      const store = yield* KeyedStore
      const h = yield* store.open({ owner: OWNER, namespace: NAMESPACE, schema: Value as Schema.Schema<Value, unknown>, maxEntries: 100_000 })
      const written = yield* h.writeBatch(keys.map((key, i) => ({ _tag: "Register" as const, key, value: { repliedAt: i }, createdAt: Date.now(), expiresAt: undefined })))
      if (written.refused.length > 0) fail("bench rows refused")
      return h
    })
  )
  return { runtime, handle }
}

const oursLookupMany = (runtime: ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>, handle: NamespaceHandle<Value>) => async () => {
  const results = await runtime.runPromise(handle.lookupMany(keys))
  if (results.filter((r) => Either.isRight(r) && Option.isSome(r.right)).length !== KEYS) fail("ours: lookupMany missed rows")
}

/** One compare-and-set per call, on a key of its own per round (a fresh revision each time). */
const oursCompareAndSet = (runtime: ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>, handle: NamespaceHandle<Value>) => async (_round: number, n: number) => {
  for (let i = 0; i < n; i++) {
    const key = keys[i % KEYS]!
    const applied = await runtime.runPromise(
      Effect.flatMap(handle.observe(key), (seen) => handle.compareAndSet(key, seen.revision, { _tag: "Set", value: { repliedAt: Date.now() } }))
    )
    if (applied._tag !== "Applied") fail(`ours: compareAndSet ${applied._tag}`)
  }
}

const pgRows = async (): Promise<ReadonlyArray<Row>> => {
  const base = pgBaseUrl()
  if (base === undefined) {
    console.error("bench: CHANNEL_STATE_TEST_PG_URL not set, bulk.lookup_many_pg_* and cas.pg_vs_raw skipped")
    return []
  }
  const db = await freshPgDatabase(base, "bulk")
  await createStoreSchemaPg(db.url)
  const { runtime, handle } = await openStore(PgStore.layer({ url: db.url }))
  const keyv = new Keyv<Value>(new KeyvPostgres(db.url))
  keyv.on("error", (error) => fail(`keyv: ${String(error)}`))
  for (const [i, key] of keys.entries()) await keyv.set(key, { repliedAt: i })
  const client = rawPgClient(db.url)
  await client.connect()
  const facadeState = createOpenClawState({ pluginId: OWNER, pgUrl: db.url })
  const facade = facadeState.openKeyedStore<Value>({ namespace: "bulk-facade", maxEntries: 100_000 })
  for (const [i, key] of keys.entries()) await facade.register(key, { repliedAt: i })
  const p = (i: number) => `$${i}`
  try {
    const lookups = await timeInterleaved(
      {
        ours: oursLookupMany(runtime, handle),
        keyv: async () => {
          const values = await keyv.getMany(keys)
          if (values.filter((v) => v !== undefined).length !== KEYS) fail("keyv: getMany missed rows")
        },
        facade: async () => {
          const results = await facade.lookupMany(keys)
          if (results.filter((r) => r.ok && r.value !== undefined).length !== KEYS) fail("facade: lookupMany missed rows")
        },
        raw: async () => {
          const result = await client.query<{ value_json: string }>({ name: "lookup-many", text: SELECT_MANY_PG, values: [OWNER, NAMESPACE, JSON.stringify(keys), Date.now()] } as never)
          if (result.rows.map((r) => JSON.parse(r.value_json)).length !== KEYS) fail("raw: missed rows")
        }
      },
      LOOKUP_TIMING,
      { rotate: true }
    )
    const cas = await timeInterleaved(
      {
        ours: oursCompareAndSet(runtime, handle),
        raw: async (_round: number, n: number) => {
          for (let i = 0; i < n; i++) {
            const key = keys[i % KEYS]!
            const now = Date.now()
            const seen = await client.query<{ value_json: string; created_at: string; expires_at: string | null }>({ name: "cas-read", text: SELECT_ONE(p), values: [OWNER, NAMESPACE, key, now] } as never)
            const row0 = seen.rows[0]!
            const updated = await client.query({
              name: "cas-write",
              text: UPDATE_SEEN(p),
              values: [JSON.stringify({ repliedAt: now }), now, OWNER, NAMESPACE, key, row0.value_json, row0.created_at, row0.expires_at, now]
            } as never)
            if (updated.rowCount !== 1) fail("raw: compare-and-set missed")
          }
        }
      },
      CAS_TIMING,
      { rotate: true }
    )
    return [
      row("bulk.lookup_many_pg_vs_keyv", "ns/op", lookups.ours, lookups.keyv, 1, `lookupMany of ${KEYS} keys vs Keyv + @keyv/postgres getMany (new Keyv(new KeyvPostgres(uri)))`),
      row(
        "bulk.lookup_many_facade_pg_vs_keyv",
        "ns/op",
        lookups.facade,
        lookups.keyv,
        1,
        `the OpenClaw-compatible facade's lookupMany of ${KEYS} keys (createOpenClawState({ pgUrl }).openKeyedStore(…)) vs Keyv + @keyv/postgres getMany`
      ),
      row("bulk.lookup_many_pg_vs_raw", "ns/op", lookups.ours, lookups.raw, null, `lookupMany of ${KEYS} keys vs raw pg: the same statement (keys as one JSON parameter, joined on the primary key), named prepared, + JSON.parse per row`),
      row("cas.pg_vs_raw", "ns/op", cas.ours, cas.raw, null, "observe + compareAndSet of an existing row vs raw pg: the row's SELECT + the UPDATE conditional on its JSON and timestamps (named prepared)")
    ]
  } finally {
    await client.end()
    await facadeState.close()
    await keyv.disconnect()
    await runtime.dispose()
    await db.drop()
  }
}

const sqliteRows = async (): Promise<ReadonlyArray<Row>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-bulk-"))
  const filename = path.join(dir, "state.sqlite")
  const raw: Database.Database = await openRawStoreFile(filename)
  const { runtime, handle } = await openStore(SqliteStore.layer({ filename }))
  const selectMany = raw.prepare<[string, string, string, number], { value_json: string }>(SELECT_MANY_SQLITE)
  const selectOne = raw.prepare<[string, string, string, number], { value_json: string; created_at: number; expires_at: number | null }>(SELECT_ONE(() => "?"))
  const updateSeen = raw.prepare(UPDATE_SEEN(() => "?"))
  try {
    const lookups = await timeInterleaved(
      {
        ours: oursLookupMany(runtime, handle),
        raw: () => {
          if (selectMany.all(OWNER, NAMESPACE, JSON.stringify(keys), Date.now()).map((r) => JSON.parse(r.value_json)).length !== KEYS) fail("raw: missed rows")
        }
      },
      LOOKUP_TIMING,
      { rotate: true }
    )
    const cas = await timeInterleaved(
      {
        ours: oursCompareAndSet(runtime, handle),
        raw: (_round: number, n: number) => {
          for (let i = 0; i < n; i++) {
            const key = keys[i % KEYS]!
            const now = Date.now()
            const seen = selectOne.get(OWNER, NAMESPACE, key, now)!
            const updated = updateSeen.all(JSON.stringify({ repliedAt: now }), now, OWNER, NAMESPACE, key, seen.value_json, seen.created_at, seen.expires_at, now)
            if (updated.length !== 1) fail("raw: compare-and-set missed")
          }
        }
      },
      CAS_TIMING,
      { rotate: true }
    )
    return [
      row("bulk.lookup_many_sqlite_vs_raw", "ns/op", lookups.ours, lookups.raw, null, `lookupMany of ${KEYS} keys vs raw better-sqlite3: one prepared SELECT … IN (SELECT value FROM json_each(?)) + JSON.parse per row`),
      row("cas.sqlite_vs_raw", "ns/op", cas.ours, cas.raw, null, "observe + compareAndSet of an existing row vs raw better-sqlite3: the row's SELECT + the UPDATE conditional on its JSON and timestamps (prepared)")
    ]
  } finally {
    raw.close()
    await runtime.dispose()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

export const bulkBench = async (): Promise<ReadonlyArray<Row>> => [...(await sqliteRows()), ...(await pgRows())]

if (isMain(import.meta.url)) await runAlone(bulkBench)
