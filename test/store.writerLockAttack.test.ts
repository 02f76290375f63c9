/**
 * Attacks on the store's own lock where it replaced Effect's Semaphore (e231529): the SQLite
 * store's exclusive writer connection (statements and transactions holding the store's mutex
 * instead of the client's reservation), the claim batcher's one-batch-at-a-time, and
 * PostgreSQL's turns per lock key. Every test runs on real time, bounds its waits with a
 * generous timeout (a leaked lock shows as a hang, caught there), and never asserts timings.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import Database from "better-sqlite3"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, ManagedRuntime, Option, Schema, Scope } from "effect"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import * as SqlStore from "../src/layers/store/SqlStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import { StateStoreError } from "../src/StateStoreError.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"
import { describePg } from "./support/describePg.js"
import { bounded, prng } from "./support/attackTools.js"

/** A SQLite file in a fresh temp directory (removed with the test's scope). */
const sqliteFile = Effect.map(tempDir, (dir) => path.join(dir, "state", "store.sqlite"))

/** A SqliteStore (the exclusive writer) built in `scope`. */
const sqliteStoreIn = (filename: string, scope: Scope.Scope, settings: Partial<StoreSettings> = {}) =>
  Effect.map(Layer.buildWithScope(SqliteStore.layer({ filename, ...settings }), scope), (context) => Effect.runSync(Effect.provide(KeyedStore, context)))

/** Synchronous raw access to the file through a connection of its own (another "process" as far as SQLite's locks go). */
const withRaw = <A>(filename: string, f: (db: Database.Database) => A, busyMillis = 5_000): A => {
  const db = new Database(filename)
  try {
    db.pragma(`busy_timeout = ${busyMillis}`)
    return f(db)
  } finally {
    db.close()
  }
}
const keysIn = (filename: string, namespace: string): Set<string> =>
  withRaw(filename, (db) => new Set((db.prepare("SELECT entry_key FROM channel_state_entries WHERE namespace = ?").all(namespace) as Array<{ entry_key: string }>).map((r) => r.entry_key)))
const countMismatches = (filename: string) =>
  withRaw(filename, (db) =>
    db
      .prepare(
        `SELECT c.namespace FROM channel_state_counts c WHERE c.row_count <> (SELECT count(*) FROM channel_state_entries e WHERE e.owner = c.owner AND e.namespace = c.namespace)
         UNION SELECT e.namespace FROM channel_state_entries e WHERE NOT EXISTS (SELECT 1 FROM channel_state_counts c WHERE c.owner = e.owner AND c.namespace = e.namespace)`
      )
      .all()
  )
/**
 * Whether the store's writer connection is outside any transaction: another connection takes
 * the file's write lock (waiting up to 5 s for a write in progress, e.g. the sweeper) and gives
 * it back. A transaction left open on the writer — BEGIN without COMMIT or ROLLBACK — holds
 * the lock forever, and this answers the busy error.
 */
const writeLockFree = (filename: string): string =>
  withRaw(filename, (db) => {
    try {
      db.exec("BEGIN IMMEDIATE")
      db.exec("ROLLBACK")
      return "free"
    } catch (cause) {
      return `held: ${(cause as Error).message}`
    }
  })

/** What a fiber's exit says, for assertions: its value, a typed failure's reason, or why it is a problem. */
const outcome = <A>(exit: Exit.Exit<A, unknown>): { readonly kind: "ok"; readonly value: A } | { readonly kind: "failed"; readonly reason: string } | { readonly kind: "interrupted" } | { readonly kind: "defect"; readonly cause: string } => {
  if (Exit.isSuccess(exit)) return { kind: "ok", value: exit.value }
  if (Cause.isInterruptedOnly(exit.cause)) return { kind: "interrupted" }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && failure.value instanceof StateStoreError && !Cause.isDie(exit.cause)) return { kind: "failed", reason: failure.value.reason }
  return { kind: "defect", cause: Cause.pretty(exit.cause) }
}

/** `n` yields: an interruption point `n` scheduler steps away. */
const steps = (n: number) => Effect.repeatN(Effect.yieldNow(), Math.max(0, n - 1))

/** Interrupts about a third of `fibers` (chosen by `rand`), each after `pause()`, without waiting for them to end. */
const interruptAThird = (fibers: ReadonlyArray<Fiber.RuntimeFiber<unknown, unknown>>, rand: (n: number) => number, pause: () => Effect.Effect<void>) =>
  Effect.forEach(fibers, (fiber) => (rand(3) !== 0 ? Effect.void : Effect.zipRight(pause(), Fiber.interruptFork(fiber))), { discard: true })

