/**
 * Bursts: 1 000 concurrent cold lookups, and 1 000 concurrent claims of fresh keys, through
 * the keyed store (one `Effect.forEach` with unbounded concurrency), against the same 1 000
 * single statements run one after another by the raw driver — on SQLite (better-sqlite3) and,
 * when CHANNEL_STATE_TEST_PG_URL is set, PostgreSQL (`pg`, one Client, named prepared
 * statements, autocommit). The target: the burst in at most a third of the sequential time,
 * which only coalescing concurrent requests into few statements can reach.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, ManagedRuntime, Option, Schema } from "effect"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { adminSql, fail, freshPgDatabase, openRawStoreFile, pgBaseUrl, type Row, row, timeInterleaved, type Work } from "./harness.js"
import { pgPlaceholders, rawPgClient } from "./rawPg.js"

const OWNER = "burst"
const NAMESPACE = "threads"
const TTL_MS = 24 * 60 * 60 * 1000
const BURST = 1000
const SEEDED = 10_000
const Value = Schema.Struct({ repliedAt: Schema.Number })
const json = (n: number) => JSON.stringify({ repliedAt: n })
const seededKey = (i: number) => `T0123:C0456:1712345678.${String((i * 7919) % SEEDED).padStart(6, "0")}`
const claimKey = (round: number, i: number) => `claim:${round}:${i}`
const timing = { n: BURST, rounds: 7, warmup: 1 }
const namespaceOptions = { owner: OWNER, namespace: NAMESPACE, schema: Value, maxEntries: 1_000_000, ttl: TTL_MS }

type Runtime = ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>

const COLUMNS = "INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES "
const CLAIM_TAIL = ` ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at
  WHERE channel_state_entries.expires_at IS NOT NULL AND channel_state_entries.expires_at <= `
const LOOKUP = "SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE owner = ? AND namespace = ? AND entry_key = ? AND (expires_at IS NULL OR expires_at > ?)"

/** Ours: each round one burst of `n` concurrent operations of the store, checked. */
const oursWorks = (runtime: Runtime, handle: NamespaceHandle<typeof Value.Type>) => {
  const burst =
    <R>(op: (round: number, i: number) => Effect.Effect<R, StateStoreError>, check: (r: R) => boolean, what: string): Work =>
    (round, n) =>
      runtime.runPromise(
        Effect.map(
          Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => op(round, i), { concurrency: "unbounded" }),
          (results) => (results.every(check) ? undefined : fail(what))
        )
      )
  return {
    lookup: burst((round, i) => handle.lookup(seededKey(round * 1009 + i)), Option.isSome, "burst lookup missed"),
    claim: burst((round, i) => handle.registerIfAbsent(claimKey(round, i), { repliedAt: i }), (won) => won, "burst claim refused")
  }
}

const seed = (runtime: Runtime, handle: NamespaceHandle<typeof Value.Type>) =>
  runtime.runPromise(
    Effect.gen(function* () {
      const now = Date.now()
      for (let first = 0; first < SEEDED; first += 1000) {
        yield* handle.writeBatch(
          Array.from({ length: 1000 }, (_, j) => ({ _tag: "Register" as const, key: seededKey(first + j), value: { repliedAt: j }, createdAt: now, expiresAt: now + TTL_MS }))
        )
      }
    })
  )

