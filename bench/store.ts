/**
 * The keyed store on SQLite against raw better-sqlite3 doing the same SQL work on the same
 * kind of file (temp dir, WAL, synchronous = NORMAL, the same table and indexes), in the
 * same run with interleaved rounds. Then, when CHANNEL_STATE_TEST_PG_URL is set, the same
 * operations on PostgreSQL (a fresh database, dropped after), compared with our SQLite figure.
 *
 * Every write stores a different value (SQLite skips writing an identical row).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type Database from "better-sqlite3"
import KeyvSqlite from "@keyv/sqlite"
import { Effect, ManagedRuntime, Option, Schema } from "effect"
import Keyv from "keyv"
import { type BatchOp, KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import {
  adminSql,
  fail,
  freshPgDatabase,
  openRawStoreFile,
  pgBaseUrl,
  type Row,
  row,
  type TimingOptions,
  timeInterleaved,
  timePerOp,
  type Work
} from "./harness.js"
import { rawPgClient } from "./rawPg.js"

const OWNER = "bench"
const NAMESPACE = "threads"
const TTL_MS = 24 * 60 * 60 * 1000
/** Rows present before any timed operation. */
export const SEEDED = 10_000
/** Register steps per writeBatch call. */
const BATCH = 1000

/** The value every store row holds (a Slack thread participation's shape). */
export const Value = Schema.Struct({ repliedAt: Schema.Number, agentId: Schema.optional(Schema.String) })
type Value = typeof Value.Type

/** A value; writes pass a different `n` each time (SQLite skips writing an identical row). */
export const value = (n: number): Value => ({ repliedAt: n, agentId: "agent-7" })
/** The `i`-th seeded key (modulo {@link SEEDED}). */
export const seededKey = (i: number) => `T0123:C0456:1712345678.${String(i % SEEDED).padStart(6, "0")}`
/** Seeded keys in a scattered order, so lookups do not walk the B-tree sequentially. */
export const scatteredKey = (i: number) => seededKey((i * 7919) % SEEDED)
const claimKey = (round: number, i: number) => `claim:${round}:${i}`

const storeSettings = { ownerMaxEntries: 10_000_000, sweepInterval: "1 hour" } as const
const namespaceOptions = { owner: OWNER, namespace: NAMESPACE, schema: Value, maxEntries: 1_000_000, ttl: TTL_MS }

const timing = {
  lookup: { n: 2000, rounds: 7, warmup: 1 },
  register: { n: 300, rounds: 5, warmup: 1 },
  claim: { n: 300, rounds: 7, warmup: 5 },
  batched: { n: 5, rounds: 9, warmup: 1, perOp: BATCH }
} satisfies Record<string, TimingOptions>

/** PostgreSQL is only reported: fewer operations keep it quick. */
const pgTiming = {
  lookup: { n: 300, rounds: 3, warmup: 1 },
  register: { n: 100, rounds: 3, warmup: 1 },
  claim: { n: 100, rounds: 3, warmup: 1 },
  batched: { n: 1, rounds: 3, warmup: 1, perOp: BATCH }
} satisfies Record<string, TimingOptions>

type StoreRuntime = ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>

interface OpWorks {
  readonly lookup: Work
  readonly register: Work
  readonly registerIfAbsent: Work
  readonly consume: Work
  readonly batched: Work
}

// ---------------------------------------------------------------------------------------
// ours: the keyed store, N operations inside one Effect per round

const openStore = async (runtime: StoreRuntime): Promise<NamespaceHandle<Value>> =>
  runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open(namespaceOptions)))

const batchOps = (first: number, counter: number): Array<BatchOp<Value>> => {
  const now = Date.now()
  const ops: Array<BatchOp<Value>> = []
  for (let j = 0; j < BATCH; j++) {
    ops.push({ _tag: "Register", key: seededKey(first + j), value: value(counter + j), createdAt: now, expiresAt: now + TTL_MS })
  }
  return ops
}