const strings = (h: Effect.Effect<NamespaceHandle<string>, StateStoreError>) => h

describe("writer lock attack: SQLite statements never run inside another fiber's transaction", () => {
  // Below about 10 ops Effect 3.22's own runtime makes no progress at all (a bare Effect.gen
  // under withMaxOpsBeforeYield(8) spins, allocating, before its first step): 10 is the least.
  for (const maxOps of [10, 16, 32, 64]) {
    it.scopedLive(
      `fibers yielding every ${maxOps} ops: claims, consumes and deletes beside refused and interrupted transactions keep what they answered`,
      () =>
        Effect.gen(function* () {
          const file = yield* sqliteFile
          const scope = yield* Scope.make()
          const rand = prng(1000 + maxOps)
          // The store (its batching fibers too) is built under the same scheduling as the operations.
          const run = Effect.gen(function* () {
            const store = yield* sqliteStoreIn(file, scope, { lockWait: "20 seconds" })
            const claims = yield* strings(store.open({ owner: "p", namespace: "claims", schema: Schema.String, maxEntries: 100_000 }))
            const eaten = yield* strings(store.open({ owner: "p", namespace: "eaten", schema: Schema.String, maxEntries: 100_000 }))
            const full = yield* strings(store.open({ owner: "p", namespace: "full", schema: Schema.String, maxEntries: 1, overflow: "reject-new" }))
            const doomed = yield* strings(store.open({ owner: "p", namespace: "doomed", schema: Schema.String, maxEntries: 3, overflow: "evict-oldest" }))
            yield* full.register("held", "held")
            const rounds = maxOps === 10 ? 3 : 5
            const perRound = 40
            const won: Array<string> = []
            const consumed: Array<string> = []
            const deleted: Array<string> = []
            const problems: Array<unknown> = []
            for (let round = 0; round < rounds; round++) {
              yield* Effect.forEach(Array.from({ length: perRound }, (_, i) => i), (i) => Effect.all([eaten.register(`r${round}c${i}`, "v"), eaten.register(`r${round}d${i}`, "v")]), { discard: true })
              const fibers = yield* Effect.forEach(Array.from({ length: perRound }, (_, i) => i), (i) =>
                Effect.all([
                  Effect.fork(claims.registerIfAbsent(`r${round}k${i}`, "v")),
                  Effect.fork(full.register(`r${round}x${i}`, "x")),
                  Effect.fork(eaten.consume(`r${round}c${i}`)),
                  Effect.fork(eaten.delete(`r${round}d${i}`)),
                  // A transaction (evict-oldest: insert, count, evict) interrupted at a random point: it rolls back or commits, never half.
                  Effect.fork(doomed.register(`r${round}z${i}`, "z"))
                ])
              )
              for (const [, , , , victim] of fibers) {
                if (rand(2) === 0) {
                  yield* steps(rand(6))
                  yield* Fiber.interruptFork(victim)
                }
              }
              const answers = yield* bounded(`round ${round}`, Effect.forEach(fibers, (group) => Effect.forEach(group, (f) => Fiber.await(f as Fiber.Fiber<unknown, unknown>))))
              for (const [i, [claim, refused, consume, del, victim]] of answers.entries()) {
                const c = outcome(claim!)
                if (c.kind === "ok" && c.value === true) won.push(`r${round}k${i}`)
                else problems.push({ op: "claim of a fresh key", round, i, c })
                const r = outcome(refused!)
                if (!(r.kind === "failed" && r.reason === "LimitExceeded")) problems.push({ op: "register into a full reject-new namespace", round, i, r })
                const e = outcome(consume!)
                if (e.kind === "ok" && Option.isOption(e.value) && Option.isSome(e.value)) consumed.push(`r${round}c${i}`)
                else problems.push({ op: "consume", round, i, e })
                const d = outcome(del!)
                if (d.kind === "ok" && d.value === true) deleted.push(`r${round}d${i}`)
                else problems.push({ op: "delete", round, i, d })
                const v = outcome(victim!)
                if (v.kind !== "ok" && v.kind !== "interrupted") problems.push({ op: "interrupted register", round, i, v })
              }
            }
            // A second claim of every won key must lose: a win undone by a rollback would win again.
            const again = yield* bounded("second claims", Effect.forEach(won, (key) => claims.registerIfAbsent(key, "again"), { concurrency: 8 }))
            return { store, won, consumed, deleted, problems, wonAgain: again.filter((x) => x).length, rounds, perRound }
          }).pipe(Effect.withMaxOpsBeforeYield(maxOps))
          const result = yield* run
          const claimed = keysIn(file, "claims")
          const left = keysIn(file, "eaten")
          expect(result.problems).toEqual([])
          expect(result.won.length).toBe(result.rounds * result.perRound)
          expect(result.won.filter((k) => !claimed.has(k))).toEqual([])
          expect(result.consumed.filter((k) => left.has(k))).toEqual([])
          expect(result.deleted.filter((k) => left.has(k))).toEqual([])
          expect(result.wonAgain).toBe(0)
          expect([...keysIn(file, "full")]).toEqual(["held"])
          expect(keysIn(file, "doomed").size).toBeLessThanOrEqual(3)
          expect(countMismatches(file)).toEqual([])
          expect(writeLockFree(file)).toBe("free")
          yield* bounded("closing the store", Scope.close(scope, Exit.void))
        }),
      180_000
    )
  }
})

