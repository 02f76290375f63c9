/**
 * Attacks on "the queued BatchOp is the memory entry": memory and the write-behind queue
 * never corrupt each other — a later write of the key, a delete, a take, an eviction from
 * the memory bound, a refused write — and read-your-writes/deletes hold. A real SQLite file,
 * the persistent cache as the channels build it, a 5 ms flush interval.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Logger, Option, Schema, TestClock } from "effect"
import * as Discord from "../src/channels/DiscordInteractionRegistry.js"
import { KeyedStore } from "../src/KeyedStore.js"
import { memoryCache, persistentCache } from "../src/layers/channelCache.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"
import { eventually } from "./support/eventually.js"
import { sqliteRowsNow } from "./support/storedRows.js"

const Value = Schema.Struct({ s: Schema.String })
const spec = { feature: "f", namespace: "attack.shared", schema: Value, memoryMaxEntries: 2, storeMaxEntries: 100, ttl: Duration.hours(1) }
const quiet = Logger.remove(Logger.defaultLogger)

const withCache = Effect.gen(function* () {
  const dir = yield* tempDir
  const filename = path.join(dir, "s.sqlite")
  const context = yield* Layer.build(Layer.merge(SqliteStore.layer({ filename }), quiet))
  const cache = yield* Effect.provide(persistentCache(spec, { pluginId: "p", mirror: { flushInterval: "5 millis" } }), context)
  const store = Effect.runSync(Effect.provide(KeyedStore, context))
  const ns = yield* store.open({ owner: "p", namespace: spec.namespace, schema: Value, maxEntries: spec.storeMaxEntries, ttl: spec.ttl })
  const storedJson = (key: string) => sqliteRowsNow(filename, "p").find((row) => row.key === key)?.valueJson
  return { cache, ns, storedJson }
})

const sOf = (found: Option.Option<{ readonly value: { readonly s: string } }>) => (Option.isSome(found) ? found.value.value.s : undefined)

describe("the queued op shared with memory", () => {
  it.scopedLive("a second write of a key before the flush, a delete, a take, an eviction from the 2-entry memory bound: memory, queue and store agree", () =>
    Effect.gen(function* () {
      const { cache, storedJson } = yield* withCache
      const t = cache.now()
      const later = t + 3_600_000
      cache.set("a", { s: "a1" }, t, later)
      cache.set("a", { s: "a2" }, t, later)
      cache.set("d", { s: "d1" }, t, later)
      cache.delete("d")
      cache.set("t", { s: "t1" }, t, later)
      const taken = yield* cache.take("t")
      cache.set("e1", { s: "e1" }, t, later)
      cache.set("e2", { s: "e2" }, t, later)
      cache.set("e3", { s: "e3" }, t, later) // the bound (2) evicts older keys from memory; their queued writes stay
      // Before any flush: read-your-writes and read-your-deletes.
      expect(sOf(yield* cache.peek("a"))).toBe("a2")
      expect(sOf(yield* cache.peek("d"))).toBeUndefined()
      expect(Option.getOrUndefined(taken)?.s).toBe("t1")
      expect(sOf(yield* cache.peek("t"))).toBeUndefined()
      expect(sOf(yield* cache.peek("e1"))).toBe("e1")
      // After the flush.
      yield* eventually(Effect.sync(() => storedJson("e3")), (json) => json !== undefined)
      expect([storedJson("a"), storedJson("d"), storedJson("t"), storedJson("e1")]).toEqual(['{"s":"a2"}', undefined, undefined, '{"s":"e1"}'])
      expect(sOf(yield* cache.lookup("a"))).toBe("a2")
      expect(sOf(yield* cache.lookup("e1"))).toBe("e1")
      expect(sOf(yield* cache.lookup("t"))).toBeUndefined()
    })
  )

  it.scopedLive("a refused write (over 1 MiB) and then a valid write of the same key: the valid one lands and memory answers it", () =>
    Effect.gen(function* () {
      const { cache, storedJson } = yield* withCache
      const t = cache.now()
      cache.set("k", { s: "x".repeat(1_100_000) }, t, t + 3_600_000)
      yield* Effect.sleep("50 millis")
      expect(storedJson("k")).toBeUndefined()
      cache.set("k", { s: "small" }, t, t + 3_600_000)
      yield* eventually(Effect.sync(() => storedJson("k")), (json) => json !== undefined)
      expect(storedJson("k")).toBe('{"s":"small"}')
      expect(cache.get("k")?.value.s).toBe("small")
    })
  )

  it.scoped("read-your-writes on the sync path: an entry set with a sub-millisecond remaining lifetime is visible at once, as in the memory-only cache (TestClock frozen)", () =>
    Effect.gen(function* () {
      const persistent = (yield* withCache).cache
      const memoryOnly = yield* memoryCache(spec)
      yield* TestClock.setTime(1_000)
      for (const cache of [memoryOnly, persistent]) cache.set("k", { s: "v" }, 1_000, 1_000.4)
      expect({ memoryOnly: memoryOnly.get("k")?.value.s, persistent: persistent.get("k")?.value.s }).toEqual({ memoryOnly: "v", persistent: "v" })
    })
  )

  it.scoped("Discord register with a 0.4 ms ttl then an immediate peek: the persistent registry answers as the memory-only one does (TestClock frozen)", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const answer = (layer: Layer.Layer<Discord.DiscordInteractionRegistry, unknown>) =>
        Effect.scoped(
          Effect.flatMap(Discord.DiscordInteractionRegistry, (discord) =>
            Effect.zipRight(
              Effect.sync(() => discord.register({ entries: [{ id: "c1", kind: "button", label: "Go" }], ttl: Duration.millis(0.4) })),
              Effect.map(discord.resolveComponent({ id: "c1", consume: false }), Option.isSome)
            )
          ).pipe(Effect.provide(layer))
        )
      const memoryOnly = yield* answer(Discord.layer)
      const persistent = yield* answer(
        Layer.provide(Discord.layerPersistent({ pluginId: "p", mirror: { flushInterval: "5 millis" } }), Layer.merge(SqliteStore.layer({ filename: path.join(dir, "d.sqlite") }), quiet))
      )
      expect({ memoryOnly, persistent }).toEqual({ memoryOnly: true, persistent: true })
    })
  )
})

describe("write-behind into a namespace never written before, under an owner cap (consequence of the batch-wide LimitExceeded)", () => {
  it.scopedLive("ownerMaxEntries 5, 4 rows elsewhere, 3 queued writes: the one that fits lands (the others are refused alone) — the flush is not retried forever", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "s.sqlite")
      const context = yield* Layer.build(Layer.merge(SqliteStore.layer({ filename, ownerMaxEntries: 5 }), quiet))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const other = yield* store.open({ owner: "p", namespace: "other", schema: Schema.String, maxEntries: 10 })
      for (const k of ["o1", "o2", "o3", "o4"]) yield* other.register(k, k)
      const cache = yield* Effect.provide(persistentCache(spec, { pluginId: "p", mirror: { flushInterval: "5 millis" } }), context)
      const t = cache.now()
      for (const k of ["k1", "k2", "k3"]) cache.set(k, { s: k }, t, t + 3_600_000)
      const rows = yield* eventually(
        Effect.sync(() => sqliteRowsNow(filename, "p").filter((row) => row.namespace === spec.namespace).length),
        (n) => n > 0
      )
      expect(rows).toBe(1)
    })
  )
})