const seedStore = (runtime: StoreRuntime, handle: NamespaceHandle<Value>) =>
  runtime.runPromise(
    Effect.gen(function* () {
      for (let first = 0; first < SEEDED; first += BATCH) yield* handle.writeBatch(batchOps(first, 0))
      if ((yield* handle.size) !== SEEDED) fail("seeded size")
    })
  )

const storeWorks = (runtime: StoreRuntime, handle: NamespaceHandle<Value>): OpWorks => {
  let counter = 1
  const loop =
    (op: (round: number, i: number) => Effect.Effect<void, StateStoreError>): Work =>
    (round, n) =>
      runtime.runPromise(
        Effect.gen(function* () {
          for (let i = 0; i < n; i++) yield* op(round, i)
        })
      )
  return {
    lookup: loop((round, i) =>
      Effect.map(handle.lookup(scatteredKey(round * 100_003 + i)), (found) => (Option.isNone(found) ? fail("lookup missed") : undefined))
    ),
    register: loop((round, i) => handle.register(scatteredKey(round * 100_003 + i), value(counter++))),
    registerIfAbsent: loop((round, i) =>
      Effect.map(handle.registerIfAbsent(claimKey(round, i), value(counter++)), (claimed) => (claimed ? undefined : fail("claim refused")))
    ),
    consume: loop((round, i) =>
      Effect.map(handle.consume(claimKey(round, i)), (found) => (Option.isNone(found) ? fail("consume missed") : undefined))
    ),
    batched: (round, n) =>
      runtime.runPromise(
        Effect.gen(function* () {
          for (let i = 0; i < n; i++) {
            yield* handle.writeBatch(batchOps((round * n + i) * BATCH, counter))
            counter += BATCH
          }
        })
      )
  }
}

// ---------------------------------------------------------------------------------------
// baseline: raw better-sqlite3, the statements the store executes, prepared once

const COLUMNS = `INSERT INTO channel_state_entries ("owner","namespace","entry_key","value_json","created_at","expires_at") VALUES `
const ON_CONFLICT = ` ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET
  value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at`
const tuples = (n: number) => Array.from({ length: n }, () => "(?,?,?,?,?,?)").join(",")
/** The store's multi-row chunk (SqlStore CHUNK). */
const RAW_CHUNK = 500

interface DbRow {
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number
  readonly expires_at: number | null
}