describe("writer lock attack: never leaked, never held twice", () => {
  it.scopedLive(
    "rounds of mixed writes, a third interrupted at random, some while a second connection holds the file's write lock: only the expected typed failures, later writes complete, no transaction left open",
    () =>
      Effect.gen(function* () {
        const file = yield* sqliteFile
        const scope = yield* Scope.make()
        const store = yield* sqliteStoreIn(file, scope, { lockWait: "400 millis" })
        const h = yield* strings(store.open({ owner: "p", namespace: "mix", schema: Schema.String, maxEntries: 100_000 }))
        const full = yield* strings(store.open({ owner: "p", namespace: "full", schema: Schema.String, maxEntries: 2, overflow: "reject-new" }))
        const evict = yield* strings(store.open({ owner: "p", namespace: "evict", schema: Schema.String, maxEntries: 4, overflow: "evict-oldest" }))
        yield* full.register("a", "a")
        yield* full.register("b", "b")
        const rand = prng(7)
        const problems: Array<unknown> = []
        const committed: Array<string> = []
        for (let round = 0; round < 16; round++) {
          const blocked = round % 4 === 1 || round % 4 === 2
          const other = blocked ? new Database(file) : undefined
          if (other !== undefined) {
            other.pragma("busy_timeout = 5000")
            other.exec("BEGIN IMMEDIATE")
          }
          const ops: Array<Effect.Effect<unknown, StateStoreError>> = []
          for (let i = 0; i < 30; i++) {
            const k = `r${round}i${i}`
            ops.push(
              [
                h.registerIfAbsent(`${k}claim`, "v"),
                h.register(`${k}reg`, "v"),
                full.register(`${k}refused`, "x"),
                evict.register(`${k}ev`, "v"),
                h.consume(`r${round - 1}i${i}reg`),
                h.delete(`r${round - 1}i${i}claim`),
                h.writeBatch([{ _tag: "Register", key: `${k}batch`, value: "v", createdAt: Date.now(), expiresAt: undefined }]),
                Effect.flatMap(h.observe(`${k}cas`), (seen) => h.compareAndSet(`${k}cas`, seen.revision, { _tag: "Set", value: "v" })),
                h.replaceIfEqual(`r${round - 1}i${i}reg`, "v", "w")
              ][i % 9]!
            )
          }
          const fibers = yield* Effect.forEach(ops, (op) => Effect.fork(op))
          yield* interruptAThird(fibers, rand, () => (rand(4) === 0 ? Effect.sleep(`${rand(3)} millis`) : steps(rand(8))))
          if (other !== undefined) {
            yield* Effect.sleep(`${rand(150)} millis`)
            if (round % 2 === 0) other.exec("COMMIT")
            else other.exec("ROLLBACK")
            other.close()
          }
          const exits = yield* bounded(`round ${round}`, Effect.forEach(fibers, (f) => Fiber.await(f)))
          for (const [i, exit] of exits.entries()) {
            const o = outcome(exit)
            if (o.kind === "defect") problems.push({ round, i, o })
            // Refused by the cap, or (while another connection held the file) Busy: nothing else is expected.
            if (o.kind === "failed" && o.reason !== "LimitExceeded" && !(blocked && o.reason === "Busy")) problems.push({ round, i, o })
            if (o.kind === "failed" && o.reason === "LimitExceeded" && i % 9 !== 2) problems.push({ round, i, o })
          }
          // The writer connection holds no transaction, and the store still writes (a leaked lock hangs here).
          const lock = writeLockFree(file)
          if (lock !== "free") problems.push({ round, lock })
          yield* bounded(`a write after round ${round}`, h.register(`sentinel${round}`, "s"), 20)
          committed.push(`sentinel${round}`)
          const claimedAfter = yield* bounded(`a claim after round ${round}`, h.registerIfAbsent(`sentinelClaim${round}`, "s"), 20)
          if (claimedAfter !== true) problems.push({ round, claimedAfter })
          committed.push(`sentinelClaim${round}`)
        }
        const onDisk = keysIn(file, "mix")
        expect(problems).toEqual([])
        expect(committed.filter((k) => !onDisk.has(k))).toEqual([])
        expect(keysIn(file, "full")).toEqual(new Set(["a", "b"]))
        expect(countMismatches(file)).toEqual([])
        yield* bounded("closing the store", Scope.close(scope, Exit.void))
      }),
    240_000
  )

  it.scopedLive("the writer lock held by a transaction whose fiber is interrupted while waiting at BEGIN IMMEDIATE's busy retries, 200 times: the next writes complete", () =>
    Effect.gen(function* () {
      const file = yield* sqliteFile
      const scope = yield* Scope.make()
      const store = yield* sqliteStoreIn(file, scope, { lockWait: "5 seconds" })
      const h = yield* strings(store.open({ owner: "p", namespace: "busy", schema: Schema.String, maxEntries: 3, overflow: "evict-oldest" }))
      const rand = prng(99)
      const problems: Array<unknown> = []
      for (let round = 0; round < 40; round++) {
        const other = new Database(file)
        other.exec("BEGIN IMMEDIATE")
        // Transactions (evict-oldest register) and one-statement writes that fail busy and retry, interrupted while they retry.
        const fibers = yield* Effect.forEach(Array.from({ length: 5 }, (_, i) => i), (i) =>
          Effect.fork(i % 2 === 0 ? h.register(`r${round}i${i}`, "v") : Effect.asVoid(h.registerIfAbsent(`r${round}i${i}`, "v")))
        )
        yield* Effect.sleep(`${1 + rand(4)} millis`)
        for (const fiber of fibers) yield* Fiber.interruptFork(fiber)
        const exits = yield* bounded(`interrupted writes of round ${round}`, Effect.forEach(fibers, (f) => Fiber.await(f)))
        other.exec("ROLLBACK")
        other.close()
        for (const exit of exits) {
          const o = outcome(exit)
          if (o.kind !== "interrupted" && o.kind !== "ok") problems.push({ round, o })
        }
        yield* bounded(`a write after round ${round}`, h.register(`after${round}`, "v"), 20)
      }
      expect(problems).toEqual([])
      expect(writeLockFree(file)).toBe("free")
      expect(countMismatches(file)).toEqual([])
      yield* bounded("closing the store", Scope.close(scope, Exit.void))
    }),
    180_000
  )
})

