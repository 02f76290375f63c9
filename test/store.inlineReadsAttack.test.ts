/**
 * Attacks on 0ab3a48 (SQLite reads run inline, on the caller's scheduler, while the inline
 * window lasts). Only orderings are asserted: how many operations had completed when a
 * setImmediate scheduled before a burst (or at the end of a wait) ran.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Cause, Effect, Either, Exit, Fiber, Layer, ManagedRuntime, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"

const BURST = 4000

const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ _tag: "Register" as const, key: `k${i}`, value: i, createdAt: Date.now(), expiresAt: undefined }))

const openStore = (filename: string, settings: Partial<SqliteStore.SqliteStoreOptions> = {}) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(SqliteStore.layer({ filename, ...settings }))
    return Effect.runSync(Effect.provide(KeyedStore, context))
  })

/** Lets the event loop turn, so that the inline window starts afresh. */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
/** Holds the thread for `ms` (to get past the inline window without the event loop turning). */
const spin = (ms: number) => {
  const until = performance.now() + ms
  while (performance.now() < until) {
    /* spin */
  }
}
const CORRUPT = "UPDATE channel_state_entries SET value_json = '\"not a number\"' WHERE owner = 'p' AND namespace = 'n'"
/** A second connection to `filename`, closed with the scope, that corrupts the namespace's rows and then, with `lock`, holds the write lock (`BEGIN IMMEDIATE`). */
const corruptingConnection = (filename: string, lock: boolean) =>
  Effect.gen(function* () {
    const other = new Database(filename, { timeout: 0 })
    yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
    other.prepare(CORRUPT).run()
    if (lock) other.exec("BEGIN IMMEDIATE")
    return other
  })
/** A store on a fresh file (lock waits of 20 s) whose namespace "n" holds `n` rows. */
const seededStore = (n: number) =>
  Effect.gen(function* () {
    const filename = path.join(yield* tempDir, "state.sqlite")
    const store = yield* openStore(filename, { lockWait: "20 seconds" })
    const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: n })
    yield* ns.writeBatch(rows(n))
    return { filename, store, ns }
  })
/** Counts answers, and how many there were when a setImmediate scheduled now ran (`undefined` while it has not). */
const watchTheLoop = () => {
  const watch = { answered: 0, whenTheLoopTurned: undefined as number | undefined }
  setImmediate(() => {
    watch.whenTheLoopTurned = watch.answered
  })
  return watch
}
const reasonOf = <A>(exit: Exit.Exit<A, { readonly reason: string }>) =>
  Exit.isSuccess(exit) ? "answered" : Exit.isInterrupted(exit) ? "interrupted" : Option.match(Cause.failureOption(exit.cause), { onNone: () => `defect: ${Cause.pretty(exit.cause).split("\n")[0]}`, onSome: (e) => e.reason })

