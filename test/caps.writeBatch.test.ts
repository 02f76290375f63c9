/**
 * Attacks on writeBatch: "a refused op in a batch is refused alone (the others land)",
 * "reject-new never exceeds maxEntries", "PostgreSQL and SQLite give the same results".
 *
 * PostgreSQL's default clock is the database's (`clock: "database"`): liveness is decided by
 * the database. A host clock that runs ahead of the database (the project tests a host 10
 * minutes fast, claims.clockSkew) makes the batch's own pre-check (host clock) and the cap
 * enforcement (database clock) disagree about whether a row is live.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Either, Layer, Schema } from "effect"
import { type BatchOp, KeyedStore } from "../src/KeyedStore.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"

const SKEW = 60_000

/** Effect's live clock, running SKEW ms ahead (what a host with a fast clock reads). */
const fastClock: Clock.Clock = (() => {
  const live = Clock.make()
  const skewed = Object.create(live) as Record<string, unknown>
  skewed.unsafeCurrentTimeMillis = () => Date.now() + SKEW
  skewed.unsafeCurrentTimeNanos = () => BigInt(Date.now() + SKEW) * 1_000_000n
  skewed.currentTimeMillis = Effect.sync(() => Date.now() + SKEW)
  skewed.currentTimeNanos = Effect.sync(() => BigInt(Date.now() + SKEW) * 1_000_000n)
  return skewed as unknown as Clock.Clock
})()

const scenario = (layer: Layer.Layer<KeyedStore, unknown>, cap: "namespace" | "owner" = "namespace") =>
  Effect.gen(function* () {
    const context = yield* Layer.build(layer)
    const store = Effect.runSync(Effect.provide(KeyedStore, context))
    const ns = yield* store.open(
      cap === "namespace"
        ? { owner: "p", namespace: "capped", schema: Schema.String, maxEntries: 2, overflow: "reject-new" as const }
        : { owner: "p", namespace: "capped", schema: Schema.String, maxEntries: 10 }
    )
    yield* ns.register("a", "a1")
    yield* ns.register("b", "b1")
    // Host clock 60 s fast. "c" expires 30 s from the real now: live for the database, past for the host.
    const batch: Array<BatchOp<string>> = [
      { _tag: "Register", key: "a", value: "a2", createdAt: Date.now() + SKEW, expiresAt: undefined },
      { _tag: "Register", key: "c", value: "c1", createdAt: Date.now(), expiresAt: Date.now() + 30_000 }
    ]
    const outcome = yield* Effect.either(Effect.withClock(ns.writeBatch(batch), fastClock))
    const a = yield* ns.lookup("a")
    const size = yield* ns.size
    return {
      outcome: Either.isRight(outcome) ? { refused: outcome.right.refused.map((r) => `${r.key}:${r.error.reason}`) } : { failed: outcome.left.reason },
      a: a._tag === "Some" ? a.value : undefined,
      liveRowsAtMost2: size <= 2
    }
  })

describe("writeBatch under a host clock ahead of the database", () => {
  it.scopedLive("sqlite: the batch succeeds and the replace of a lands (reference)", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const result = yield* scenario(SqliteStore.layer({ filename: path.join(dir, "s.sqlite") }))
      expect(result.outcome).not.toHaveProperty("failed")
      expect(result.a).toBe("a2")
      expect(result.liveRowsAtMost2).toBe(true)
    })
  )

  it.scopedLive(
    "pg (database clock): a row the host thinks expired but the database holds live is refused alone — the batch does not fail, the replace of a lands",
    () =>
      Effect.gen(function* () {
        if (pgUrl === undefined) return
        const { url } = yield* freshPgDatabase(pgUrl)
        const result = yield* scenario(PgStore.layer({ url }))
        expect(result.outcome).not.toHaveProperty("failed")
        expect(result.a).toBe("a2")
        expect(result.liveRowsAtMost2).toBe(true)
      }),
    60_000
  )

  it.scopedLive(
    "pg (database clock), evict-oldest namespace under ownerMaxEntries 2: the same batch must not fail as a whole",
    () =>
      Effect.gen(function* () {
        if (pgUrl === undefined) return
        const { url } = yield* freshPgDatabase(pgUrl)
        const result = yield* scenario(PgStore.layer({ url, ownerMaxEntries: 2 }), "owner")
        expect(result.outcome).not.toHaveProperty("failed")
        expect(result.a).toBe("a2")
      }),
    60_000
  )
})

/**
 * An evict-oldest namespace of an owner with a cap (`ownerMaxEntries`), other rows of the
 * owner elsewhere. The memory store (the reference model, and what one write at a time does)
 * lets in as many new rows as the owner has room for, in key order, and refuses the rest
 * alone. Same batch, same starting rows, on every backend.
 */