describe("writer lock attack: closing while writes wait", () => {
  for (const [name, blocked] of [
    ["writes queued on the writer lock and in the claim batcher", false],
    ["writes waiting out another connection's write lock", true]
  ] as const) {
    it.scopedLive(`ManagedRuntime disposed, ${name}: every caller gets a value or a typed StateStoreError`, () =>
      Effect.gen(function* () {
        const file = yield* sqliteFile
        fs.mkdirSync(path.dirname(file), { recursive: true })
        const runtime = ManagedRuntime.make(SqliteStore.layer({ filename: file, lockWait: "1 second" }))
        const store = yield* Effect.promise(() => runtime.runPromise(KeyedStore))
        const h = yield* strings(store.open({ owner: "p", namespace: "close", schema: Schema.String, maxEntries: 50, overflow: "reject-new" }))
        const e = yield* strings(store.open({ owner: "p", namespace: "evict", schema: Schema.String, maxEntries: 5, overflow: "evict-oldest" }))
        for (let i = 0; i < 40; i++) yield* h.register(`pre${i}`, "v")
        const other = blocked ? new Database(file) : undefined
        other?.exec("BEGIN IMMEDIATE")
        const ops = Array.from({ length: 600 }, (_, i): Effect.Effect<unknown, StateStoreError> =>
          [
            h.registerIfAbsent(`c${i % 150}`, "v"),
            e.register(`e${i}`, "v"),
            h.consume(`pre${i % 40}`),
            h.register(`r${i}`, "v"),
            h.writeBatch([{ _tag: "Register", key: `b${i}`, value: "v", createdAt: Date.now(), expiresAt: undefined }]),
            h.delete(`pre${(i + 7) % 40}`)
          ][i % 6]!
        )
        const fibers = ops.map((op) => runtime.runFork(op))
        yield* steps(3)
        const disposing = yield* Effect.fork(Effect.promise(() => runtime.dispose()))
        if (other !== undefined) {
          yield* Effect.sleep("50 millis")
          other.exec("ROLLBACK")
          other.close()
        }
        const exits = yield* bounded("every caller's answer", Effect.forEach(fibers, (f) => Fiber.await(f)))
        yield* bounded("disposing the runtime", Fiber.join(disposing))
        const bad = exits.map(outcome).filter((o) => o.kind === "defect" || o.kind === "interrupted")
        expect(bad).toEqual([])
        // After disposal every operation fails at once, typed.
        const after = yield* bounded("operations after disposal", Effect.all([Effect.either(h.register("late", "v")), Effect.either(h.registerIfAbsent("late2", "v"))]))
        expect(after.map((x) => x._tag === "Left" && x.left.reason)).toEqual(["Unavailable", "Unavailable"])
        expect(countMismatches(file)).toEqual([])
      }),
      120_000
    )
  }

  it.scopedLive("scope closed at random moments of 20 bursts (claims of one key, transactions, one-statement writes): every caller answered, at most one claim won per key", () =>
    Effect.gen(function* () {
      const file = yield* sqliteFile
      const rand = prng(4242)
      const problems: Array<unknown> = []
      for (let round = 0; round < 20; round++) {
        const scope = yield* Scope.make()
        const store = yield* sqliteStoreIn(file, scope, { lockWait: "2 seconds" })
        const h = yield* strings(store.open({ owner: "p", namespace: `close${round}`, schema: Schema.String, maxEntries: 30, overflow: "reject-new" }))
        const fibers = yield* Effect.forEach(Array.from({ length: 120 }, (_, i) => i), (i) =>
          Effect.fork(
            i % 3 === 0
              ? h.registerIfAbsent("one", `c${i}`)
              : i % 3 === 1
                ? Effect.asVoid(h.register(`r${i}`, "v"))
                : Effect.asVoid(h.delete(`r${i - 1}`))
          )
        )
        yield* steps(rand(40))
        yield* bounded(`closing the scope in round ${round}`, Scope.close(scope, Exit.void))
        const exits = yield* bounded(`answers of round ${round}`, Effect.forEach(fibers, (f) => Fiber.await(f)))
        const outcomes = exits.map(outcome)
        const bad = outcomes.filter((o) => o.kind === "defect" || o.kind === "interrupted" || (o.kind === "failed" && !["Unavailable", "LimitExceeded"].includes(o.reason)))
        if (bad.length > 0) problems.push({ round, bad })
        const wins = outcomes.filter((o, i) => i % 3 === 0 && o.kind === "ok" && (o.value as unknown) === true).length
        if (wins > 1) problems.push({ round, wins })
      }
      expect(problems).toEqual([])
      expect(countMismatches(file)).toEqual([])
      expect(writeLockFree(file)).toBe("free")
    }),
    180_000
  )
})