const rawWorks = (db: Database.Database) => {
  const live = "(expires_at IS NULL OR expires_at > ?)"
  const select = db.prepare<[string, string, string, number], DbRow>(
    `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
     WHERE owner = ? AND namespace = ? AND entry_key = ? AND ${live}`
  )
  const upsert = db.prepare(COLUMNS + tuples(1) + ON_CONFLICT)
  const upsertChunk = db.prepare(COLUMNS + tuples(RAW_CHUNK) + ON_CONFLICT)
  const claim = db.prepare<Array<unknown>, { entry_key: string }>(
    `${COLUMNS}${tuples(1)}${ON_CONFLICT}
     WHERE channel_state_entries.expires_at IS NOT NULL AND channel_state_entries.expires_at <= ? RETURNING entry_key`
  )
  const counts = db.prepare<[string, string, number, string, number], { ns_live: number; owner_live: number }>(
    `SELECT (SELECT count(*) FROM channel_state_entries WHERE owner = ? AND namespace = ? AND ${live}) AS ns_live,
            (SELECT count(*) FROM channel_state_entries WHERE owner = ? AND ${live}) AS owner_live`
  )
  const consume = db.prepare<[string, string, string], DbRow>(
    `DELETE FROM channel_state_entries WHERE owner = ? AND namespace = ? AND entry_key = ?
     RETURNING entry_key, value_json, created_at, expires_at`
  )
  const checkCaps = (now: number) => {
    const c = counts.get(OWNER, NAMESPACE, now, OWNER, now)!
    if (c.ns_live > namespaceOptions.maxEntries || c.owner_live > storeSettings.ownerMaxEntries) fail("caps")
  }
  // Like the store: the caps are counted exactly when an upper bound could pass a limit and at
  // least every max(10 000, maxEntries) inserts (the store's recount interval); far from the limits, that is the latter.
  let insertsSinceCount = Number.POSITIVE_INFINITY
  const countCapsNowAndThen = (now: number, inserted: number) => {
    insertsSinceCount += inserted
    if (insertsSinceCount < Math.max(10_000, namespaceOptions.maxEntries)) return
    checkCaps(now)
    insertsSinceCount = 0
  }
  const registerTx = db.transaction((key: string, json: string, now: number) => {
    upsert.run(OWNER, NAMESPACE, key, json, now, now + TTL_MS)
    countCapsNowAndThen(now, 1)
  })
  const claimTx = db.transaction((key: string, json: string, now: number) => {
    const claimed = claim.get(OWNER, NAMESPACE, key, json, now, now + TTL_MS, now) !== undefined
    if (claimed) countCapsNowAndThen(now, 1)
    return claimed
  })
  const batchRows = (first: number, counter: number) => {
    const now = Date.now()
    const rows: Array<[string, string, number]> = []
    for (let j = 0; j < BATCH; j++) rows.push([seededKey(first + j), JSON.stringify(value(counter + j)), now])
    return rows
  }
  /** 1 000 one-row upserts in one transaction, then the caps query. */
  const batchPerRowTx = db.transaction((rows: ReadonlyArray<[string, string, number]>) => {
    for (const [key, json, now] of rows) upsert.run(OWNER, NAMESPACE, key, json, now, now + TTL_MS)
    countCapsNowAndThen(rows[0]![2], rows.length)
  })
  /** Two 500-row upserts in one transaction, then the caps query. */
  const batchMultiRowTx = db.transaction((rows: ReadonlyArray<[string, string, number]>) => {
    for (let start = 0; start < rows.length; start += RAW_CHUNK) {
      const params: Array<unknown> = []
      for (const [key, json, now] of rows.slice(start, start + RAW_CHUNK)) params.push(OWNER, NAMESPACE, key, json, now, now + TTL_MS)
      upsertChunk.run(...params)
    }
    countCapsNowAndThen(rows[0]![2], rows.length)
  })
  let counter = 1
  const perOp =
    (op: (round: number, i: number) => void): Work =>
    (round, n) => {
      for (let i = 0; i < n; i++) op(round, i)
    }
  const batched =
    (tx: (rows: ReadonlyArray<[string, string, number]>) => void): Work =>
    (round, n) => {
      for (let i = 0; i < n; i++) {
        tx(batchRows((round * n + i) * BATCH, counter))
        counter += BATCH
      }
    }
  const works = {
    lookup: perOp((round, i) => {
      const found = select.get(OWNER, NAMESPACE, scatteredKey(round * 100_003 + i), Date.now())
      if (found === undefined) fail("raw lookup missed")
      else JSON.parse(found.value_json)
    }),
    register: perOp((round, i) => registerTx(scatteredKey(round * 100_003 + i), JSON.stringify(value(counter++)), Date.now())),
    registerIfAbsent: perOp((round, i) => {
      if (!claimTx(claimKey(round, i), JSON.stringify(value(counter++)), Date.now())) fail("raw claim refused")
    }),
    consume: perOp((round, i) => {
      const now = Date.now()
      // Stepped to completion (`.all()`), as every statement that commits must be: `.get()`
      // resets a `RETURNING` statement after its first row, which skips SQLite's WAL hook, so
      // no auto-checkpoint ever runs (the WAL grew to 97 MB in 5 000 deletes) and the next
      // writer to complete a commit — in an interleaved run, ours — pays the checkpoint for both.
      const found = consume.all(OWNER, NAMESPACE, claimKey(round, i))[0]
      if (found === undefined || (found.expires_at !== null && found.expires_at <= now)) fail("raw consume missed")
      else JSON.parse(found.value_json)
    }),
    batchedPerRow: batched(batchPerRowTx),
    batchedMultiRow: batched(batchMultiRowTx)
  }
  const seed = () => {
    for (let first = 0; first < SEEDED; first += BATCH) batchMultiRowTx(batchRows(first, 0))
  }
  return { works, seed, select }
}

