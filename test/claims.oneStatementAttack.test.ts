/**
 * Attacks on the SQLite one-statement claim (claimIfCountsAllow, d4b83c4): exactly-once,
 * false only for live keys, exact caps and counts, dead-on-arrival rows, contention and
 * interruption, against real SQLite files.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import Database from "better-sqlite3"
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Schema } from "effect"
import { sqliteBackend, storeOf } from "./support/backends.js"

const fixture = (settings: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const db = yield* sqliteBackend.fresh
    const store = yield* storeOf(db.store(settings))
    const raw = <R extends object>(q: string) => Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe<R>(q)), db.sql!)
    /** Every namespace whose counter differs from its real row count. */
    const countMismatches = raw<{ namespace: string }>(
      `SELECT c.namespace FROM channel_state_counts c WHERE c.row_count <> (SELECT count(*) FROM channel_state_entries e WHERE e.owner = c.owner AND e.namespace = c.namespace)
       UNION SELECT e.namespace FROM channel_state_entries e WHERE NOT EXISTS (SELECT 1 FROM channel_state_counts c WHERE c.owner = e.owner AND c.namespace = e.namespace)`
    )
    const liveRows = (namespace: string) =>
      Effect.map(raw<{ n: number }>(`SELECT count(*) AS n FROM channel_state_entries WHERE namespace = '${namespace}' AND (expires_at IS NULL OR expires_at > ${Date.now()})`), (r) => r[0]!.n)
    return { db, store, raw, countMismatches, liveRows }
  })

const reasonOf = (e: Either.Either<boolean, unknown>) => (Either.isRight(e) ? e.right : (e.left as { reason: string }).reason)

/**
 * `rounds` rounds of `perRound` claims of fresh keys, each beside a register refused by a full
 * `reject-new` namespace (its transaction rolls back, taking with it whatever ran on the
 * connection meanwhile): how many claims won, and how many of those lost their row; then a
 * second claim of every won key, which must lose (a winner whose row was undone would win again).
 */
const claimsBesideRollbacks = (rounds: number, perRound: number, tune: <A, E, R>(e: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const { store, countMismatches } = yield* fixture()
    const claims = yield* store.open({ owner: "p", namespace: "claims", schema: Schema.String, maxEntries: 100_000 })
    const full = yield* store.open({ owner: "p", namespace: "full", schema: Schema.String, maxEntries: 1, overflow: "reject-new" })
    yield* full.register("held", "held")
    const won: Array<string> = []
    let missing = 0
    let refusedRegisters = 0
    for (let round = 0; round < rounds; round++) {
      const ops = Array.from({ length: perRound }, (_, i) => [
        Effect.either(claims.registerIfAbsent(`r${round}k${i}`, "v")),
        Effect.either(Effect.as(full.register(`r${round}x${i}`, "x"), false))
      ]).flat()
      const answers = yield* tune(Effect.all(ops, { concurrency: "unbounded" }))
      for (const [j, answer] of answers.entries()) {
        if (j % 2 === 1) refusedRegisters += Either.isLeft(answer) ? 1 : 0
        else if (Either.isRight(answer) && answer.right === true) won.push(`r${round}k${j / 2}`)
      }
    }
    for (const key of won) if ((yield* claims.lookup(key))._tag === "None") missing++
    const size = yield* claims.size
    const again = yield* Effect.forEach(won, (key) => claims.registerIfAbsent(key, "second"))
    return { won: won.length, missing, refusedRegisters, size, wonAgain: again.filter((x) => x).length, countMismatches: yield* countMismatches }
  })