describe("writer lock attack: reopening", () => {
  it.scopedLive("the file removed or replaced while 200 writes are in flight, some interrupted: nothing hangs, and later writes land in the file now at the path", () =>
    Effect.gen(function* () {
      const file = yield* sqliteFile
      const scope = yield* Scope.make()
      const store = yield* sqliteStoreIn(file, scope, { lockWait: "2 seconds" })
      const h = yield* strings(store.open({ owner: "p", namespace: "reopen", schema: Schema.String, maxEntries: 1_000, overflow: "reject-new" }))
      const e = yield* strings(store.open({ owner: "p", namespace: "evict", schema: Schema.String, maxEntries: 5, overflow: "evict-oldest" }))
      const rand = prng(31)
      const problems: Array<unknown> = []
      for (let round = 0; round < 8; round++) {
        const fibers = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) =>
          Effect.fork(
            [
              Effect.asVoid(h.registerIfAbsent(`r${round}c${i}`, "v")),
              e.register(`r${round}e${i}`, "v"),
              Effect.asVoid(h.consume(`r${round}c${i - 2}`)),
              Effect.asVoid(h.writeBatch([{ _tag: "Register", key: `r${round}b${i}`, value: "v", createdAt: Date.now(), expiresAt: undefined }]))
            ][i % 4]!
          )
        )
        yield* steps(rand(30))
        for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(`${file}${suffix}`, { force: true })
        if (round % 2 === 1) new Database(file).close()
        for (const fiber of fibers) if (rand(5) === 0) yield* Fiber.interruptFork(fiber)
        const exits = yield* bounded(`writes in flight in round ${round}`, Effect.forEach(fibers, (f) => Fiber.await(f)))
        // In-flight writes may fail (their database went away under them), typed; never a defect.
        const bad = exits.map(outcome).filter((o) => o.kind === "defect")
        if (bad.length > 0) problems.push({ round, bad })
        // Later writes land in the file at the path.
        yield* bounded(`writes after round ${round}`, Effect.all([h.register(`after${round}`, "v"), Effect.asVoid(h.registerIfAbsent(`afterClaim${round}`, "v")), e.register(`afterEv${round}`, "v")], { concurrency: "unbounded" }), 20)
        const there = keysIn(file, "reopen")
        if (!there.has(`after${round}`) || !there.has(`afterClaim${round}`)) problems.push({ round, there: [...there].filter((k) => k.startsWith("after")) })
        if (!keysIn(file, "evict").has(`afterEv${round}`)) problems.push({ round, evict: "missing" })
        if (countMismatches(file).length > 0) problems.push({ round, counts: countMismatches(file) })
      }
      expect(problems).toEqual([])
      expect(writeLockFree(file)).toBe("free")
      yield* bounded("closing the store", Scope.close(scope, Exit.void))
    }),
    180_000
  )
})

