/**
 * The write-behind path end to end: a channel cache's flush (batches of
 * maxBatch rows through writeBatch) followed by a restart that reads every row back — on
 * SQLite and PostgreSQL, with the flat-struct fast path's numbers (epoch ms) in the values.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Logger, Option, Schema } from "effect"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { KeyedStore } from "../src/KeyedStore.js"
import { persistentCache } from "../src/layers/channelCache.js"
import { type BackendFactory, sqlBackends, type TestDatabase } from "./support/backends.js"

const quiet = Logger.remove(Logger.defaultLogger)

const withSql = <A>(db: TestDatabase, f: (sql: SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.orDie(Effect.scoped(Effect.provide(Effect.flatMap(SqlClient, f), db.sql as Layer.Layer<SqlClient>)))

interface Raw {
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
  readonly ct?: string
  readonly et?: string
}

const rows = (db: TestDatabase, namespace: string) =>
  withSql(db, (sql) =>
    db.backend === "sqlite"
      ? sql<Raw>`SELECT entry_key, value_json, created_at, expires_at, typeof(created_at) AS ct, typeof(expires_at) AS et FROM channel_state_entries WHERE namespace = ${namespace}`
      : sql<Raw>`SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries WHERE namespace = ${namespace}`
  )

const countsOf = (db: TestDatabase, namespace: string) =>
  withSql(db, (sql) =>
    Effect.gen(function* () {
      const c = yield* sql<{ row_count: number | string }>`SELECT row_count FROM channel_state_counts WHERE namespace = ${namespace}`
      const r = yield* sql<{ n: number | string }>`SELECT count(*) AS n FROM channel_state_entries WHERE namespace = ${namespace}`
      return { counted: Number(c[0]?.row_count ?? 0), real: Number(r[0]!.n) }
    })
  )

const storeLayer = (db: TestDatabase) => Layer.merge(db.store(), quiet)

const Value = Schema.Struct({ agentId: Schema.optional(Schema.String), repliedAt: Schema.Number, seq: Schema.Number })
type Value = typeof Value.Type
// Shutdown waits for the queue up to `shutdownFlushTimeout` (5 s by default) and logs the rest as
// lost; at maxBatch 1 on a loaded machine 1 501 PostgreSQL round trips can take longer than that.
// What this suite proves is that a flush that is given the time writes every row exactly, so the
// bound is set well past any machine's speed (the bound itself is tried in mirror.shutdown).
const shutdownFlushTimeout = Duration.seconds(100)
const spec = { feature: "f", namespace: "flush.restart", schema: Value, memoryMaxEntries: 10_000, storeMaxEntries: 5000, ttl: Duration.hours(24) }

const suite = (backend: BackendFactory) =>
  describe(`write-behind flush then restart: ${backend.name}`, () => {
    for (const maxBatch of [1, 499, 500, 501, 1000]) {
      it.scopedLive(`1 501 entries (each written twice, keys out of order), maxBatch ${maxBatch}: after shutdown and restart every row reads back exactly`, () =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          const n = 1501
          const t = Date.now()
          const key = (i: number) => `T${String((i * 7919) % n).padStart(5, "0")}`
          const valueAt = (i: number): Value => (i % 2 === 0 ? { repliedAt: t - i, seq: 1_000_000_000 + i * 1013 } : { agentId: `a${i}`, repliedAt: t - i, seq: -i - 0.5 })
          yield* Effect.scoped(
            Effect.gen(function* () {
              const context = yield* Layer.build(storeLayer(db))
              const cache = yield* Effect.provide(persistentCache(spec, { pluginId: "p", mirror: { flushInterval: "20 millis", maxBatch, shutdownFlushTimeout } }), context)
              for (let i = 0; i < n; i++) cache.set(key(i), { repliedAt: 0, seq: 0 }, t - i - 5, t - i + 3_600_000)
              for (let i = 0; i < n; i++) cache.set(key(i), valueAt(i), t - i, t - i + 86_400_000)
            })
          )
          const stored = yield* rows(db, spec.namespace)
          expect(stored.length).toBe(n)
          expect(yield* countsOf(db, spec.namespace)).toEqual({ counted: n, real: n })
          const byKey = new Map(stored.map((r) => [r.entry_key, r]))
          const problems: Array<unknown> = []
          for (let i = 0; i < n; i++) {
            const r = byKey.get(key(i))
            const want = { json: JSON.stringify(valueAt(i)), createdAt: t - i, expiresAt: t - i + 86_400_000, ct: "integer", et: "integer" }
            const got = r === undefined ? undefined : { json: r.value_json, createdAt: Number(r.created_at), expiresAt: Number(r.expires_at), ct: r.ct ?? "integer", et: r.et ?? "integer" }
            if (JSON.stringify(got) !== JSON.stringify(want)) problems.push({ key: key(i), got, want })
          }
          expect(problems.slice(0, 5)).toEqual([])
          // Restart: every entry reads back through the store with its original timestamps.
          yield* Effect.scoped(
            Effect.gen(function* () {
              const context = yield* Layer.build(storeLayer(db))
              const cache = yield* Effect.provide(persistentCache(spec, { pluginId: "p" }), context)
              const misses: Array<unknown> = []
              for (let i = 0; i < n; i++) {
                const found = yield* cache.lookup(key(i))
                const got = Option.map(found, (e) => ({ value: e.value, createdAt: e.createdAt, expiresAt: e.expiresAt }))
                const want = { value: valueAt(i), createdAt: t - i, expiresAt: t - i + 86_400_000 }
                if (Option.isNone(got) || JSON.stringify(got.value) !== JSON.stringify(want)) misses.push({ key: key(i), got: Option.getOrUndefined(got), want })
              }
              expect(misses.slice(0, 5)).toEqual([])
            })
          )
        }),
        120_000
      )
    }

    it.scopedLive("Slack layerPersistent: 1 000 threads recorded, shutdown, restart: every thread found with its repliedAt; 1 200 threads keep the newest 1 000 (counts exact)", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const layer = Layer.provide(Slack.layerPersistent({ pluginId: "slack", mirror: { flushInterval: "20 millis", shutdownFlushTimeout } }), storeLayer(db))
        const recorded = new Map<string, number>()
        yield* Effect.scoped(
          Effect.gen(function* () {
            const slack = yield* Slack.SlackThreadParticipation
            for (let i = 0; i < 1000; i++) {
              slack.record("acct", "C1", `${1_700_000_000 + i}.${String(i).padStart(6, "0")}`, i % 3 === 0 ? { agentId: `agent-${i}` } : undefined)
            }
          }).pipe(Effect.provide(layer))
        )
        const stored = yield* rows(db, Slack.spec.namespace)
        expect(stored.length).toBe(1000)
        for (const r of stored) {
          recorded.set(r.entry_key, Number(r.created_at))
          const v = JSON.parse(r.value_json) as { repliedAt: number }
          expect(v.repliedAt).toBe(Number(r.created_at))
          expect(r.value_json).toBe(JSON.stringify(JSON.parse(r.value_json)))
          if (db.backend === "sqlite") expect([r.ct, r.et]).toEqual(["integer", "integer"])
        }
        yield* Effect.scoped(
          Effect.gen(function* () {
            const slack = yield* Slack.SlackThreadParticipation
            let found = 0
            for (let i = 0; i < 1000; i++) {
              const got = yield* slack.get("acct", "C1", `${1_700_000_000 + i}.${String(i).padStart(6, "0")}`)
              if (Option.isSome(got) && got.value.repliedAt === recorded.get(`acct:C1:${1_700_000_000 + i}.${String(i).padStart(6, "0")}`) && (i % 3 === 0 ? got.value.agentId === `agent-${i}` : got.value.agentId === undefined)) found++
            }
            expect(found).toBe(1000)
            for (let i = 1000; i < 1200; i++) slack.record("acct", "C2", `${i}`)
          }).pipe(Effect.provide(layer))
        )
        expect((yield* rows(db, Slack.spec.namespace)).length).toBe(1000)
        expect(yield* countsOf(db, Slack.spec.namespace)).toEqual({ counted: 1000, real: 1000 })
        void KeyedStore
      }),
      120_000
    )
  })

for (const backend of sqlBackends) suite(backend)