const ownerCapScenario = (layer: Layer.Layer<KeyedStore, unknown>, prefill: ReadonlyArray<string>, keys: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(layer)
    const store = Effect.runSync(Effect.provide(KeyedStore, context))
    const other = yield* store.open({ owner: "p", namespace: "other", schema: Schema.String, maxEntries: 10 })
    for (const k of ["o1", "o2", "o3", "o4"]) yield* other.register(k, k)
    const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.String, maxEntries: 3 })
    const base = Date.now() - 10_000
    for (const [i, k] of prefill.entries()) yield* ns.register(k, k, { createdAt: base - 1000 + i })
    const batch: Array<BatchOp<string>> = keys.map((key, i) => ({ _tag: "Register", key, value: key, createdAt: base + i, expiresAt: undefined }))
    const result = yield* Effect.either(ns.writeBatch(batch))
    const stored = (yield* ns.entries).map((e) => e.key).sort()
    if (Either.isLeft(result)) return { failedAsAWhole: result.left.reason, stored }
    const refused = result.right.refused.map((r) => r.key).sort()
    const accountedFor = [...stored.filter((k) => keys.includes(k)), ...refused].sort()
    return { stored, refused, unaccounted: keys.filter((k) => !accountedFor.includes(k)) }
  })

const onEveryBackend = (ownerMaxEntries: number, prefill: ReadonlyArray<string>, keys: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const results: Record<string, unknown> = { memory: yield* ownerCapScenario(MemoryStore.layer({ ownerMaxEntries }), prefill, keys) }
    const dir = yield* tempDir
    results.sqlite = yield* ownerCapScenario(SqliteStore.layer({ filename: path.join(dir, "s.sqlite"), ownerMaxEntries }), prefill, keys)
    if (pgUrl !== undefined) {
      const { url } = yield* freshPgDatabase(pgUrl)
      results.pg = yield* ownerCapScenario(PgStore.layer({ url, ownerMaxEntries }), prefill, keys)
    }
    return results
  })

describe("writeBatch in an evict-oldest namespace under an owner cap (4 rows in another namespace)", () => {
  it.scopedLive("a namespace never written before, ownerMaxEntries 5, a batch of 2 new rows: one lands, one is refused alone — on every backend as on memory", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend(5, [], ["k1", "k2"])
      expect(results.memory).toEqual({ stored: ["k1"], refused: ["k2"], unaccounted: [] })
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((name) => [name, results.memory])))
    }),
    60_000
  )

  it.scopedLive("a namespace holding 1 row, ownerMaxEntries 6, a batch of 5 new rows (more than maxEntries 3): the same rows land and are refused as on memory; none is dropped unreported", () =>
    Effect.gen(function* () {
      const results = yield* onEveryBackend(6, ["a0"], ["k1", "k2", "k3", "k4", "k5"])
      expect(results.memory).toEqual({ stored: ["a0", "k1"], refused: ["k2", "k3", "k4", "k5"], unaccounted: [] })
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((name) => [name, results.memory])))
    }),
    60_000
  )
})

describe("claims (registerIfAbsent, coalesced into one batch) in a namespace never written before, under an owner cap", () => {
  const claimsOn = (layer: Layer.Layer<KeyedStore, unknown>) =>
    Effect.gen(function* () {
      const context = yield* Layer.build(layer)
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const other = yield* store.open({ owner: "p", namespace: "other", schema: Schema.String, maxEntries: 10 })
      for (const k of ["o1", "o2", "o3", "o4"]) yield* other.register(k, k)
      const ns = yield* store.open({ owner: "p", namespace: "claims", schema: Schema.String, maxEntries: 10 })
      const answers = yield* Effect.forEach(["c1", "c2", "c3"], (k) => Effect.either(ns.registerIfAbsent(k, k)), { concurrency: "unbounded" })
      return {
        won: answers.filter((a) => Either.isRight(a) && a.right === true).length,
        refused: answers.filter((a) => Either.isLeft(a) && a.left.reason === "LimitExceeded").length
      }
    })
  it.scopedLive("ownerMaxEntries 5, 3 concurrent claims of new keys: exactly one wins (the owner has room for one), two are refused — as on memory", () =>
    Effect.gen(function* () {
      const results: Record<string, unknown> = { memory: yield* claimsOn(MemoryStore.layer({ ownerMaxEntries: 5 })) }
      const dir = yield* tempDir
      results.sqlite = yield* claimsOn(SqliteStore.layer({ filename: path.join(dir, "s.sqlite"), ownerMaxEntries: 5 }))
      if (pgUrl !== undefined) {
        const { url } = yield* freshPgDatabase(pgUrl)
        results.pg = yield* claimsOn(PgStore.layer({ url, ownerMaxEntries: 5 }))
      }
      expect(results.memory).toEqual({ won: 1, refused: 2 })
      expect(results).toEqual(Object.fromEntries(Object.keys(results).map((name) => [name, results.memory])))
    }),
    60_000
  )
})
