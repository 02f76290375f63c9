/**
 * `pg.*_vs_raw`: what our PostgreSQL single operations cost over raw `pg` running the same
 * statement, in the same run, rounds interleaved (order rotated) — issue 12's ≤ 1.5× target.
 * `node --import tsx bench/pgOverhead.ts` runs it alone (CHANNEL_STATE_TEST_PG_URL set).
 *
 * - ours: the keyed store (`PgStore`, the database's clock), one operation after another
 *   inside one Effect per round: `lookup` of a seeded key, `consume` of a key claimed the
 *   round before, `registerIfAbsent` of a fresh key — claims in a namespace without and with
 *   an owner cap (`store.ownerMaxEntries`, which `npm run bench`'s `store.pg.*` rows set);
 * - raw: one `pg.Client`, named prepared statements in autocommit, awaited one after another:
 *   the point SELECT, the `DELETE … RETURNING` and the claim's `INSERT … ON CONFLICT … DO
 *   UPDATE … WHERE expired RETURNING`, with the same clock expression — one round trip each,
 *   no lock (a raw user has no cap to keep).
 *
 * Each side claims and consumes keys of its own namespace in the same table. The table is
 * ANALYZEd after seeding (steady state: autovacuum would).
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Exit, Layer, ManagedRuntime, Option, Redacted, Scope } from "effect"
import * as Reactivity from "@effect/experimental/Reactivity"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import { executePooled, executePreparedOn } from "../src/layers/store/pgPrepared.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import type { SqlText } from "../src/layers/store/sqlStatements.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { adminSql, fail, freshPgDatabase, pgBaseUrl, type Row, row, runAlone, type TimingOptions, timeInterleaved, type Work } from "./harness.js"
import { rawPgClient } from "./rawPg.js"
import { SEEDED, scatteredKey, seededKey, Value, value } from "./store.js"

const OWNER = "bench"
const TTL_MS = 24 * 60 * 60 * 1000
type Stored = typeof Value.Type

const timing: TimingOptions = { n: 200, rounds: 7, warmup: 1 }

/** The database's clock, as the store writes it. */
const NOW = "floor(extract(epoch from statement_timestamp()) * 1000)::bigint"
const LOOKUP = `SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE owner = $1 AND namespace = $2 AND entry_key = $3 AND (expires_at IS NULL OR expires_at > ${NOW})`
const COLUMNS = "owner, namespace, entry_key, value_json, created_at, expires_at"

type Runtime = ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>

const openNamespace = (runtime: Runtime, namespace: string) =>
  runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open({ owner: OWNER, namespace, schema: Value, maxEntries: 1_000_000, ttl: TTL_MS })))

/** `n` operations inside one Effect. */
const ours =
  (runtime: Runtime, op: (round: number, i: number) => Effect.Effect<void, StateStoreError>): Work =>
  (round, n) =>
    runtime.runPromise(
      Effect.gen(function* () {
        for (let i = 0; i < n; i++) yield* op(round, i)
      })
    )

const awaited =
  (op: (round: number, i: number) => Promise<void>): Work =>
  async (round, n) => {
    for (let i = 0; i < n; i++) await op(round, i)
  }

