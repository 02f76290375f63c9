/**
 * Attacks on "a burst of store work never holds the event loop": SQLite answers
 * synchronously, and Effect's default scheduler resumes fibers through microtasks, so without
 * the store's fair scheduler a burst of operations (the claims and settles released at once
 * when a held lock goes away) would all run before a single timer or socket callback of the
 * host. No time is asserted: only whether the event loop got a turn before the burst ended.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Either, Layer, ManagedRuntime, Schema } from "effect"
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

  // Reads on SQLite run inline, without the fair scheduler's switch, while the event loop
  // turned less than a slice ago: these try to make that hold the loop, or wait outside it.
  it.scopedLive(`${BURST * 2} reads one after another in one fiber (lookup, lookupEntry, observe, lookupMany, size): a setImmediate scheduled before them runs before the last`, () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const context = yield* Layer.build(SqliteStore.layer({ filename: path.join(dir, "state.sqlite") }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: BURST })
      yield* ns.writeBatch(Array.from({ length: 100 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: i, createdAt: Date.now(), expiresAt: undefined })))
      let read = 0
      let readWhenTheLoopTurned: number | undefined
      setImmediate(() => {
        readWhenTheLoopTurned = read
      })
      let wrong = 0
      for (let i = 0; i < BURST * 2; i++) {
        const key = `k${i % 100}`
        const right =
          i % 5 === 0
            ? Effect.map(ns.lookup(key), (found) => found._tag === "Some" && found.value === i % 100)
            : i % 5 === 1
              ? Effect.map(ns.lookupEntry(key), (found) => found._tag === "Some" && found.value.value === i % 100)
              : i % 5 === 2
                ? Effect.map(ns.observe(key), (seen) => seen.entry._tag === "Some" && seen.entry.value.value === i % 100)
                : i % 5 === 3
                  ? Effect.map(ns.lookupMany([key]), (found) => Either.isRight(found[0]!) && found[0].right._tag === "Some")
                  : Effect.map(ns.size, (n) => n === 100)
        if (!(yield* right)) wrong++
        read++
      }
      expect(wrong).toBe(0)
      expect(readWhenTheLoopTurned).toBeDefined()
      expect(readWhenTheLoopTurned!).toBeLessThan(BURST * 2)
    })
  )

  it.scopedLive("200 concurrent lookups of rows that no longer decode, while a second connection holds the write lock: each waits for the lock (its delete), then fails Corrupt, and the rows are gone", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "state.sqlite")
      const context = yield* Layer.build(SqliteStore.layer({ filename, lockWait: "10 seconds" }))
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: BURST })
      yield* ns.writeBatch(Array.from({ length: 200 }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: i, createdAt: Date.now(), expiresAt: undefined })))
      const other = new Database(filename, { timeout: 0 })
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.prepare("UPDATE channel_state_entries SET value_json = '\"not a number\"' WHERE owner = 'p' AND namespace = 'n'").run()
      other.exec("BEGIN IMMEDIATE")
      // The lock goes when the lookups have all found their rows and are waiting to delete them.
      let answered = 0
      let answeredAtRelease: number | undefined
      setTimeout(() => {
        answeredAtRelease = answered
        other.exec("COMMIT")
      }, 200)
      const answers = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => Effect.either(ns.lookup(`k${i}`)).pipe(Effect.tap(() => answered++)),
        { concurrency: "unbounded" }
      )
      expect(answeredAtRelease).toBe(0)
      expect(answers.map((a) => (Either.isLeft(a) ? a.left.reason : "answered"))).toEqual(Array.from({ length: 200 }, () => "Corrupt"))
      expect(other.prepare("SELECT count(*) AS n FROM channel_state_entries WHERE owner = 'p' AND namespace = 'n'").get()).toEqual({ n: 0 })
    })
  )
})
