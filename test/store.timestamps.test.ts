/**
 * Attacks on guarantee 7 ("timestamps: whole epoch ms in [0, 8.64e15] on every backend,
 * fractions rounded the same way, anything else InvalidInput; every KeyedStore failure is a
 * typed StateStoreError, never a defect").
 */
import * as path from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Effect, Exit, Layer, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import * as SqlStore from "../src/layers/store/SqlStore.js"
import { MAX_EPOCH_MILLIS } from "../src/layers/store/storeRules.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"

/** The live clock of a host whose clock runs `offset` ms off (negative: slow). */
const skewedClock = (offset: number): Clock.Clock => {
  const live = Clock.make()
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => live.unsafeCurrentTimeMillis() + offset,
    currentTimeMillis: Effect.sync(() => live.unsafeCurrentTimeMillis() + offset),
    unsafeCurrentTimeNanos: () => live.unsafeCurrentTimeNanos() + BigInt(offset) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => live.unsafeCurrentTimeNanos() + BigInt(offset) * 1_000_000n),
    sleep: (d) => live.sleep(d)
  } as Clock.Clock
}

describe.runIf(pgUrl !== undefined)("the database clock never stamps past the largest date (pg)", () => {
  it.scopedLive("a TTL the store accepted never makes an expiry past 8.64e15", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      const context = yield* Layer.build(PgStore.layer({ url }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 10 })
      // A host whose clock runs a minute slow: exactly what "one clock per database" is for.
      const results = yield* Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const ttl = MAX_EPOCH_MILLIS - now - 1_000 // createdAt + ttl = 8.64e15 - 1 s by this host's clock: accepted
        const registered = yield* Effect.exit(ns.register("a", 1, { ttl }))
        const claimed = yield* Effect.exit(ns.registerIfAbsent("b", 2, { ttl }))
        return { registered, claimed }
      }).pipe(Effect.withClock(skewedClock(-60_000)))
      const a = yield* ns.lookupEntry("a")
      const b = yield* ns.lookupEntry("b")
      const stamps = {
        register: Exit.isSuccess(results.registered) ? Option.getOrUndefined(a)?.expiresAt : "InvalidInput",
        registerIfAbsent: Exit.isSuccess(results.claimed) ? Option.getOrUndefined(b)?.expiresAt : "InvalidInput"
      }
      // Either the write is refused (InvalidInput) or its expiry is at most the largest date.
      const outOfRange = Object.entries(stamps).filter(([, stamp]) => stamp !== "InvalidInput" && !(typeof stamp === "number" && stamp <= MAX_EPOCH_MILLIS))
      expect({ stamps, outOfRange }).toEqual({ stamps, outOfRange: [] })
    })
  )
})

/** A plain-looking value whose field throws when read (a getter over a missing resource, say). */
const throwingValue = () => ({
  get field(): unknown {
    throw new Error("getter exploded")
  }
})

const sqlStoreOverSqlite = (filename: string) =>
  SqlStore.layer().pipe(Layer.provide(SqliteClient.layer({ filename })), Layer.provide(Reactivity.layer))

describe("a caller's bad value is a typed InvalidInput, never a defect", () => {
  const cases: ReadonlyArray<readonly [string, (dir: string) => Layer.Layer<KeyedStore, unknown>]> = [
    ["MemoryStore", () => MemoryStore.layer()],
    ["SqlStore.layer over a SqliteClient", (dir) => sqlStoreOverSqlite(path.join(dir, "sql.sqlite"))],
    ["SqliteStore", (dir) => SqliteStore.layer({ filename: path.join(dir, "store.sqlite") })]
  ]
  for (const [name, layerOf] of cases) {
    it.scoped(`${name}: register of a value whose getter throws`, () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const context = yield* Layer.build(layerOf(dir))
        const store = Effect.runSync(Effect.provide(KeyedStore, context))
        const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Unknown, maxEntries: 10 })
        const exit = yield* Effect.exit(ns.register("k", throwingValue()))
        const outcome = Exit.match(exit, {
          onSuccess: () => "succeeded",
          onFailure: (cause) =>
            Cause.isDie(cause) ? `defect: ${String(Cause.squash(cause))}` : `failure: ${(Cause.squash(cause) as { reason?: string }).reason}`
        })
        expect({ store: name, outcome }).toEqual({ store: name, outcome: "failure: InvalidInput" })
      })
    )
  }
})

describe("fractions round the same way on every backend", () => {
  it.scoped("createdAt -0.4 reads back as 0 from the memory store, as from SQLite", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const read = (layer: Layer.Layer<KeyedStore, unknown>) =>
        Effect.gen(function* () {
          const context = yield* Layer.build(layer)
          const store = Effect.runSync(Effect.provide(KeyedStore, context))
          const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 10 })
          yield* ns.register("k", 1, { createdAt: -0.4, expiresAt: 10_000 })
          return Option.getOrThrow(yield* ns.lookupEntry("k")).createdAt
        })
      const memory = yield* read(MemoryStore.layer())
      const sqlite = yield* read(SqliteStore.layer({ filename: path.join(dir, "s.sqlite") }))
      expect({ sqliteIsZero: Object.is(sqlite, 0), memoryIsZero: Object.is(memory, 0) }).toEqual({ sqliteIsZero: true, memoryIsZero: true })
    })
  )
})