describe("writer lock attack: the claim batcher", () => {
  it.scopedLive("40 rounds of 30 claims of one key under yields every 10..64 ops, a third interrupted at random: exactly one answered winner (or an interrupted one's row), the next claims never blocked", () =>
    Effect.gen(function* () {
      const file = yield* sqliteFile
      const scope = yield* Scope.make()
      const store = yield* sqliteStoreIn(file, scope)
      const h = yield* strings(store.open({ owner: "p", namespace: "one", schema: Schema.String, maxEntries: 10_000, overflow: "reject-new" }))
      const rand = prng(2024)
      const problems: Array<unknown> = []
      for (let round = 0; round < 40; round++) {
        const key = `k${round}`
        const maxOps = [10, 12, 16, 32, 64][round % 5]!
        const fibers = yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) =>
          Effect.fork(Effect.withMaxOpsBeforeYield(h.registerIfAbsent(key, `c${i}`), maxOps))
        )
        yield* interruptAThird(fibers, rand, () => steps(rand(5)))
        const exits = yield* bounded(`claims of round ${round}`, Effect.forEach(fibers, (f) => Fiber.await(f)))
        const outcomes = exits.map(outcome)
        const winners = outcomes.flatMap((o, i) => (o.kind === "ok" && o.value === true ? [i] : []))
        const bad = outcomes.filter((o) => o.kind === "defect" || o.kind === "failed")
        const rows = withRaw(file, (db) => db.prepare("SELECT value_json FROM channel_state_entries WHERE namespace = 'one' AND entry_key = ?").all(key) as Array<{ value_json: string }>)
        const interruptedIds = outcomes.flatMap((o, i) => (o.kind === "interrupted" ? [i] : []))
        const rowOk =
          rows.length === 1 &&
          (winners.length === 1 ? rows[0]!.value_json === JSON.stringify(`c${winners[0]}`) : winners.length === 0 && interruptedIds.some((i) => rows[0]!.value_json === JSON.stringify(`c${i}`)))
        if (bad.length > 0 || winners.length > 1 || !rowOk) problems.push({ round, maxOps, winners, bad, rows, interrupted: interruptedIds.length })
        // The next claim of a fresh key is never blocked by what was interrupted.
        const next = yield* bounded(`a fresh claim after round ${round}`, h.registerIfAbsent(`fresh${round}`, "f"), 20)
        if (next !== true) problems.push({ round, next })
      }
      expect(problems).toEqual([])
      expect(countMismatches(file)).toEqual([])
      expect(writeLockFree(file)).toBe("free")
      yield* bounded("closing the store", Scope.close(scope, Exit.void))
    }),
    180_000
  )
})