// ---------------------------------------------------------------------------------------
// peer: Keyv + @keyv/sqlite, as their READMEs set it up (a file URI; WAL, as for production),
// doing the nearest equivalent of each operation: get; get-then-set for a claim (Keyv has no
// atomic one); get-then-delete for a consume

/** N awaited operations one after another: a round of a Promise-based contender. */
const awaitedPerOp =
  (op: (round: number, i: number) => Promise<void>): Work =>
  async (round, n) => {
    for (let i = 0; i < n; i++) await op(round, i)
  }

const keyvWorks = async (file: string) => {
  const sqlite = new KeyvSqlite(`sqlite://${file}`)
  await sqlite.query("PRAGMA journal_mode = WAL")
  const keyv = new Keyv<Value>({ store: sqlite, ttl: TTL_MS })
  keyv.on("error", (error) => fail(`keyv: ${String(error)}`))
  for (let i = 0; i < SEEDED; i++) await keyv.set(seededKey(i), value(0))
  let counter = 1
  return {
    works: {
      lookup: awaitedPerOp(async (round, i) => {
        if ((await keyv.get(scatteredKey(round * 100_003 + i))) === undefined) fail("keyv lookup missed")
      }),
      registerIfAbsent: awaitedPerOp(async (round, i) => {
        const key = claimKey(round, i)
        if ((await keyv.get(key)) !== undefined) fail("keyv claim found a row")
        await keyv.set(key, value(counter++))
      }),
      consume: awaitedPerOp(async (round, i) => {
        const key = claimKey(round, i)
        if ((await keyv.get(key)) === undefined) fail("keyv consume missed")
        await keyv.delete(key)
      })
    },
    close: () => keyv.disconnect()
  }
}

// ---------------------------------------------------------------------------------------
// SQLite: ours vs raw (and Keyv)

