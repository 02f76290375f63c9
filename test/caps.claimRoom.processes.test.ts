/**
 * Tries to break the SQLite claim fast path across OS processes: three processes
 * (test/support/capsMixWorker.ts) mix claims, registers, write batches, consumes and deletes
 * on a reject-new namespace (8) and an evict-oldest one (6) under an owner cap of 12. The test
 * process samples, in one read transaction each time, the real rows and the trigger-kept
 * counts: neither cap is ever exceeded in a committed state, and the counts always equal the rows.
 */
import * as path from "node:path"
import Database from "better-sqlite3"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, type Layer } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { eviNamespace, OWNER_CAP, rejNamespace } from "./support/capsMixWorker.js"
import { sqliteBackend } from "./support/backends.js"
import { resultsOf, spawnGroup } from "./support/workerGroup.js"

type Line = { type: "ready"; worker: string } | { type: "result"; worker: string; odd: ReadonlyArray<string> } | { type: "fatal"; worker: string; message: string }

const nextTick = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

describe("claim room across processes (sqlite)", () => {
  it.scopedLive("3 processes × 30 rounds of mixed traffic: caps never exceeded, counts always exact", () =>
    Effect.gen(function* () {
      const db = yield* sqliteBackend.fresh
      const file = db.location!
      yield* Effect.scoped(
        Effect.provide(
          Effect.flatMap(KeyedStore, (s) => Effect.zip(s.open(rejNamespace), s.open(eviNamespace))),
          SqliteStore.layer({ filename: file, ownerMaxEntries: OWNER_CAP }) as Layer.Layer<KeyedStore>
        )
      )
      const group = yield* spawnGroup<Line>(path.join("test", "support", "capsMixWorker.ts"), ["a", "b", "c"], (goFile, name) => [file, goFile, name, "30"])
      yield* group.ready
      const reader = new Database(file, { readonly: true })
      reader.pragma("busy_timeout = 5000")
      const sample = reader.transaction(() => {
        const real = reader.prepare("SELECT namespace, count(*) AS n FROM channel_state_entries GROUP BY namespace").all() as Array<{ namespace: string; n: number }>
        const counts = reader.prepare("SELECT namespace, row_count AS n FROM channel_state_counts").all() as Array<{ namespace: string; n: number }>
        return { real, counts }
      })
      const problems: Array<unknown> = []
      let samples = 0
      let observing = true
      const observer = yield* Effect.fork(
        Effect.whileLoop({
          while: () => observing,
          body: () =>
            Effect.zipRight(
              Effect.sync(() => {
                const { real, counts } = sample()
                samples++
                const of = (xs: Array<{ namespace: string; n: number }>, ns: string) => Number(xs.find((r) => r.namespace === ns)?.n ?? 0)
                const s = { rej: of(real, "rej"), evi: of(real, "evi"), rejCount: of(counts, "rej"), eviCount: of(counts, "evi") }
                if (s.rej > 8 || s.evi > 6 || s.rej + s.evi > OWNER_CAP || s.rej !== s.rejCount || s.evi !== s.eviCount) problems.push(s)
              }),
              nextTick
            ),
          step: () => {}
        })
      )
      yield* group.go
      const exits = yield* group.exits(240_000)
      observing = false
      yield* Fiber.join(observer)
      reader.close()
      const results = resultsOf(group, exits, (line): line is Extract<Line, { type: "result" }> => line.type === "result")
      expect(samples).toBeGreaterThan(0)
      expect(problems.slice(0, 5)).toEqual([])
      expect(results.flatMap((r) => r.odd).slice(0, 5)).toEqual([])
    }),
    300_000
  )
})