describe("writer lock attack: a SqlStore over the user's own SqliteClient", () => {
  it.scopedLive("the user's own statements and transactions (one rolled back) run on the client while the store claims and writes: all finish, the store's answers stand", () =>
    Effect.gen(function* () {
      const file = yield* sqliteFile
      fs.mkdirSync(path.dirname(file), { recursive: true })
      const scope = yield* Scope.make()
      const clientLayer = SqliteClient.layer({ filename: file }).pipe(Layer.provide(Reactivity.layer), Layer.orDie)
      const context = yield* Layer.buildWithScope(Layer.merge(SqlStore.layer().pipe(Layer.provide(clientLayer)), clientLayer), scope)
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const sql = Effect.runSync(Effect.provide(SqlClient, context))
      yield* sql`CREATE TABLE mine (n INTEGER)`
      const h = yield* strings(store.open({ owner: "p", namespace: "user", schema: Schema.String, maxEntries: 10_000 }))
      const full = yield* strings(store.open({ owner: "p", namespace: "full", schema: Schema.String, maxEntries: 1, overflow: "reject-new" }))
      yield* full.register("held", "held")
      const problems: Array<unknown> = []
      const won: Array<string> = []
      for (let round = 0; round < 10; round++) {
        const storeOps = yield* Effect.forEach(Array.from({ length: 60 }, (_, i) => i), (i) =>
          Effect.fork(
            i % 3 === 0
              ? Effect.map(h.registerIfAbsent(`r${round}k${i}`, "v"), (w) => (w ? `r${round}k${i}` : undefined))
              : i % 3 === 1
                ? Effect.as(Effect.catchIf(full.register(`r${round}x${i}`, "x"), (e) => e.reason === "LimitExceeded", () => Effect.void), undefined)
                : Effect.as(h.register(`r${round}w${i}`, "v"), undefined)
          )
        )
        // The user's transaction that rolls back, interleaved with the store's work.
        const rolledBack = yield* Effect.fork(
          Effect.either(
            sql.withTransaction(
              Effect.gen(function* () {
                yield* sql`INSERT INTO mine (n) VALUES (${-round})`
                yield* Effect.yieldNow()
                yield* Effect.sleep("1 millis")
                return yield* Effect.fail("rolled back on purpose" as const)
              })
            )
          )
        )
        const kept = yield* Effect.fork(sql.withTransaction(Effect.zipRight(Effect.yieldNow(), sql`INSERT INTO mine (n) VALUES (${round})`)))
        const plain = yield* Effect.fork(sql<{ n: number }>`SELECT count(*) AS n FROM mine`)
        const answers = yield* bounded(`round ${round}`, Effect.forEach(storeOps, (f) => Fiber.join(f)))
        for (const a of answers) if (a !== undefined) won.push(a)
        const rb = yield* bounded(`the user's rolled-back transaction in round ${round}`, Fiber.join(rolledBack))
        if (rb._tag !== "Left") problems.push({ round, rb })
        yield* bounded(`the user's transaction in round ${round}`, Fiber.join(kept))
        yield* bounded(`the user's statement in round ${round}`, Fiber.join(plain))
      }
      const mine = yield* sql<{ n: number }>`SELECT n FROM mine ORDER BY n`
      const claimed = keysIn(file, "user")
      expect(problems).toEqual([])
      expect(mine.map((r) => r.n)).toEqual(Array.from({ length: 10 }, (_, i) => i))
      expect(won.length).toBe(10 * 20)
      expect(won.filter((k) => !claimed.has(k))).toEqual([])
      expect(keysIn(file, "full")).toEqual(new Set(["held"]))
      expect(countMismatches(file)).toEqual([])
      yield* bounded("closing the store", Scope.close(scope, Exit.void))
    }),
    120_000
  )
})

