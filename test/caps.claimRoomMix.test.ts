/**
 * Tries to break the SQLite claim fast path (sqlCaps.roomForAll): two store instances (two writer
 * connections) mix claims (live, expired and dead-on-arrival rows), registers, write batches,
 * consumes and deletes on a reject-new namespace and an evict-oldest one under one owner cap.
 * After every round: no namespace above its cap, the owner within its cap, and the trigger-kept
 * counts equal to the real row counts.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { sqlBackends, type BackendFactory, storeOf } from "./support/backends.js"

/** A small deterministic generator. */
const rng = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff
  return seed / 0x7fffffff
}

const suite = (backend: BackendFactory) =>
  describe(`claim room under mixed traffic: ${backend.name}`, () => {
    it.scopedLive("two connections, reject-new 8 + evict-oldest 6 under owner cap 12, 25 rounds of mixed traffic: caps hold and counts are exact", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const one = yield* storeOf(db.store({ ownerMaxEntries: 12 }))
        const two = yield* storeOf(db.store({ ownerMaxEntries: 12 }))
        const rej = { owner: "p", namespace: "rej", schema: Schema.String, maxEntries: 8, overflow: "reject-new" as const }
        const evi = { owner: "p", namespace: "evi", schema: Schema.String, maxEntries: 6, overflow: "evict-oldest" as const }
        const handles = [yield* one.open(rej), yield* two.open(rej), yield* one.open(evi), yield* two.open(evi)]
        const random = rng(7)
        const pick = <T>(xs: ReadonlyArray<T>) => xs[Math.floor(random() * xs.length)]!
        const raw = <R extends object>(q: string) => Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe<R>(q)), db.sql!)
        const problems: Array<unknown> = []
        for (let round = 0; round < 25; round++) {
          const now = Date.now()
          const ops = Array.from({ length: 60 }, () => {
            const h = pick(handles)
            const key = `k${Math.floor(random() * 20)}`
            const r = random()
            const when =
              r < 0.15 ? { createdAt: now - 10_000, expiresAt: now - 5_000 } : r < 0.35 ? { expiresAt: now + 30 } : r < 0.5 ? { ttl: "1 hour" as const } : undefined
            const kind = random()
            if (kind < 0.45) return Effect.either(h.registerIfAbsent(key, key, when))
            if (kind < 0.6) return Effect.either(h.register(key, key, when))
            if (kind < 0.75)
              return Effect.either(
                h.writeBatch([
                  { _tag: "Register", key, value: key, createdAt: now, expiresAt: undefined, ...(when && "expiresAt" in when ? when : {}) },
                  { _tag: "Register", key: `${key}b`, value: key, createdAt: now, expiresAt: undefined }
                ])
              )
            if (kind < 0.9) return Effect.either(h.consume(key))
            return Effect.either(h.delete(key))
          })
          const answers = yield* Effect.all(ops, { concurrency: "unbounded" })
          const odd = answers.filter((a) => a._tag === "Left" && (a.left as { reason: string }).reason !== "LimitExceeded")
          if (odd.length > 0) problems.push({ round, odd: odd.map((a) => a._tag === "Left" && (a.left as { reason: string; detail: string }).detail) })
          const real = yield* raw<{ namespace: string; n: number }>("SELECT namespace, count(*) AS n FROM channel_state_entries GROUP BY namespace")
          const counts = yield* raw<{ namespace: string; row_count: number }>("SELECT namespace, row_count FROM channel_state_counts")
          const realOf = (ns: string) => Number(real.find((r) => r.namespace === ns)?.n ?? 0)
          const countOf = (ns: string) => Number(counts.find((r) => r.namespace === ns)?.row_count ?? 0)
          const state = { round, rej: realOf("rej"), evi: realOf("evi"), rejCount: countOf("rej"), eviCount: countOf("evi") }
          if (state.rej > 8 || state.evi > 6 || state.rej + state.evi > 12 || state.rej !== state.rejCount || state.evi !== state.eviCount) problems.push(state)
          // Let the short-lived rows expire (still counted until swept): the next round's claims meet them.
          yield* Effect.sleep("40 millis")
        }
        expect(problems).toEqual([])
      }),
      240_000
    )
  })

for (const backend of sqlBackends) suite(backend)
