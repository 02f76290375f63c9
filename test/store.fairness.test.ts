/**
 * Attacks on "a burst of store work never holds the event loop": SQLite answers
 * synchronously, and Effect's default scheduler resumes fibers through microtasks, so without
 * the store's fair scheduler a burst of operations (the claims and settles released at once
 * when a held lock goes away) would all run before a single timer or socket callback of the
 * host. No time is asserted: only whether the event loop got a turn before the burst ended.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"

const BURST = 2000

describe("a burst of store operations lets the event loop turn (sqlite)", () => {
  it.scopedLive(`${BURST} concurrent lookups and claims: a setImmediate scheduled before the burst runs before the burst has ended, and every answer is right`, () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const context = yield* Layer.build(SqliteStore.layer({ filename: path.join(dir, "state.sqlite") }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: BURST * 2 })
      yield* ns.writeBatch(Array.from({ length: BURST / 2 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: i, createdAt: Date.now(), expiresAt: undefined })))

      let answered = 0
      let answeredWhenTheLoopTurned: number | undefined
      setImmediate(() => {
        answeredWhenTheLoopTurned = answered
      })
      const answers = yield* Effect.forEach(
        Array.from({ length: BURST }, (_, i) => i),
        (i) =>
          (i % 2 === 0 ? Effect.map(ns.lookup(`k${i / 2}`), (found) => found._tag === "Some" && found.value === i / 2) : ns.registerIfAbsent(`fresh${i}`, i)).pipe(
            Effect.tap(() => {
              answered++
            })
          ),
        { concurrency: "unbounded" }
      )
      expect(answers.filter((right) => !right).length).toBe(0)
      expect(answered).toBe(BURST)
      // The loop turned while answers were still outstanding.
      expect(answeredWhenTheLoopTurned).toBeDefined()
      expect(answeredWhenTheLoopTurned!).toBeLessThan(BURST)
    })
  )

  it.scopedLive("the same burst through a ManagedRuntime (its layer built by Effect's synchronous run, whose scheduler its fibers keep): the loop still turns before the burst ends", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const runtime = ManagedRuntime.make(SqliteStore.layer({ filename: path.join(dir, "state.sqlite") }))
      yield* Effect.addFinalizer(() => Effect.promise(() => runtime.dispose()))
      const ns = yield* Effect.promise(() => runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: BURST * 2 }))))
      let answered = 0
      let answeredWhenTheLoopTurned: number | undefined
      const burst = runtime.runPromise(
        Effect.forEach(
          Array.from({ length: BURST }, (_, i) => i),
          (i) =>
            Effect.tap(ns.registerIfAbsent(`k${i}`, i), () => {
              answered++
            }),
          { concurrency: "unbounded" }
        )
      )
      setImmediate(() => {
        answeredWhenTheLoopTurned = answered
      })
      const claimed = yield* Effect.promise(() => burst)
      expect(claimed.every((won) => won)).toBe(true)
      expect(answeredWhenTheLoopTurned).toBeDefined()
      expect(answeredWhenTheLoopTurned!).toBeLessThan(BURST)
    })
  )
})
