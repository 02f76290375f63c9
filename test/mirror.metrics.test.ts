/**
 * Metrics on time: counts made on the synchronous path (memory hits) and on reads that miss
 * are kept as plain numbers and published by the mirror's background fiber. A persistent
 * cache that is only read — never written — must still export them within a few seconds
 * (the flusher is woken by reads too, not only by writes).
 *
 * A first runtime records five Slack threads and is disposed. A second one (through
 * `PluginRuntime.makeRuntime`) only reads: one `check` of each (a store hit, backfilled)
 * and 20 `check`s of threads never recorded (misses) — `channel_state_misses` must reach 20
 * — then nothing but 50 synchronous `has` of the backfilled threads (memory hits), after
 * which `channel_state_memory_hits` must reach 50; each polled with `Metric.snapshot` under
 * the tags plugin and namespace, at most ~5 s; the reader queues no write.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SlackThreadParticipation } from "../src/channels/SlackThreadParticipation.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type BackendFactory, sqlBackends, type TestDatabase } from "./support/backends.js"
import { eventually } from "./support/eventually.js"
import { counterValue } from "./support/storedRows.js"

const NAMESPACE = "slack.thread-participation"
const KNOWN = 5
const HAS_PER_THREAD = 10
const UNKNOWN = 20

const runtimeOf = (db: TestDatabase, pluginId: string) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      PluginRuntime.makeRuntime({
        pluginId,
        config: { plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } },
        store: db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location },
        channels: ["slack"]
      })
    ),
    (runtime) => Effect.promise(() => runtime.dispose())
  )

const readOnly = (backend: BackendFactory) =>
  it.scopedLive(
    `${backend.name}: a persistent cache that is only read exports channel_state_memory_hits (${KNOWN * HAS_PER_THREAD}) and channel_state_misses (${UNKNOWN}) under plugin/namespace within a few seconds, without any write`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const pluginId = `metrics-${backend.name}`
        const tags = { plugin: pluginId, namespace: NAMESPACE }
        const metric = (name: string) => counterValue(`channel_state_${name}`, tags)

        yield* Effect.scoped(
          Effect.gen(function* () {
            const writer = yield* runtimeOf(db, pluginId)
            const slack = yield* Effect.promise(() => writer.runPromise(SlackThreadParticipation))
            for (let i = 0; i < KNOWN; i++) slack.record("T1", "C1", `known.${i}`)
          })
        )
        const queuedBefore = yield* metric("queued_writes")
        expect(yield* metric("memory_hits"), "memory hits before the reader").toBe(0)

        const reader = yield* runtimeOf(db, pluginId)
        const slack = yield* Effect.promise(() => reader.runPromise(SlackThreadParticipation))
        const run = <A>(effect: Effect.Effect<A>) => Effect.promise(() => reader.runPromise(effect))
        // Async reads first: store hits (backfilled) and misses.
        for (let i = 0; i < KNOWN; i++) expect(yield* run(slack.check("T1", "C1", `known.${i}`)), "a recorded thread after a restart").toBe(true)
        for (let j = 0; j < UNKNOWN; j++) expect(yield* run(slack.check("T1", "C1", `unknown.${j}`))).toBe(false)
        const misses = yield* eventually(metric("misses"), (n) => n >= UNKNOWN)
        expect(misses, "misses published").toBe(UNKNOWN)
        // Then only the synchronous path: nothing but has() is called from here on.
        let hits = 0
        for (let i = 0; i < KNOWN; i++) for (let n = 0; n < HAS_PER_THREAD; n++) if (slack.has("T1", "C1", `known.${i}`)) hits++
        expect(hits, "has() of backfilled threads").toBe(KNOWN * HAS_PER_THREAD)
        const readAt = performance.now()
        const published = yield* eventually(
          Effect.all({ memoryHits: metric("memory_hits"), misses: metric("misses") }),
          (m) => m.memoryHits >= KNOWN * HAS_PER_THREAD
        )
        const afterMs = Math.round(performance.now() - readAt)
        const counts = {
          ...published,
          storeHits: yield* metric("store_hits"),
          backfills: yield* metric("backfills"),
          queuedByReader: (yield* metric("queued_writes")) - queuedBefore
        }
        console.log(`[mirror.metrics] ${backend.name}: ${JSON.stringify(counts)} memory hits visible ${afterMs} ms after the last has()`)
        expect(counts).toEqual({ memoryHits: KNOWN * HAS_PER_THREAD, misses: UNKNOWN, storeHits: KNOWN, backfills: KNOWN, queuedByReader: 0 })
      }),
    60_000
  )

describe("metrics on time: a cache that is only read still exports its counters", () => {
  for (const backend of sqlBackends) readOnly(backend)
})