describe("inline SQLite reads: attacks (0ab3a48)", () => {
  it.scopedLive("8 concurrent `entries` of 1000 rows each, started while the inline window is open: a setImmediate scheduled before them runs before the last has answered", () =>
    Effect.gen(function* () {
      const { ns } = yield* seededStore(1000)
      yield* turn
      const watch = watchTheLoop()
      const sizes = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i),
        () =>
          Effect.map(ns.entries, (all) => {
            watch.answered++
            return all.length
          }),
        { concurrency: "unbounded" }
      )
      expect(sizes).toEqual(Array.from({ length: 8 }, () => 1000))
      expect(watch.whenTheLoopTurned).toBeLessThan(8)
    })
  )

  it.scopedLive(`${BURST} lookups one after another, each awaited through ManagedRuntime.runPromise (an async loop): a setImmediate scheduled before them runs before the last`, () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const runtime = ManagedRuntime.make(SqliteStore.layer({ filename: path.join(dir, "state.sqlite") }))
      yield* Effect.addFinalizer(() => Effect.promise(() => runtime.dispose()))
      const ns = yield* Effect.promise(() => runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 100 }))))
      yield* Effect.promise(() => runtime.runPromise(ns.writeBatch(rows(100))))
      yield* turn
      const watch = watchTheLoop()
      const wrong = yield* Effect.promise(async () => {
        let wrong = 0
        for (let i = 0; i < BURST; i++) {
          const found = await runtime.runPromise(ns.lookup(`k${i % 100}`))
          if (!(found._tag === "Some" && found.value === i % 100)) wrong++
          watch.answered++
        }
        return wrong
      })
      expect(wrong).toBe(0)
      expect(watch.whenTheLoopTurned).toBeLessThan(BURST)
    })
  )

  it.scopedLive(`${BURST} reads one after another in one fiber, each followed by Effect.yieldNow(): a setImmediate scheduled before them runs before the last`, () =>
    Effect.gen(function* () {
      const { ns } = yield* seededStore(100)
      yield* turn
      const watch = watchTheLoop()
      let wrong = 0
      for (let i = 0; i < BURST; i++) {
        const found = yield* ns.lookup(`k${i % 100}`)
        if (!(found._tag === "Some" && found.value === i % 100)) wrong++
        watch.answered++
        yield* Effect.yieldNow()
      }
      expect(wrong).toBe(0)
      expect(watch.whenTheLoopTurned).toBeLessThan(BURST)
    })
  )

  it.scopedLive("400 concurrent lookups of corrupt rows wait (their delete) for a second connection's write lock: when it is released, the event loop turns before they have all answered, and each fails Corrupt", () =>
    Effect.gen(function* () {
      const { filename, ns } = yield* seededStore(400)
      const other = yield* corruptingConnection(filename, true)
      let answered = 0
      let answeredAtRelease: number | undefined
      let answeredWhenTheLoopTurned: number | undefined
      setTimeout(() => {
        answeredAtRelease = answered
        other.exec("COMMIT")
        setImmediate(() => {
          answeredWhenTheLoopTurned = answered
        })
      }, 300)
      const answers = yield* Effect.forEach(
        Array.from({ length: 400 }, (_, i) => i),
        (i) => Effect.exit(ns.lookup(`k${i}`)).pipe(Effect.tap(() => answered++)),
        { concurrency: "unbounded" }
      )
      expect(answeredAtRelease).toBe(0)
      expect(answers.map(reasonOf)).toEqual(Array.from({ length: 400 }, () => "Corrupt"))
      expect(answeredWhenTheLoopTurned).toBeDefined()
      expect(answeredWhenTheLoopTurned!).toBeLessThan(400)
    })
  )

  it.scopedLive(`the file removed under an open store: ${BURST} concurrent reads must reopen it (they wait for one reopening), answer right, and let the loop turn before they have all answered`, () =>
    Effect.gen(function* () {
      const { filename, ns } = yield* seededStore(100)
      for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(filename + suffix, { force: true })
      yield* turn
      const watch = watchTheLoop()
      const answers = yield* Effect.forEach(
        Array.from({ length: BURST }, (_, i) => i),
        (i) =>
          (i % 3 === 0
            ? Effect.map(ns.lookup(`k${i % 100}`), Option.isNone)
            : i % 3 === 1
              ? Effect.map(ns.lookupMany([`k${i % 100}`]), (found) => Either.isRight(found[0]!) && Option.isNone(found[0].right))
              : Effect.map(ns.size, (n) => n === 0)
          ).pipe(Effect.tap(() => watch.answered++)),
        { concurrency: "unbounded" }
      )
      expect(answers.filter((right) => !right).length).toBe(0)
      expect(watch.whenTheLoopTurned).toBeLessThan(BURST)
    })
  )

  it.scopedLive("every read run with Effect.runSync past the inline window completes (lookup, lookupEntry, observe, lookupMany, entriesInRange, entries, size), and a corrupt row found that way fails Corrupt (typed) and is removed", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "state.sqlite")
      const store = yield* openStore(filename)
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 100 })
      yield* ns.writeBatch(rows(10))
      yield* turn
      const reads: Array<Effect.Effect<unknown, StateStoreError>> = [
        Effect.map(ns.lookup("k1"), (found) => Option.getOrUndefined(found)),
        Effect.map(ns.lookupEntry("k2"), (found) => Option.getOrUndefined(found)?.value),
        Effect.map(ns.observe("k3"), (seen) => Option.getOrUndefined(seen.entry)?.value),
        Effect.map(ns.lookupMany(["k4"]), (found) => Either.getOrUndefined(found[0]!)?.pipe(Option.getOrUndefined)),
        Effect.map(ns.entriesInRange({ from: "k5", to: "k6", limit: 1 }), (page) => page.entries[0]?.value),
        Effect.map(ns.entries, (all) => all.length),
        ns.size
      ]
      const inWindow = reads.map((read) => reasonOrValue(Effect.runSyncExit(read)))
      spin(20)
      const pastWindow = reads.map((read) => reasonOrValue(Effect.runSyncExit(read)))
      expect(inWindow).toEqual([1, 2, 3, 4, 5, 10, 10])
      expect(pastWindow).toEqual([1, 2, 3, 4, 5, 10, 10])
      const other = yield* corruptingConnection(filename, false)
      spin(20)
      const corruptReads: Array<Effect.Effect<unknown, StateStoreError>> = [ns.lookup("k1"), ns.lookupMany(["k2"]), ns.observe("k3"), ns.entriesInRange({ from: "k4", to: "k5", limit: 1 })]
      const corrupt = corruptReads.map((read) => reasonOrValue(Effect.runSyncExit(read)))
      expect(corrupt[0]).toBe("Corrupt")
      expect(corrupt[2]).toBe("Corrupt")
      expect(corrupt[3]).toBe("Corrupt")
      expect(other.prepare("SELECT entry_key FROM channel_state_entries WHERE owner = 'p' AND namespace = 'n' AND entry_key IN ('k1', 'k2', 'k3', 'k4') ORDER BY entry_key").all()).toEqual([])
    })
  )

  it.scopedLive("disposing the runtime while 100 reads wait (their corrupt rows' delete, under another connection's write lock): closing waits for them, and each ends typed (Corrupt or Unavailable), never a defect", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "state.sqlite")
      const runtime = ManagedRuntime.make(SqliteStore.layer({ filename, lockWait: "20 seconds" }))
      const ns = yield* Effect.promise(() => runtime.runPromise(Effect.flatMap(KeyedStore, (store) => store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 100 }))))
      yield* Effect.promise(() => runtime.runPromise(ns.writeBatch(rows(100))))
      const other = yield* corruptingConnection(filename, true)
      const fibers = Array.from({ length: 100 }, (_, i) =>
        runtime.runFork<unknown, StateStoreError>(i % 2 === 0 ? ns.lookup(`k${i}`) : Effect.flatMap(ns.lookupMany([`k${i}`]), (found) => (Either.isLeft(found[0]!) ? Effect.fail(found[0].left) : Effect.succeed("answered"))))
      )
      yield* Effect.sleep("100 millis")
      let disposed = false
      const disposing = runtime.dispose().then(() => {
        disposed = true
      })
      yield* Effect.sleep("200 millis")
      const disposedWhileLocked = disposed
      other.exec("COMMIT")
      yield* Effect.promise(() => disposing)
      const exits = yield* Effect.forEach(fibers, (fiber) => Fiber.await(fiber))
      expect(disposedWhileLocked).toBe(false)
      const reasons = new Set(exits.map((exit) => reasonOf(exit as Exit.Exit<unknown, { reason: string }>)))
      // lookupMany reports a corrupt key in its answer: that is its own key's Corrupt.
      expect([...reasons].filter((r) => r !== "Corrupt" && r !== "Unavailable")).toEqual([])
    })
  )

  it.scopedLive("reading fibers interrupted while they wait (corrupt rows' delete under another connection's write lock) end interrupted; the store answers right afterwards, and the rows are removed by the next lookups", () =>
    Effect.gen(function* () {
      const { filename, ns } = yield* seededStore(100)
      const other = yield* corruptingConnection(filename, true)
      const fibers = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), (i) => Effect.fork<unknown, StateStoreError, never>(i % 2 === 0 ? ns.lookup(`k${i}`) : ns.entriesInRange({ from: `k${i}`, to: `k${i}~`, limit: 1 })))
      yield* Effect.sleep("50 millis")
      const exits = yield* Effect.forEach(fibers, (fiber) => Fiber.interrupt(fiber))
      expect(new Set(exits.map((exit) => reasonOf(exit as Exit.Exit<unknown, { reason: string }>)))).toEqual(new Set(["interrupted"]))
      other.exec("COMMIT")
      const after = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), (i) => Effect.exit(ns.lookup(`k${i}`)), { concurrency: "unbounded" })
      expect(after.map(reasonOf)).toEqual(Array.from({ length: 100 }, () => "Corrupt"))
      yield* ns.register("fresh", 7)
      expect(yield* ns.lookup("fresh")).toEqual(Option.some(7))
      expect(yield* ns.size).toBe(1)
    })
  )
})

function reasonOrValue<A>(exit: Exit.Exit<A, { readonly reason: string }>): unknown {
  return Exit.isSuccess(exit) ? exit.value : reasonOf(exit)
}