/** Runs the rows (none without CHANNEL_STATE_TEST_PG_URL). */
export const pgOverheadBench = async (): Promise<Array<Row>> => {
  const baseUrl = pgBaseUrl()
  if (baseUrl === undefined) {
    console.error("bench: CHANNEL_STATE_TEST_PG_URL not set, pg overhead rows skipped")
    return []
  }
  console.error("bench: PostgreSQL single operations vs raw pg …")
  const database = await freshPgDatabase(baseUrl, "overhead")
  const plain: Runtime = ManagedRuntime.make(PgStore.layer({ url: database.url, sweepInterval: "1 hour" }))
  const capped: Runtime = ManagedRuntime.make(PgStore.layer({ url: database.url, sweepInterval: "1 hour", ownerMaxEntries: 10_000_000 }))
  const raw = rawPgClient(database.url)
  // The floor of any store on @effect/sql-pg: its client, a pooled connection reserved for the
  // statement, the same SELECT as a named prepared statement (what ours runs), nothing else.
  const clientOnly = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(database.url) }).pipe(Layer.provide(Reactivity.layer)))
  try {
    const threads = await openNamespace(plain, "threads")
    const claims: NamespaceHandle<Stored> = await openNamespace(plain, "claims")
    const cappedClaims: NamespaceHandle<Stored> = await openNamespace(capped, "capped")
    const now = Date.now()
    for (let first = 0; first < SEEDED; first += 1000) {
      const ops = Array.from({ length: 1000 }, (_, j) => ({ _tag: "Register" as const, key: seededKey(first + j), value: value(0), createdAt: now, expiresAt: now + TTL_MS }))
      await plain.runPromise(threads.writeBatch(ops))
    }
    await adminSql(database.url, "ANALYZE channel_state_entries")
    await raw.connect()
    const query = <R>(name: string, text: string, values: ReadonlyArray<unknown>) => raw.query<R>({ name, text, values } as never)
    let counter = 1

    const claimKey = (side: string, round: number, i: number) => `${side}:${round}:${i}`
    const rawLookup = awaited(async (round, i) => {
      const found = await query<{ value_json: string }>(
        "lookup",
        LOOKUP,
        [OWNER, "threads", scatteredKey(round * 100_003 + i)]
      )
      if (found.rows[0] === undefined) fail("raw lookup missed")
      else JSON.parse(found.rows[0].value_json)
    })
    const rawClaim = (namespace: string): Work =>
      awaited(async (round, i) => {
        const claimed = await query(
          "claim",
          `INSERT INTO channel_state_entries (${COLUMNS}) VALUES ($1, $2, $3, $4, ${NOW}, LEAST(${NOW} + $5, 8640000000000000))
           ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at
           WHERE channel_state_entries.expires_at IS NOT NULL AND channel_state_entries.expires_at <= ${NOW} RETURNING entry_key`,
          [OWNER, namespace, claimKey("raw", round, i), JSON.stringify(value(counter++)), TTL_MS]
        )
        if (claimed.rowCount !== 1) fail("raw claim refused")
      })
    const rawConsume = awaited(async (round, i) => {
      const taken = await query<{ value_json: string }>(
        "consume",
        `DELETE FROM channel_state_entries WHERE owner = $1 AND namespace = $2 AND entry_key = $3 RETURNING entry_key, value_json, created_at, expires_at, (expires_at IS NULL OR expires_at > ${NOW}) AS live`,
        [OWNER, "claims", claimKey("raw", round, i)]
      )
      if (taken.rows[0] === undefined) fail("raw consume missed")
      else JSON.parse(taken.rows[0].value_json)
    })

    const sql = await clientOnly.runPromise(SqlClient)
    const heldScope = await clientOnly.runPromise(Scope.make())
    const held = await clientOnly.runPromise(Scope.extend(sql.reserve, heldScope))
    const selects =
      (run: (statement: SqlText) => Effect.Effect<ReadonlyArray<{ value_json: string }>, SqlError>): Work =>
      (round, n) =>
        clientOnly.runPromise(
          Effect.gen(function* () {
            for (let i = 0; i < n; i++) {
              const rows = yield* run({ text: LOOKUP, params: [OWNER, "threads", scatteredKey(round * 100_003 + i)] })
              if (rows[0] === undefined) fail("client select missed")
              else JSON.parse(rows[0].value_json)
            }
          })
        )
    const lookup = await timeInterleaved(
      {
        ours: ours(plain, (round, i) => Effect.map(threads.lookup(scatteredKey(round * 100_003 + i)), (found) => (Option.isNone(found) ? fail("lookup missed") : undefined))),
        raw: rawLookup,
        client: selects((statement) => executePooled(sql, statement)),
        held: selects((statement) => executePreparedOn(held, statement))
      },
      timing,
      { rotate: true }
    )
    await clientOnly.runPromise(Scope.close(heldScope, Exit.void))
    const claimWith = (runtime: Runtime, handle: NamespaceHandle<Stored>) =>
      ours(runtime, (round, i) => Effect.map(handle.registerIfAbsent(claimKey("ours", round, i), value(counter++)), (won) => (won ? undefined : fail("claim refused"))))
    const claim = await timeInterleaved({ ours: claimWith(plain, claims), raw: rawClaim("claims") }, timing, { rotate: true })
    const cappedClaim = await timeInterleaved({ ours: claimWith(capped, cappedClaims), raw: rawClaim("capped") }, timing, { rotate: true })
    // Consumes take the keys the claims above wrote (rounds 0 … warmup + rounds - 1 of each side).
    const consume = await timeInterleaved(
      {
        ours: ours(plain, (round, i) => Effect.map(claims.consume(claimKey("ours", round, i)), (found) => (Option.isNone(found) ? fail("consume missed") : undefined))),
        raw: rawConsume
      },
      timing,
      { rotate: true }
    )
    const note = (what: string) => `raw pg: one Client, named prepared, autocommit, the same statement (${what}) and clock: one round trip; ours: the keyed store`
    return [
      row("pg.lookup_vs_raw", "ns/op", lookup.ours, lookup.raw, 1.5, note("point SELECT")),
      row("pg.attr.sqlclient_select_vs_raw", "ns/op", lookup.client, lookup.raw, null, "attribution: the same point SELECT on @effect/sql-pg's PgClient (default settings), on a pooled connection reserved for it alone, named prepared, in an Effect loop, none of the store's own code, vs raw pg: what a statement costs that takes its connection from the pool"),
      row("pg.attr.held_connection_select_vs_raw", "ns/op", lookup.held, lookup.raw, null, "attribution: the same point SELECT on one connection of PgClient's pool held for the whole loop (as the store holds one), named prepared, in an Effect loop, none of the store's own code, vs raw pg: the floor of the store's single operations"),
      row("pg.consume_vs_raw", "ns/op", consume.ours, consume.raw, 1.5, note("DELETE … RETURNING; ours under the namespace's lock")),
      row("pg.claim_vs_raw", "ns/op", claim.ours, claim.raw, 1.5, note("INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING; ours: no owner cap")),
      row("pg.claim_owner_cap_vs_raw", "ns/op", cappedClaim.ours, cappedClaim.raw, null, note("the same claim; ours under store.ownerMaxEntries: one call of the claim function, which checks the owner's counters after taking its lock"))
    ]
  } finally {
    await raw.end().catch(() => undefined)
    await clientOnly.dispose()
    await plain.dispose()
    await capped.dispose()
    await database.drop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await runAlone(pgOverheadBench)
