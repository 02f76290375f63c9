/**
 * Attack on 4bd6c44 `aliveOnArrival`: with the database clock, a row whose explicit expiresAt is
 * decades in the past (dead by every clock) is treated as alive for making room. The memory
 * store (reference) lets it take no room.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Schema } from "effect"
import { type BatchOp, KeyedStore } from "../src/KeyedStore.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"

type Scenario = (store: KeyedStore["Type"]) => Effect.Effect<unknown, unknown>

const onEach = (scenario: Scenario, settings: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const run = (layer: Layer.Layer<KeyedStore, unknown>) =>
      Effect.gen(function* () {
        const context = yield* Layer.build(layer)
        const store = Effect.runSync(Effect.provide(KeyedStore, context))
        return yield* scenario(store)
      })
    const results: Record<string, unknown> = { memory: yield* run(MemoryStore.layer(settings)) }
    const dir = yield* tempDir
    results.sqliteDbClock = yield* run(SqliteStore.layer({ filename: path.join(dir, "d.sqlite"), clock: "database", ...settings }))
    results.sqliteAppClock = yield* run(SqliteStore.layer({ filename: path.join(dir, "a.sqlite"), ...settings }))
    if (pgUrl !== undefined) {
      const { url } = yield* freshPgDatabase(pgUrl)
      results.pgDbClock = yield* run(PgStore.layer({ url, ...settings }))
    }
    return results
  })

// 1970: dead by any clock.
const DEAD = { createdAt: 1_000, expiresAt: 2_000 }

describe("rows dead on arrival under the database clock", () => {
  it.scopedLive("evict-oldest maxEntries 2: a batch of 2 live rows + 1 long-dead row keeps both live rows (memory), never evicts a live one for a dead one", () =>
    Effect.gen(function* () {
      const results = yield* onEach((store) =>
        Effect.gen(function* () {
          const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.String, maxEntries: 2 })
          const base = Date.now() - 60_000
          const batch: Array<BatchOp<string>> = [
            { _tag: "Register", key: "a", value: "a", createdAt: base, expiresAt: undefined },
            { _tag: "Register", key: "b", value: "b", createdAt: base + 1, expiresAt: undefined },
            // Newest by createdAt among the batch's rows? No: give it the newest createdAt but an expiry long past.
            { _tag: "Register", key: "z", value: "z", createdAt: base + 2, expiresAt: base + 3 }
          ]
          const r = yield* ns.writeBatch(batch)
          return { refused: r.refused.map((x) => x.key), stored: (yield* ns.entries).map((e) => e.key) }
        })
      )
      expect(results.memory).toEqual({ refused: [], stored: ["a", "b"] })
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((k) => [k, results.memory])))
    }),
    60_000
  )

  it.scopedLive("reject-new maxEntries 2 holding 1: a batch of one dead row and one live row lands the live row (memory), it is not refused for the dead one", () =>
    Effect.gen(function* () {
      const results = yield* onEach((store) =>
        Effect.gen(function* () {
          const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.String, maxEntries: 2, overflow: "reject-new" as const })
          yield* ns.register("p", "p")
          const batch: Array<BatchOp<string>> = [
            { _tag: "Register", key: "a-dead", value: "x", ...DEAD },
            { _tag: "Register", key: "b-live", value: "y", createdAt: Date.now(), expiresAt: undefined }
          ]
          const r = yield* ns.writeBatch(batch)
          return { refused: r.refused.map((x) => `${x.key}:${x.error.reason}`), stored: (yield* ns.entries).map((e) => e.key).sort() }
        })
      )
      expect(results.memory).toEqual({ refused: [], stored: ["b-live", "p"] })
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((k) => [k, results.memory])))
    }),
    60_000
  )

  it.scopedLive("reject-new maxEntries 1, full: registerIfAbsent of a long-dead row answers as memory does (true, takes no room)", () =>
    Effect.gen(function* () {
      const results = yield* onEach((store) =>
        Effect.gen(function* () {
          const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.String, maxEntries: 1, overflow: "reject-new" as const })
          yield* ns.register("p", "p")
          const r = yield* Effect.either(ns.registerIfAbsent("z", "z", DEAD))
          return Either.isRight(r) ? r.right : r.left.reason
        })
      )
      expect(results.memory).toBe(true)
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((k) => [k, results.memory])))
    }),
    60_000
  )

  it.scopedLive("ownerMaxEntries 2, evict-oldest namespace holding 1: a batch with a dead row and a live row lands the live row (memory)", () =>
    Effect.gen(function* () {
      const results = yield* onEach(
        (store) =>
          Effect.gen(function* () {
            const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.String, maxEntries: 10 })
            yield* ns.register("p", "p")
            const batch: Array<BatchOp<string>> = [
              { _tag: "Register", key: "a-dead", value: "x", ...DEAD },
              { _tag: "Register", key: "b-live", value: "y", createdAt: Date.now(), expiresAt: undefined }
            ]
            const r = yield* ns.writeBatch(batch)
            return { refused: r.refused.map((x) => `${x.key}:${x.error.reason}`), stored: (yield* ns.entries).map((e) => e.key).sort() }
          }),
        { ownerMaxEntries: 2 }
      )
      expect(results.memory).toEqual({ refused: [], stored: ["b-live", "p"] })
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((k) => [k, results.memory])))
    }),
    60_000
  )
})