const sqliteRows = async (dir: string): Promise<{ rows: Array<Row>; figures: Record<keyof OpWorks, number> }> => {
  const oursFile = path.join(dir, "ours", "state.sqlite")
  const runtime: StoreRuntime = ManagedRuntime.make(SqliteStore.layer({ filename: oursFile, ...storeSettings }))
  const db = await openRawStoreFile(path.join(dir, "raw", "raw.sqlite"))
  try {
    const handle = await openStore(runtime)
    await seedStore(runtime, handle)
    const raw = rawWorks(db)
    raw.seed()
    const ours = storeWorks(runtime, handle)
    fs.mkdirSync(path.join(dir, "keyv"), { mode: 0o700 })
    const keyv = await keyvWorks(path.join(dir, "keyv", "keyv.sqlite"))

    const lookup = await timeInterleaved({ ours: ours.lookup, raw: raw.works.lookup, keyv: keyv.works.lookup }, timing.lookup)
    const register = await timeInterleaved({ ours: ours.register, raw: raw.works.register }, timing.register)
    // registerIfAbsent claims fresh keys per round; consume then takes exactly those keys.
    const claim = await timeInterleaved({ ours: ours.registerIfAbsent, raw: raw.works.registerIfAbsent, keyv: keyv.works.registerIfAbsent }, timing.claim)
    const consume = await timeInterleaved({ ours: ours.consume, raw: raw.works.consume, keyv: keyv.works.consume }, timing.claim)
    await keyv.close()
    const batched = await timeInterleaved(
      { ours: ours.batched, perRow: raw.works.batchedPerRow, multiRow: raw.works.batchedMultiRow },
      timing.batched
    )
    const rawBatch = Math.min(batched.perRow, batched.multiRow)
    const rawBatchWay = batched.perRow <= batched.multiRow ? "1 000 prepared one-row upserts" : "two prepared 500-row upserts"

    // Attribution: the lookup SELECT through @effect/sql's SqliteClient (a second connection
    // to our file) against the same SELECT through raw better-sqlite3.
    const clientRuntime = ManagedRuntime.make(SqliteClient.layer({ filename: oursFile }))
    let select: Record<"client" | "raw", number>
    try {
      const sql = await clientRuntime.runPromise(SqlClient)
      const viaClient: Work = (round, n) =>
        clientRuntime.runPromise(
          Effect.gen(function* () {
            for (let i = 0; i < n; i++) {
              const rows = yield* sql<DbRow>`SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
                WHERE owner = ${OWNER} AND namespace = ${NAMESPACE} AND entry_key = ${scatteredKey(round * 100_003 + i)}
                AND (expires_at IS NULL OR expires_at > ${Date.now()})`
              if (rows[0] === undefined) fail("client select missed")
              else JSON.parse(rows[0].value_json)
            }
          })
        )
      select = await timeInterleaved({ client: viaClient, raw: raw.works.lookup }, timing.lookup)
    } finally {
      await clientRuntime.dispose()
    }

    const rows = [
      row("store.lookup", "ns/op", lookup.ours, lookup.raw, 3, "raw: prepared SELECT .get() + JSON.parse"),
      row("store.lookup_vs_keyv_sqlite", "ns/op", lookup.ours, lookup.keyv, 0.5, "Keyv + @keyv/sqlite (WAL): get"),
      row("store.register", "ns/op", register.ours, register.raw, null, "raw: BEGIN; upsert; COMMIT (db.transaction), with the caps count every max(10 000, maxEntries) inserts like the store"),
      row("store.registerIfAbsent", "ns/op", claim.ours, claim.raw, 2.5, "fresh keys; raw: BEGIN; upsert … WHERE expired RETURNING; COMMIT, caps count every max(10 000, maxEntries) inserts like the store"),
      row("store.registerIfAbsent_vs_keyv_sqlite", "ns/op", claim.ours, claim.keyv, 0.5, "Keyv + @keyv/sqlite (WAL): get, then set when absent (not atomic: Keyv has no claim)"),
      row("store.consume", "ns/op", consume.ours, consume.raw, 3, "raw: DELETE … RETURNING .all() (stepped to completion, so the WAL auto-checkpoint runs; .get() skips it) + JSON.parse"),
      row("store.consume_vs_keyv_sqlite", "ns/op", consume.ours, consume.keyv, 0.5, "Keyv + @keyv/sqlite (WAL): get, then delete (not atomic)"),
      row("store.register_batched", "ns/row", batched.ours, rawBatch, 2.0, `writeBatch of ${BATCH} Register steps; raw: ${rawBatchWay} + the caps count in one transaction (fastest raw way this run; per-row ${Math.round(batched.perRow)} ns, multi-row ${Math.round(batched.multiRow)} ns)`),
      row("store.attr.sqlclient_select", "ns/op", select.client, select.raw, null, "attribution: the lookup SELECT through @effect/sql SqliteClient (Effect loop) vs raw better-sqlite3")
    ]
    return {
      rows,
      figures: { lookup: lookup.ours, register: register.ours, registerIfAbsent: claim.ours, consume: consume.ours, batched: batched.ours }
    }
  } finally {
    db.close()
    await runtime.dispose()
  }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: ours only, reported next to our SQLite figure

/** Raw `pg` (one Client, named prepared statements) running the store's single statements, in autocommit. */
const rawPgWorks = async (url: string) => {
  const client = rawPgClient(url)
  await client.connect()
  const live = "(expires_at IS NULL OR expires_at > $4)"
  const query = <R>(name: string, text: string, values: ReadonlyArray<unknown>) => client.query<R>({ name, text, values } as never)
  let counter = 1
  return {
    works: {
      lookup: awaitedPerOp(async (round, i) => {
        const found = await query<DbRow>(
          "lookup",
          `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE owner = $1 AND namespace = $2 AND entry_key = $3 AND ${live}`,
          [OWNER, NAMESPACE, scatteredKey(round * 100_003 + i), Date.now()]
        )
        if (found.rows[0] === undefined) fail("raw pg lookup missed")
        else JSON.parse(found.rows[0].value_json)
      }),
      registerIfAbsent: awaitedPerOp(async (round, i) => {
        const now = Date.now()
        const claimed = await query(
          "claim",
          `INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at
           WHERE channel_state_entries.expires_at IS NOT NULL AND channel_state_entries.expires_at <= $5 RETURNING entry_key`,
          [OWNER, `${NAMESPACE}-raw`, claimKey(round, i), JSON.stringify(value(counter++)), now, now + TTL_MS]
        )
        if (claimed.rowCount !== 1) fail("raw pg claim refused")
      }),
      consume: awaitedPerOp(async (round, i) => {
        const taken = await query<DbRow>(
          "consume",
          "DELETE FROM channel_state_entries WHERE owner = $1 AND namespace = $2 AND entry_key = $3 RETURNING entry_key, value_json, created_at, expires_at",
          [OWNER, `${NAMESPACE}-raw`, claimKey(round, i)]
        )
        if (taken.rows[0] === undefined) fail("raw pg consume missed")
        else JSON.parse(taken.rows[0].value_json)
      })
    },
    close: () => client.end()
  }
}

const pgRows = async (baseUrl: string, sqlite: Record<keyof OpWorks, number>): Promise<Array<Row>> => {
  const database = await freshPgDatabase(baseUrl, "store")
  const url = database.url
  const runtime: StoreRuntime = ManagedRuntime.make(PgStore.layer({ url, ...storeSettings }))
  try {
    const handle = await openStore(runtime)
    await seedStore(runtime, handle)
    // Steady state: autovacuum analyzes a live table. Without statistics the planner picks the
    // (owner, namespace, created_at) index for a point lookup and scans the whole namespace.
    await adminSql(url, "ANALYZE channel_state_entries")
    const ours = storeWorks(runtime, handle)
    // Raw claims and consumes run in a namespace of their own (the same table): each side claims its own fresh keys.
    const raw = await rawPgWorks(url)
    const lookup = await timeInterleaved({ ours: ours.lookup, raw: raw.works.lookup }, pgTiming.lookup)
    const register = await timePerOp(ours.register, pgTiming.register)
    const claim = await timeInterleaved({ ours: ours.registerIfAbsent, raw: raw.works.registerIfAbsent }, pgTiming.claim)
    const consume = await timeInterleaved({ ours: ours.consume, raw: raw.works.consume }, pgTiming.claim)
    const batched = await timePerOp(ours.batched, pgTiming.batched)
    await raw.close()
    const note = "no raw baseline: the baseline is our own SQLite store figure for the same operation (table ANALYZEd after seeding)"
    const rawNote = (what: string) => `raw pg: one Client, the same single statement (${what}), named prepared, autocommit: one round trip (table ANALYZEd after seeding)`
    return [
      row("store.pg.lookup", "ns/op", lookup.ours, lookup.raw, 1.5, rawNote("SELECT")),
      row("store.pg.register", "ns/op", register, sqlite.register, null, note),
      row("store.pg.registerIfAbsent", "ns/op", claim.ours, claim.raw, 1.5, rawNote("INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING")),
      row("store.pg.consume", "ns/op", consume.ours, consume.raw, 1.5, rawNote("DELETE … RETURNING")),
      row("store.pg.register_batched", "ns/row", batched, sqlite.batched, null, note)
    ]
  } finally {
    await runtime.dispose()
    await database.drop()
  }
}

/** Runs the keyed-store benchmarks and returns their rows. */
export const storeBench = async (): Promise<Array<Row>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-"))
  try {
    console.error("bench: keyed store on SQLite vs raw better-sqlite3 …")
    const sqlite = await sqliteRows(dir)
    const pgUrl = pgBaseUrl()
    if (pgUrl === undefined) {
      console.error("bench: CHANNEL_STATE_TEST_PG_URL not set, PostgreSQL rows skipped")
      return sqlite.rows
    }
    console.error("bench: keyed store on PostgreSQL …")
    return [...sqlite.rows, ...(await pgRows(pgUrl, sqlite.figures))]
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