describe("SQLite one-statement claims: attack", () => {
  const asIs = <A, E, R>(e: Effect.Effect<A, E, R>) => e
  // `operations`: how the bursts run; `everything`: how the store is built and run too.
  for (const [name, rounds, perRound, operations, everything] of [
    ["operations yielding every 64 steps", 1, 200, Effect.withMaxOpsBeforeYield(64), asIs],
    ["the store built with yields every 16 steps (its batching fiber too)", 5, 150, asIs, Effect.withMaxOpsBeforeYield(16)],
    ["default scheduling", 10, 300, asIs, asIs]
  ] as const) {
    it.scopedLive(`interleaving, ${name}: every claim of a fresh key wins and keeps its row beside rolled-back transactions`, () =>
      Effect.map(everything(claimsBesideRollbacks(rounds, perRound, operations)), (result) =>
        expect(result).toEqual({ won: rounds * perRound, missing: 0, refusedRegisters: rounds * perRound, size: rounds * perRound, wonAgain: 0, countMismatches: [] })
      )
    )
  }

  it.scopedLive("exactly once: 2 store instances x 40 fibers claim one key; an expired row is claimed again exactly once", () =>
    Effect.gen(function* () {
      // The TTL is long enough that no claimer of a burst, however long it waits for the write
      // lock on a busy machine, finds the winner's row already expired (it would rightly win
      // too); the sleep outlasts it, so the second burst finds the row expired.
      const { db, store } = yield* fixture()
      const other = yield* storeOf(db.store())
      const opts = { owner: "p", namespace: "once", schema: Schema.String, maxEntries: 10 }
      const hs = [yield* store.open(opts), yield* other.open(opts)]
      const burst = (key: string) =>
        Effect.all(Array.from({ length: 80 }, (_, i) => hs[i % 2]!.registerIfAbsent(key, `c${i}`, { ttl: "3 seconds" })), { concurrency: "unbounded" })
      expect((yield* burst("k")).filter((x) => x).length).toBe(1)
      yield* Effect.sleep("3500 millis")
      expect((yield* burst("k")).filter((x) => x).length).toBe(1)
    })
  )

  it.scopedLive("a batch near a reject-new cap mixing a live key, an expired row (twice) and fresh keys: false only for the live key and the duplicate", () =>
    Effect.gen(function* () {
      const { store, countMismatches, liveRows } = yield* fixture()
      const ns = yield* store.open({ owner: "p", namespace: "edge", schema: Schema.String, maxEntries: 5, overflow: "reject-new" })
      const now = Date.now()
      yield* ns.register("live1", "held")
      yield* ns.register("old", "old", { createdAt: now - 10_000, expiresAt: now - 5_000 })
      yield* ns.register("f0", "f0")
      const keys = ["live1", "old", "old", "f1", "f2", "f3", "f4", "f5"]
      const answers = (yield* Effect.all(keys.map((k) => Effect.either(ns.registerIfAbsent(k, k))), { concurrency: "unbounded" })).map(reasonOf)
      expect(answers[0]).toBe(false)
      expect([answers[1], answers[2]].filter((a) => a === true).length).toBe(1)
      for (const a of answers.slice(3)) expect(a === true || a === "LimitExceeded").toBe(true)
      expect(answers.filter((a) => a === false).length).toBe(2)
      expect(yield* liveRows("edge")).toBeLessThanOrEqual(5)
      expect(answers.filter((a) => a === true).length).toBe(3)
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("evict-oldest: 60 concurrent distinct claims into 5 all win, the namespace keeps at most 5 rows", () =>
    Effect.gen(function* () {
      const { store, countMismatches, liveRows } = yield* fixture()
      const ns = yield* store.open({ owner: "p", namespace: "evict", schema: Schema.String, maxEntries: 5, overflow: "evict-oldest" })
      for (let round = 0; round < 5; round++) {
        const answers = yield* Effect.all(Array.from({ length: 60 }, (_, i) => ns.registerIfAbsent(`r${round}k${i}`, "v")), { concurrency: "unbounded" })
        expect(answers.every((a) => a === true)).toBe(true)
        expect(yield* liveRows("evict")).toBeLessThanOrEqual(5)
      }
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("owner cap 6 across two namespaces, concurrent fresh claims from two instances: never false, the owner holds at most 6", () =>
    Effect.gen(function* () {
      const { db, store, countMismatches, raw } = yield* fixture({ ownerMaxEntries: 6 })
      const other = yield* storeOf(db.store({ ownerMaxEntries: 6 }))
      const a = { owner: "p", namespace: "a", schema: Schema.String, maxEntries: 100 }
      const b = { owner: "p", namespace: "b", schema: Schema.String, maxEntries: 4, overflow: "evict-oldest" as const }
      const hs = [yield* store.open(a), yield* other.open(a), yield* store.open(b), yield* other.open(b)]
      const answers = (yield* Effect.all(
        Array.from({ length: 40 }, (_, i) => Effect.either(hs[i % 4]!.registerIfAbsent(`k${i}`, "v"))),
        { concurrency: "unbounded" }
      )).map(reasonOf)
      for (const x of answers) expect(x === true || x === "LimitExceeded").toBe(true)
      const total = (yield* raw<{ n: number }>("SELECT count(*) AS n FROM channel_state_entries WHERE owner = 'p'"))[0]!.n
      expect(total).toBeLessThanOrEqual(6)
      expect(answers.filter((x) => x === true).length).toBeGreaterThanOrEqual(total)
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("dead-on-arrival claims take no room in a reject-new namespace of 2", () =>
    Effect.gen(function* () {
      const { store, countMismatches } = yield* fixture()
      const ns = yield* store.open({ owner: "p", namespace: "doa", schema: Schema.String, maxEntries: 2, overflow: "reject-new" })
      const now = Date.now()
      const dead = yield* Effect.all(
        Array.from({ length: 10 }, (_, i) => Effect.either(ns.registerIfAbsent(`d${i}`, "v", { createdAt: now - 10_000, expiresAt: now - 5_000 }))),
        { concurrency: "unbounded" }
      )
      for (const d of dead) expect(Either.isRight(d)).toBe(true)
      const fresh = (yield* Effect.all([Effect.either(ns.registerIfAbsent("a", "a")), Effect.either(ns.registerIfAbsent("b", "b"))], { concurrency: "unbounded" })).map(reasonOf)
      expect(fresh).toEqual([true, true])
      expect(reasonOf(yield* Effect.either(ns.registerIfAbsent("c", "c")))).toBe("LimitExceeded")
      expect(yield* countMismatches).toEqual([])
    })
  )

  it.scopedLive("another connection holds the write lock: the claim waits, wins after release; past lockWait it fails Busy", () =>
    Effect.gen(function* () {
      // lockWait is far longer than the 100 ms the claim is watched waiting, so a stalled test
      // process cannot see it fail Busy first; the Busy half then waits all of it out.
      const { db, store } = yield* fixture({ lockWait: "3 seconds" })
      const ns = yield* store.open({ owner: "p", namespace: "lock", schema: Schema.String, maxEntries: 10 })
      yield* ns.register("warm", "w")
      const file = (db as unknown as { location?: string }).location
      const filename = file ?? (yield* Effect.map(
        Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe<{ file: string }>("SELECT file FROM pragma_database_list WHERE name = 'main'")), db.sql!),
        (r) => r[0]!.file
      ))
      const holder = new Database(filename)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.close()))
      holder.exec("BEGIN IMMEDIATE")
      const claim = yield* Effect.fork(Effect.either(ns.registerIfAbsent("k", "v")))
      yield* Effect.sleep("100 millis")
      const early = yield* Fiber.poll(claim)
      holder.exec("COMMIT")
      expect(early._tag).toBe("None")
      expect(reasonOf(yield* Fiber.join(claim))).toBe(true)
      holder.exec("BEGIN IMMEDIATE")
      const busy = reasonOf(yield* Effect.either(ns.registerIfAbsent("k2", "v")))
      holder.exec("COMMIT")
      expect(busy).toBe("Busy")
      expect((yield* ns.lookup("k2"))._tag).toBe("None")
    })
  )

  it.scopedLive("interrupting claimers at random points leaves counts exact and no half-made claim", () =>
    Effect.gen(function* () {
      const { store, countMismatches, liveRows } = yield* fixture()
      const ns = yield* store.open({ owner: "p", namespace: "intr", schema: Schema.String, maxEntries: 30, overflow: "reject-new" })
      for (let round = 0; round < 20; round++) {
        const fibers = yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) =>
          Effect.fork(ns.registerIfAbsent(`k${(i * 7 + round) % 50}`, "v"))
        )
        yield* Effect.sleep(`${round % 4} millis`)
        yield* Effect.forEach(fibers.filter((_, i) => (i + round) % 3 === 0), Fiber.interrupt, { concurrency: "unbounded" })
        yield* Effect.forEach(fibers, Fiber.await)
        expect(yield* countMismatches).toEqual([])
        expect(yield* liveRows("intr")).toBeLessThanOrEqual(30)
        if (round % 5 === 4) yield* ns.clear
      }
      // Every key without a row can still be claimed, every key with one cannot.
      for (let k = 0; k < 50; k++) {
        const present = (yield* ns.lookup(`k${k}`))._tag === "Some"
        const r = reasonOf(yield* Effect.either(ns.registerIfAbsent(`k${k}`, "again")))
        if (present) expect(r).toBe(false)
        else expect(r === true || r === "LimitExceeded").toBe(true)
      }
    })
  )

  it.scopedLive("real OS processes: 3 children race 60 fibers each over 20 shared keys; every key is won exactly once", () =>
    Effect.gen(function* () {
      const { db, store } = yield* fixture()
      yield* store.open({ owner: "p", namespace: "procs", schema: Schema.String, maxEntries: 1000 })
      const file = (db as unknown as { location: string }).location
      const dir = path.dirname(file)
      const script = path.join(dir, "racer.ts")
      const src = path.resolve("src/layers/store/SqliteStore.js")
      const ks = path.resolve("src/KeyedStore.js")
      fs.writeFileSync(
        script,
        `import { Effect, Schema } from ${JSON.stringify(path.resolve("node_modules/effect/dist/esm/index.js"))}
import * as fs from "node:fs"
import { KeyedStore } from ${JSON.stringify(ks)}
import * as SqliteStore from ${JSON.stringify(src)}
const [file, go, name] = process.argv.slice(2)
const main = Effect.gen(function* () {
  const store = yield* KeyedStore
  const ns = yield* store.open({ owner: "p", namespace: "procs", schema: Schema.String, maxEntries: 1000 })
  process.stdout.write("ready\\n")
  while (!fs.existsSync(go)) yield* Effect.sleep("5 millis")
  const won = yield* Effect.all(Array.from({ length: 60 }, (_, i) => Effect.either(ns.registerIfAbsent("k" + (i % 20), name))), { concurrency: "unbounded" })
  process.stdout.write(JSON.stringify(won.map((w, i) => (w._tag === "Right" ? (w.right ? "k" + (i % 20) : null) : "ERR:" + (w.left as any).reason))) + "\\n")
})
Effect.runPromise(Effect.scoped(Effect.provide(main, SqliteStore.layer({ filename: file })))).then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
`
      )
      const go = path.join(dir, "go")
      const children = ["a", "b", "c"].map((name) => {
        const child = childProcess.spawn(process.execPath, ["--import", "tsx", script, file, go, name], { stdio: ["ignore", "pipe", "inherit"] })
        let out = ""
        const ready = new Promise<void>((resolve) => child.stdout.on("data", (d) => { out += String(d); if (out.includes("ready")) resolve() }))
        const done = new Promise<string>((resolve, reject) => child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`)))))
        return { ready, done }
      })
      yield* Effect.promise(() => Promise.all(children.map((c) => c.ready)))
      fs.writeFileSync(go, "")
      const outs = yield* Effect.promise(() => Promise.all(children.map((c) => c.done)))
      const all = outs.flatMap((o) => JSON.parse(o.split("\n").filter((l) => l.startsWith("["))[0]!) as Array<string | null>)
      expect(all.filter((x) => x?.startsWith("ERR"))).toEqual([])
      const wins = all.filter((x): x is string => x !== null).sort()
      expect(wins).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`).sort())
    }), 60_000
  )
})