const sqliteRows = async (dir: string): Promise<Array<Row>> => {
  const runtime: Runtime = ManagedRuntime.make(SqliteStore.layer({ filename: path.join(dir, "ours", "state.sqlite"), sweepInterval: "1 hour" }))
  const db = await openRawStoreFile(path.join(dir, "raw", "raw.sqlite"))
  try {
    const handle = await runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open(namespaceOptions)))
    await seed(runtime, handle)
    const insert = db.prepare(`${COLUMNS}(?, ?, ?, ?, ?, ?)${CLAIM_TAIL}? RETURNING entry_key`)
    const now = Date.now()
    db.transaction(() => {
      for (let i = 0; i < SEEDED; i++) insert.get(OWNER, NAMESPACE, seededKey(i), json(i), now, now + TTL_MS, now)
    })()
    const select = db.prepare<[string, string, string, number], { value_json: string }>(LOOKUP)
    const claimTx = db.transaction((key: string, value: string, at: number) => insert.get(OWNER, `${NAMESPACE}-raw`, key, value, at, at + TTL_MS, at) !== undefined)
    const ours = oursWorks(runtime, handle)
    const raw = {
      lookup: (round: number, n: number) => {
        for (let i = 0; i < n; i++) {
          const found = select.get(OWNER, NAMESPACE, seededKey(round * 1009 + i), Date.now())
          if (found === undefined) fail("raw lookup missed")
          else JSON.parse(found.value_json)
        }
      },
      claim: (round: number, n: number) => {
        for (let i = 0; i < n; i++) if (!claimTx(claimKey(round, i), json(i), Date.now())) fail("raw claim refused")
      }
    }
    // The floor of any burst through Effect: the same forEach of n fibers doing nothing.
    const fibers: Work = (_round, n) => runtime.runPromise(Effect.forEach(Array.from({ length: n }, (_, i) => i), Effect.succeed, { concurrency: "unbounded" }))
    const lookup = await timeInterleaved({ ours: ours.lookup, raw: raw.lookup, fibers }, timing)
    const claim = await timeInterleaved({ ours: ours.claim, raw: raw.claim }, timing)
    return [
      row("burst.attr.effect_fibers_1000_vs_sequential_raw_sqlite", "ns/op", lookup.fibers, lookup.raw, null, "attribution: Effect.forEach of 1 000 fibers that do nothing (unbounded concurrency) vs 1 000 sequential raw SQLite lookups — the floor of a burst of fibers"),
      row("burst.sqlite.lookup_1000_vs_sequential_raw", "ns/op", lookup.ours, lookup.raw, 0.33, "1 000 concurrent lookups vs 1 000 sequential raw prepared SELECT .get() + JSON.parse"),
      row("burst.sqlite.claim_1000_vs_sequential_raw", "ns/op", claim.ours, claim.raw, 0.33, "1 000 concurrent claims of fresh keys vs 1 000 sequential raw BEGIN; upsert … WHERE expired RETURNING; COMMIT")
    ]
  } finally {
    await runtime.dispose()
    db.close()
  }
}

const pgRows = async (baseUrl: string): Promise<Array<Row>> => {
  const database = await freshPgDatabase(baseUrl, "burst")
  const runtime: Runtime = ManagedRuntime.make(PgStore.layer({ url: database.url, sweepInterval: "1 hour" }))
  const client = rawPgClient(database.url)
  try {
    const handle = await runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open(namespaceOptions)))
    await seed(runtime, handle)
    await adminSql(database.url, "ANALYZE channel_state_entries")
    await client.connect()
    const query = (name: string, text: string, values: ReadonlyArray<unknown>) => client.query<{ value_json: string }>({ name, text, values } as never)
    const lookupText = pgPlaceholders(LOOKUP)
    const claimText = `${COLUMNS}($1, $2, $3, $4, $5, $6)${CLAIM_TAIL}$5 RETURNING entry_key`
    const ours = oursWorks(runtime, handle)
    const raw = {
      lookup: async (round: number, n: number) => {
        for (let i = 0; i < n; i++) {
          const found = await query("burst_lookup", lookupText, [OWNER, NAMESPACE, seededKey(round * 1009 + i), Date.now()])
          if (found.rows[0] === undefined) fail("raw pg lookup missed")
          else JSON.parse(found.rows[0].value_json)
        }
      },
      claim: async (round: number, n: number) => {
        for (let i = 0; i < n; i++) {
          const at = Date.now()
          const claimed = await query("burst_claim", claimText, [OWNER, `${NAMESPACE}-raw`, claimKey(round, i), json(i), at, at + TTL_MS])
          if (claimed.rowCount !== 1) fail("raw pg claim refused")
        }
      }
    }
    const pgTiming = { ...timing, rounds: 3 }
    const lookup = await timeInterleaved({ ours: ours.lookup, raw: raw.lookup }, pgTiming)
    const claim = await timeInterleaved({ ours: ours.claim, raw: raw.claim }, pgTiming)
    return [
      row("burst.pg.lookup_1000_vs_sequential_raw", "ns/op", lookup.ours, lookup.raw, 0.33, "1 000 concurrent lookups vs 1 000 sequential raw pg SELECTs (named prepared, one Client)"),
      row("burst.pg.claim_1000_vs_sequential_raw", "ns/op", claim.ours, claim.raw, 0.33, "1 000 concurrent claims of fresh keys vs 1 000 sequential raw pg INSERT … ON CONFLICT … WHERE expired RETURNING (autocommit)")
    ]
  } finally {
    await client.end().catch(() => undefined)
    await runtime.dispose()
    await database.drop()
  }
}

/** Runs the burst benchmarks and returns their rows. */
export const burstBench = async (): Promise<Array<Row>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-burst-"))
  try {
    console.error("bench: bursts of 1 000 concurrent lookups and claims vs 1 000 sequential raw statements …")
    const sqlite = await sqliteRows(dir)
    const pgUrl = pgBaseUrl()
    return pgUrl === undefined ? sqlite : [...sqlite, ...(await pgRows(pgUrl))]
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