describePg("writer lock attack: PostgreSQL turns", () => {
  const pgStoreIn = (url: string, scope: Scope.Scope, settings: Partial<StoreSettings> = {}) =>
    Effect.map(Layer.buildWithScope(PgStore.layer({ url, clock: "application", ...settings }), scope), (context) => Effect.runSync(Effect.provide(KeyedStore, context)))

  it.scopedLive("300 concurrent writes of one namespace, a third interrupted while they wait their turn: answers are values or Busy, rows are exact, the next writes complete", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      const scope = yield* Scope.make()
      const store = yield* pgStoreIn(url, scope, { lockWait: "150 millis" })
      const h = yield* strings(store.open({ owner: "p", namespace: "turns", schema: Schema.String, maxEntries: 40, overflow: "evict-oldest" }))
      const claims = yield* strings(store.open({ owner: "p", namespace: "turnsClaims", schema: Schema.String, maxEntries: 10_000, overflow: "reject-new" }))
      const rand = prng(5)
      const problems: Array<unknown> = []
      for (let round = 0; round < 4; round++) {
        const fibers = yield* Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) =>
          Effect.fork(
            i % 3 === 0
              ? Effect.asVoid(h.register(`r${round}i${i}`, "v"))
              : i % 3 === 1
                ? Effect.map(claims.registerIfAbsent(`one${round}`, `c${i}`), (won) => (won ? i : -1))
                : Effect.asVoid(h.delete(`r${round}i${i - 2}`))
          )
        )
        yield* interruptAThird(fibers, rand, () => (rand(2) === 0 ? steps(rand(4)) : Effect.void))
        const exits = yield* bounded(`round ${round}`, Effect.forEach(fibers, (f) => Fiber.await(f)))
        const outcomes = exits.map(outcome)
        const bad = outcomes.filter((o) => o.kind === "defect" || (o.kind === "failed" && o.reason !== "Busy"))
        if (bad.length > 0) problems.push({ round, bad: bad.slice(0, 5), count: bad.length })
        const winners = outcomes.flatMap((o) => (o.kind === "ok" && typeof o.value === "number" && o.value >= 0 ? [o.value] : []))
        if (winners.length > 1) problems.push({ round, winners })
        // The turns were not leaked: writes of the namespace still complete (a lost turn hangs them).
        yield* bounded(`writes after round ${round}`, Effect.all([h.register(`after${round}`, "v"), Effect.asVoid(claims.registerIfAbsent(`after${round}`, "v"))], { concurrency: "unbounded" }), 20)
        if (Option.isNone(yield* h.lookup(`after${round}`))) problems.push({ round, after: "missing" })
        const won = yield* claims.lookup(`one${round}`)
        if (winners.length === 1 && !(Option.isSome(won) && won.value === `c${winners[0]}`)) problems.push({ round, winners, won })
      }
      expect(problems).toEqual([])
      expect(yield* h.size).toBeLessThanOrEqual(40)
      yield* bounded("closing the store", Scope.close(scope, Exit.void))
    }),
    180_000
  )

  it.scopedLive("lockWait 1 ms, 200 concurrent registers of one namespace: the turns queue far past 1 ms, so some fail Busy; a Busy write never happened, every other one landed", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      const scope = yield* Scope.make()
      const store = yield* pgStoreIn(url, scope, { lockWait: "1 millis" })
      const h = yield* strings(store.open({ owner: "p", namespace: "hurry", schema: Schema.String, maxEntries: 10_000, overflow: "evict-oldest" }))
      const exits = yield* bounded(
        "the registers",
        Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => Effect.exit(h.register(`k${i}`, "v")), { concurrency: "unbounded" })
      )
      const outcomes = exits.map(outcome)
      const busy = outcomes.flatMap((o, i) => (o.kind === "failed" && o.reason === "Busy" ? [i] : []))
      const landed = outcomes.flatMap((o, i) => (o.kind === "ok" ? [i] : []))
      expect(outcomes.filter((o) => o.kind !== "ok" && !(o.kind === "failed" && o.reason === "Busy"))).toEqual([])
      expect(busy.length).toBeGreaterThan(0)
      const rows = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => Effect.map(h.lookup(`k${i}`), Option.isSome))
      // Busy on the turn means the write never ran (lock_timeout's Busy inside the transaction rolled back).
      expect(busy.filter((i) => rows[i])).toEqual([])
      expect(landed.filter((i) => !rows[i])).toEqual([])
      // The turns are free again: a later write of the namespace completes.
      yield* bounded("a write after", Effect.retry(h.register("after", "v"), { times: 50, while: (e) => e.reason === "Busy" }), 20)
      yield* bounded("closing the store", Scope.close(scope, Exit.void))
    }),
    120_000
  )
})
