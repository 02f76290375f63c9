/**
 * Attacks on PostgreSQL's one-call claim under an owner cap (the claim function, migrations'
 * `CREATE_CLAIM_FUNCTION`), beyond test/store.pgClaimFunction.test.ts: several store instances
 * (each its own pool, as other processes are to the database) and three OS processes (a worker
 * written at run time) claiming the same keys; stores
 * that use the function beside one that does not (a role that may not create it) under a mix
 * of claims, registers, batches, consumes, deletes and sweeps, with a watcher that reads every
 * committed state it can and checks the caps; refusals that are exact when the counters are
 * full of expired rows; keys deleted, and rows of the claim's own namespace committed, while a
 * (coalesced) claim waits for the owner's lock; the times a claimed row gets; a lock wait past `lockWait`; the claim's
 * backend terminated while it waits for the lock; keys and values that the text[] parameters
 * must carry exactly; coalesced batches of 500 with duplicates, live and expired keys.
 * Real time everywhere (but the TestClock test), no timing assertions: waits are for explicit
 * signals (a lock waiter seen in pg_locks), bounded generously.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Exit, Fiber, Layer, Option, Ref, Schema, TestClock } from "effect"
import type { NamespaceHandle, NamespaceOptions } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import type { StoreSettings } from "../src/layers/store/storeRules.js"
import { StateStoreError } from "../src/StateStoreError.js"
import { bounded, prng } from "./support/attackTools.js"
import { freshPgDatabase, pgUrl, storeOf, tempDir } from "./support/backends.js"
import { dropClaimFunction, hasClaimFunction, insertEntry, query, rawClient, roleWithoutCreate, untilAdvisoryWaiters, whileLockHeld } from "./support/pgSessions.js"
import type { ClaimFunctionWorkerLine } from "./support/claimFunctionWorker.js"
import { describePg } from "./support/describePg.js"
import { type ChildExit, resultLineOf, spawnLineProcess } from "./support/lineProcess.js"

const OWNER = "o"
const TTL = 600_000
const MAX_EXPIRY = 8_640_000_000_000_000

const dbNow = (client: Connection) =>
  Effect.map(query(client, "SELECT floor(extract(epoch from clock_timestamp()) * 1000)::bigint::text AS now"), (r) => Number(r.rows[0].now))

/** A store over `url` built in the test's scope. */
const pgStoreOf = (url: string, settings: Partial<StoreSettings> & { clock?: "database" | "application" } = {}) => storeOf(PgStore.layer({ url, ...settings }))

type Store = Effect.Effect.Success<ReturnType<typeof pgStoreOf>>

const insertRow = (client: Connection, namespace: string, key: string, json: string, expiresAt: number | null, createdAt = Date.now()) =>
  insertEntry(client, { owner: OWNER, namespace, key, json, createdAt, expiresAt })

/** Every row of the owner, live or not, as the table holds them. */
const allRows = (client: Connection) =>
  Effect.map(
    query(
      client,
      "SELECT namespace, entry_key, value_json, created_at::text AS created_at, expires_at::text AS expires_at, (expires_at IS NULL OR expires_at > floor(extract(epoch from statement_timestamp()) * 1000)) AS live FROM channel_state_entries WHERE owner = $1",
      [OWNER]
    ),
    (result) =>
      result.rows.map((row) => ({
        namespace: row.namespace as string,
        key: row.entry_key as string,
        json: row.value_json as string,
        createdAt: Number(row.created_at),
        expiresAt: row.expires_at === null ? null : Number(row.expires_at),
        live: row.live as boolean
      }))
  )

/** Waits until some session waits for an advisory lock in this database; answers its pid. */
const advisoryWaiter = (watcher: Connection) =>
  Effect.gen(function* () {
    for (;;) {
      const result = yield* query(
        watcher,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
      )
      if (result.rows.length > 0) return Number(result.rows[0].pid)
      yield* Effect.sleep("10 millis")
    }
  })

const outcome = <A>(answer: Either.Either<A, StateStoreError>) => (Either.isLeft(answer) ? answer.left.reason : answer.right)

/**
 * On one database: stores that use the claim function, and one that does not (opened by a role
 * that may not create the function, while it was dropped; then it is created again, as it was).
 */
const mixedStores = (settings: Partial<StoreSettings> & { clock?: "database" | "application" }, withFunction = 2) =>
  Effect.gen(function* () {
    const { url } = yield* freshPgDatabase(pgUrl!)
    yield* Effect.scoped(Layer.build(PgStore.layer({ url })))
    const admin = yield* rawClient(url)
    const definition = yield* dropClaimFunction(admin)
    const asRole = yield* roleWithoutCreate(admin, url)
    const without = yield* pgStoreOf(asRole, settings)
    yield* query(admin, definition)
    expect(yield* hasClaimFunction(admin)).toBe(true)
    const withFn: Array<Store> = []
    for (let i = 0; i < withFunction; i++) withFn.push(yield* pgStoreOf(url, settings))
    return { url, admin, without, withFn }
  })


type WorkerOut = ClaimFunctionWorkerLine

const numberNs = (namespace: string, extra: Partial<NamespaceOptions<number, number>> = {}) =>
  ({ owner: OWNER, namespace, schema: Schema.Number, maxEntries: 1_000, ttl: TTL, ...extra }) as NamespaceOptions<number, number>

describePg("attacks on PostgreSQL's one-call claim under an owner cap", () => {
  for (const clock of ["database", "application"] as const) {
    it.scopedLive(`${clock} clock: 4 store instances x 2 claims of 30 keys (10 expired, 5 live): each claimable key won exactly once, live rows never overwritten`, () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const stores: Array<Store> = []
        for (let i = 0; i < 4; i++) stores.push(yield* pgStoreOf(url, { clock, ownerMaxEntries: 1_000 }))
        const admin = yield* rawClient(url)
        const handles: Array<NamespaceHandle<number>> = []
        for (const store of stores) handles.push(yield* store.open(numberNs("a")))
        for (let i = 0; i < 10; i++) yield* insertRow(admin, "a", `k${i}`, "99", Date.now() - 60_000)
        for (let i = 10; i < 15; i++) yield* insertRow(admin, "a", `k${i}`, "77", Date.now() + TTL)
        const claims = handles.flatMap((h, s) => Array.from({ length: 60 }, (_, i) => ({ h, key: `k${i % 30}`, value: s * 1000 + i })))
        const answers = yield* bounded(
          "the claims",
          Effect.forEach(claims, (c) => Effect.either(c.h.registerIfAbsent(c.key, c.value)), { concurrency: "unbounded" })
        )
        const winners = new Map<string, Array<number>>()
        for (const [i, answer] of answers.entries()) {
          expect(Either.isRight(answer), `claim ${i}: ${String(outcome(answer))}`).toBe(true)
          if (Either.isRight(answer) && answer.right) winners.set(claims[i]!.key, [...(winners.get(claims[i]!.key) ?? []), claims[i]!.value])
        }
        const rows = new Map((yield* allRows(admin)).map((row) => [row.key, row]))
        for (let i = 0; i < 30; i++) {
          const key = `k${i}`
          if (i >= 10 && i < 15) {
            expect(winners.get(key), `${key} is live`).toBeUndefined()
            expect(rows.get(key)?.json).toBe("77")
          } else {
            expect(winners.get(key)?.length, `${key} winners`).toBe(1)
            expect(rows.get(key)?.json).toBe(String(winners.get(key)![0]))
            expect(rows.get(key)?.live).toBe(true)
          }
        }
        // Claimed again now that every key is live: nobody wins.
        const again = yield* Effect.forEach(claims, (c) => c.h.registerIfAbsent(c.key, -1), { concurrency: "unbounded" })
        expect(again.filter(Boolean).length).toBe(0)
      })
    )

    it.scopedLive(`${clock} clock: stores with and without the function, claims mixed with registers, batches, consumes, deletes and sweeps: no committed state over the caps, refusals exact after`, () =>
      Effect.gen(function* () {
        const OWNER_CAP = 5
        const { admin, without, withFn } = yield* mixedStores({ clock, ownerMaxEntries: OWNER_CAP, sweepInterval: "20 millis" })
        const stores = [...withFn, without]
        const nsA = (s: Store) => s.open(numberNs("a", { maxEntries: 4, overflow: "reject-new" }))
        const nsB = (s: Store) => s.open(numberNs("b", { maxEntries: 3, overflow: "evict-oldest" }))
        const handles: Array<{ a: NamespaceHandle<number>; b: NamespaceHandle<number> }> = []
        for (const s of stores) handles.push({ a: yield* nsA(s), b: yield* nsB(s) })
        const over = yield* Ref.make<Array<string>>([])
        const done = yield* Ref.make(false)
        const polls = yield* Ref.make(0)
        const watch = yield* Effect.fork(
          Effect.gen(function* () {
            while (!(yield* Ref.get(done))) {
              const rows = yield* allRows(admin)
              const live = rows.filter((row) => row.live)
              const a = live.filter((row) => row.namespace === "a").length
              const b = live.filter((row) => row.namespace === "b").length
              if (live.length > OWNER_CAP || a > 4 || b > 3) yield* Ref.update(over, (seen) => [...seen, `owner ${live.length}, a ${a}, b ${b}: ${live.map((r) => `${r.namespace}/${r.key}`).join(" ")}`])
              yield* Ref.update(polls, (n) => n + 1)
            }
          })
        )
        const reasons = new Set<string>()
        const note = <A>(effect: Effect.Effect<A, StateStoreError>) =>
          Effect.catchAll(Effect.asVoid(effect), (error) => Effect.sync(() => reasons.add(error.reason)))
        for (let round = 0; round < 6; round++) {
          const random = prng(round * 7919 + (clock === "database" ? 1 : 2))
          const ops = Array.from({ length: 90 }, () => {
            const h = handles[random(handles.length)]!
            const ns = random(2) === 0 ? h.a : h.b
            const key = `k${random(8)}`
            const value = random(1000)
            switch (random(9)) {
              case 0:
              case 1:
              case 2:
                return note(ns.registerIfAbsent(key, value))
              case 3:
                return note(ns.registerIfAbsent(key, value, { ttl: "30 millis" }))
              case 4:
                return note(ns.register(key, value, random(2) === 0 ? undefined : { ttl: "40 millis" }))
              case 5:
                return note(ns.delete(key))
              case 6:
                return note(ns.consume(key))
              case 7:
                return note(
                  ns.writeBatch([
                    { _tag: "Register", key, value, createdAt: Date.now(), expiresAt: Date.now() + TTL },
                    { _tag: "Register", key: `k${random(8)}`, value, createdAt: Date.now() - 10, expiresAt: Date.now() - 1 },
                    { _tag: "Delete", key: `k${random(8)}` }
                  ])
                )
              default:
                return note(Effect.zipRight(Effect.sleep(`${random(30)} millis`), ns.registerIfAbsent(key, value)))
            }
          })
          yield* bounded(`round ${round}`, Effect.all(ops, { concurrency: "unbounded", discard: true }))
        }
        yield* Ref.set(done, true)
        yield* Fiber.join(watch)
        expect(yield* Ref.get(polls)).toBeGreaterThan(0)
        expect(yield* Ref.get(over)).toEqual([])
        expect([...reasons].filter((reason) => reason !== "LimitExceeded")).toEqual([])
        // Exact refusals: claims of new keys, alternating the stores, win while the owner and `a`
        // have room for a live row, and are refused once either is full of live rows.
        yield* Effect.sleep("100 millis")
        for (let i = 0; i < 8; i++) {
          const rows = (yield* allRows(admin)).filter((row) => row.live)
          const ownerFull = rows.length >= OWNER_CAP
          const aFull = rows.filter((row) => row.namespace === "a").length >= 4
          const h = handles[i % handles.length]!
          const answer = yield* Effect.either(h.a.registerIfAbsent(`z${i}`, i))
          expect(outcome(answer), `claim z${i} with ${rows.length} live rows (${rows.map((r) => `${r.namespace}/${r.key}`).join(" ")})`).toBe(ownerFull || aFull ? "LimitExceeded" : true)
          if (ownerFull || aFull) {
            // Make room: delete a live row of a (or of b when a has none).
            const victim = rows.find((row) => row.namespace === "a") ?? rows[0]!
            yield* (victim.namespace === "a" ? h.a : h.b).delete(victim.key)
          }
        }
      })
    )

    it.scopedLive(`${clock} clock: counters full of expired rows: a coalesced batch gets exactly the room of live rows, the rest LimitExceeded; a namespace cap refuses exactly, evict-oldest evicts`, () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const store = yield* pgStoreOf(url, { clock, ownerMaxEntries: 6 })
        const admin = yield* rawClient(url)
        const a = yield* store.open(numberNs("a"))
        const c = yield* store.open(numberNs("c", { maxEntries: 2, overflow: "reject-new" }))
        const e = yield* store.open(numberNs("e", { maxEntries: 2, overflow: "evict-oldest" }))
        // The owner's counters say 6 (full), but only one row is live.
        yield* insertRow(admin, "a", "live", "1", Date.now() + TTL)
        for (let i = 0; i < 5; i++) yield* insertRow(admin, "b", `dead${i}`, "0", Date.now() - 60_000)
        const keys = ["n0", "n1", "n2", "n3", "n0", "live"]
        const answers = (yield* Effect.forEach(keys, (key, i) => Effect.either(a.registerIfAbsent(key, 10 + i)), { concurrency: "unbounded" })).map(outcome)
        // 4 new keys, room for 5 live rows: every one of them wins once; n0's second claim and live lose.
        expect(answers).toEqual([true, true, true, true, false, false])
        // Now 5 live rows (the swept-or-not expired ones do not count): room for exactly one.
        const more = (yield* Effect.forEach(["m0", "m1", "m2"], (key) => Effect.either(a.registerIfAbsent(key, 1)), { concurrency: "unbounded" })).map(outcome)
        expect(more.filter((x) => x === true).length).toBe(1)
        expect(more.filter((x) => x === "LimitExceeded").length).toBe(2)
        const live = (yield* allRows(admin)).filter((row) => row.live)
        expect(live.length).toBe(6)
        expect(live.find((row) => row.key === "live")?.json).toBe("1")
        // Make room for 3 (delete 3 of a's rows), then the namespace caps decide.
        for (const key of ["n1", "n2", "n3"]) expect(yield* a.delete(key)).toBe(true)
        const inC = (yield* Effect.forEach(["c0", "c1", "c2"], (key) => Effect.either(c.registerIfAbsent(key, 1)), { concurrency: "unbounded" })).map(outcome)
        expect(inC.filter((x) => x === true).length).toBe(2)
        expect(inC.filter((x) => x === "LimitExceeded").length).toBe(1)
        // e: one room left in the owner; e (empty) takes e0, then e1 is refused by the owner cap.
        expect(yield* e.registerIfAbsent("e0", 1)).toBe(true)
        expect(outcome(yield* Effect.either(e.registerIfAbsent("e1", 1)))).toBe("LimitExceeded")
        expect((yield* allRows(admin)).filter((row) => row.live).length).toBe(6)
      })
    )
  }

  for (const clock of ["database", "application"] as const) {
    /** A store with an owner cap, its namespace `a` (reject-new at `maxEntries`), a holder and a watcher connection. */
    const held = (ownerMaxEntries: number, maxEntries: number) =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const store = yield* pgStoreOf(url, { clock, ownerMaxEntries })
        const a = yield* store.open(numberNs("a", { maxEntries, overflow: "reject-new" }))
        const holder = yield* rawClient(url)
        const watcher = yield* rawClient(url)
        /** Runs `claims` while `holder` holds the owner's lock and does `meanwhile`, committing once a claim waits for the lock. */
        const whileHeld = <A, E>(meanwhile: Effect.Effect<unknown>, claims: Effect.Effect<A, E>) => whileLockHeld(holder, watcher, OWNER, meanwhile, claims)
        return { a, holder, watcher, whileHeld }
      })

    it.scopedLive(`${clock} clock: a key live when the claim starts and deleted while it waits for the lock counts as a new row (owner cap)`, () =>
      Effect.gen(function* () {
        const { a, holder, watcher, whileHeld } = yield* held(2, 100)
        expect(yield* a.registerIfAbsent("x", 1)).toBe(true)
        expect(yield* a.registerIfAbsent("k", 1)).toBe(true)
        const answers = yield* whileHeld(
          query(holder, "DELETE FROM channel_state_entries WHERE owner = $1 AND namespace = 'a' AND entry_key = 'k'", [OWNER]),
          Effect.all([Effect.either(a.registerIfAbsent("n1", 2)), Effect.either(a.registerIfAbsent("k", 2))], { concurrency: "unbounded" })
        )
        // Room for one of them (x stays): one wins, the other is refused.
        expect(answers.map(outcome).sort()).toEqual(["LimitExceeded", true].sort())
        const live = (yield* allRows(watcher)).filter((row) => row.live)
        expect(live.length).toBe(2)
      })
    )

    it.scopedLive(`${clock} clock: a coalesced batch whose key was live at its start and deleted while it waited for the lock: the key counts as a new row`, () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const store = yield* pgStoreOf(url, { clock, ownerMaxEntries: 3 })
        const a = yield* store.open(numberNs("a"))
        const holder = yield* rawClient(url)
        const second = yield* rawClient(url)
        const watcher = yield* rawClient(url)
        const waiters = (n: number) => bounded(`${n} lock waiters`, untilAdvisoryWaiters(watcher, n))
        expect(yield* a.registerIfAbsent("x", 1)).toBe(true)
        expect(yield* a.registerIfAbsent("k", 1)).toBe(true)
        yield* query(holder, "BEGIN")
        yield* query(holder, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [OWNER])
        // w runs alone (inline, holding the batcher) and waits for the lock; the second connection queues behind it.
        const w = yield* Effect.fork(a.registerIfAbsent("w", 1))
        yield* waiters(1)
        const secondHolds = yield* Effect.fork(
          Effect.gen(function* () {
            yield* query(second, "BEGIN")
            yield* query(second, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [OWNER])
            yield* query(second, "DELETE FROM channel_state_entries WHERE owner = $1 AND namespace = 'a' AND entry_key = 'k'", [OWNER])
          })
        )
        yield* waiters(2)
        // The batching fiber takes x's claim (live: answered without the lock) and waits for w;
        // n1 and k gather behind it, one batch that starts while the second connection holds the lock.
        const lost = yield* Effect.fork(a.registerIfAbsent("x", 2))
        yield* Effect.sleep("100 millis")
        const batch = yield* Effect.fork(Effect.all([Effect.either(a.registerIfAbsent("n1", 2)), Effect.either(a.registerIfAbsent("k", 2))], { concurrency: "unbounded" }))
        yield* Effect.sleep("100 millis")
        yield* query(holder, "COMMIT")
        expect(yield* bounded("w", Fiber.join(w))).toBe(true)
        expect(yield* bounded("x", Fiber.join(lost))).toBe(false)
        yield* bounded("the second connection's lock", Fiber.join(secondHolds))
        yield* waiters(1)
        yield* query(second, "COMMIT")
        const answers = yield* bounded("the batch", Fiber.join(batch))
        // x and w stay: room for one of n1 and k.
        expect(answers.map(outcome).sort()).toEqual(["LimitExceeded", true].sort())
        expect((yield* allRows(watcher)).filter((row) => row.live).length).toBe(3)
      })
    )

    it.scopedLive(`${clock} clock: rows of the claim's own namespace committed while it waits for the lock count against the namespace's cap`, () =>
      Effect.gen(function* () {
        const { a, holder, watcher, whileHeld } = yield* held(100, 3)
        expect(yield* a.registerIfAbsent("a1", 1)).toBe(true)
        const answer = yield* whileHeld(
          Effect.zipRight(insertRow(holder, "a", "a2", "2", Date.now() + TTL), insertRow(holder, "a", "a3", "3", Date.now() + TTL)),
          Effect.either(a.registerIfAbsent("a4", 4))
        )
        expect(outcome(answer)).toBe("LimitExceeded")
        expect((yield* allRows(watcher)).filter((row) => row.live).map((row) => row.key).sort()).toEqual(["a1", "a2", "a3"])
      })
    )
  }

  it.scopedLive("3 OS processes (one without the function) mixing claims, registers, batches, consumes, deletes and sweeps under one owner cap: no committed state over the caps, every raced key won by exactly one", () =>
    Effect.gen(function* () {
      const ROUNDS = 6
      const { url } = yield* freshPgDatabase(pgUrl!)
      yield* Effect.scoped(Layer.build(PgStore.layer({ url })))
      const admin = yield* rawClient(url)
      const dir = yield* tempDir
      const script = path.join("test", "support", "claimFunctionWorker.ts")
      const goFile = path.join(dir, "go")
      const definition = yield* dropClaimFunction(admin)
      const asRole = yield* roleWithoutCreate(admin, url)
      // The role's process opens while the function is missing (and may not create it): it claims in transactions.
      const workers = [yield* spawnLineProcess<WorkerOut>(script, [asRole, goFile, "w0", String(ROUNDS)])]
      yield* bounded("w0 ready", workers[0]!.ready((line) => line.type === "ready", "worker w0"), 120)
      yield* query(admin, definition)
      for (const name of ["w1", "w2"]) workers.push(yield* spawnLineProcess<WorkerOut>(script, [url, goFile, name, String(ROUNDS)]))
      yield* bounded("workers ready", Effect.forEach(workers, (w, i) => w.ready((line) => line.type === "ready", `worker w${i}`), { discard: true }), 120)
      const over: Array<string> = []
      let polls = 0
      let finished = false
      const watch = yield* Effect.fork(
        Effect.gen(function* () {
          while (!finished) {
            const live = (yield* allRows(admin)).filter((row) => row.live)
            const a = live.filter((row) => row.namespace === "a").length
            const b = live.filter((row) => row.namespace === "b").length
            if (live.length > 6 || a > 4 || b > 3) over.push(`owner ${live.length}, a ${a}, b ${b}`)
            polls++
          }
        })
      )
      fs.writeFileSync(goFile, "go")
      const exits: Array<ChildExit<WorkerOut>> = yield* bounded("the workers", Effect.forEach(workers, (w) => w.exit, { concurrency: "unbounded" }), 180)
      finished = true
      yield* Fiber.join(watch)
      const results = exits.map((exit, i) => resultLineOf(`worker w${i}`, exit, (line): line is Extract<WorkerOut, { type: "result" }> => line.type === "result"))
      expect(polls).toBeGreaterThan(0)
      expect(over).toEqual([])
      expect(results.flatMap((r) => r.odd)).toEqual([])
      for (let round = 0; round < ROUNDS; round++) {
        const key = `r${round}`
        const winners = results.flatMap((r) => r.won.filter((won) => won === key).map(() => r.worker))
        expect(winners.length, `${key} won by ${winners.join(", ")}`).toBe(1)
        const row = (yield* query(admin, "SELECT value_json FROM channel_state_entries WHERE owner = 'r' AND entry_key = $1", [key])).rows[0]
        expect(row?.value_json).toBe(JSON.stringify(winners[0]))
      }
    })
  )

  it.scopedLive("database clock: a claimed row's times are those the transaction path writes (namespace TTL, per-call ttl, createdAt, expiresAt, the largest date)", () =>
    Effect.gen(function* () {
      const { admin, without, withFn } = yield* mixedStores({ ownerMaxEntries: 100 }, 1)
      const viaFn = yield* withFn[0]!.open(numberNs("a"))
      const viaTx = yield* without.open(numberNs("a"))
      const created = Date.now() - 60_000
      const nearMax = MAX_EXPIRY - Date.now() - 60_000
      const cases: Array<[string, Parameters<typeof viaFn.registerIfAbsent>[2]]> = [
        ["ns", undefined],
        ["ttl", { ttl: "1 hour" }],
        ["created", { createdAt: created }],
        ["createdTtl", { createdAt: created, ttl: "2 hours" }],
        ["expires", { expiresAt: Date.now() + 123_456 }],
        ["createdExpires", { createdAt: created, expiresAt: created + 9_999_999_999 }],
        ["huge", { ttl: nearMax }]
      ]
      for (const [name, options] of cases) {
        const before = yield* dbNow(admin)
        expect(yield* viaFn.registerIfAbsent(`fn-${name}`, 1, options)).toBe(true)
        expect(yield* viaTx.registerIfAbsent(`tx-${name}`, 1, options)).toBe(true)
        const after = yield* dbNow(admin)
        const rows = new Map((yield* allRows(admin)).map((row) => [row.key, row]))
        const fn = rows.get(`fn-${name}`)!
        const tx = rows.get(`tx-${name}`)!
        expect(fn.live, name).toBe(true)
        if (options?.createdAt === undefined) {
          expect(fn.createdAt, name).toBeGreaterThanOrEqual(before)
          expect(fn.createdAt, name).toBeLessThanOrEqual(after)
        } else {
          expect(fn.createdAt, name).toBe(tx.createdAt)
        }
        if (options?.expiresAt !== undefined) {
          expect(fn.expiresAt, name).toBe(options.expiresAt)
          expect(tx.expiresAt, name).toBe(options.expiresAt)
        } else {
          // The same lifetime from the same start (the largest date caps both).
          expect(fn.expiresAt! - fn.createdAt, name).toBe(tx.expiresAt! - tx.createdAt)
          expect(fn.expiresAt!, name).toBeLessThanOrEqual(MAX_EXPIRY)
        }
      }
      const rows = new Map((yield* allRows(admin)).map((row) => [row.key, row]))
      expect(rows.get("fn-ns")!.expiresAt! - rows.get("fn-ns")!.createdAt).toBe(TTL)
      expect(rows.get("fn-ttl")!.expiresAt! - rows.get("fn-ttl")!.createdAt).toBe(3_600_000)
      expect(rows.get("fn-createdTtl")!.createdAt).toBe(created)
      expect(rows.get("fn-createdTtl")!.expiresAt).toBe(created + 7_200_000)
      expect(rows.get("fn-huge")!.expiresAt).toBe(Math.min(rows.get("fn-huge")!.createdAt + nearMax, MAX_EXPIRY))
    })
  )

  it.scoped("application clock on the TestClock: a claim stamps the TestClock's time, and a row expired by it is claimed again", () =>
    Effect.gen(function* () {
      const T = 1_800_000_000_000
      yield* TestClock.setTime(T)
      const { url } = yield* freshPgDatabase(pgUrl!)
      const store = yield* pgStoreOf(url, { clock: "application", ownerMaxEntries: 3 })
      const admin = yield* rawClient(url)
      const a = yield* store.open(numberNs("a"))
      expect(yield* a.registerIfAbsent("k", 1)).toBe(true)
      expect(yield* a.registerIfAbsent("k", 2)).toBe(false)
      expect(yield* a.registerIfAbsent("j", 1, { ttl: "5 seconds" })).toBe(true)
      let rows = new Map((yield* allRows(admin)).map((row) => [row.key, row]))
      expect([rows.get("k")!.createdAt, rows.get("k")!.expiresAt]).toEqual([T, T + TTL])
      expect([rows.get("j")!.createdAt, rows.get("j")!.expiresAt]).toEqual([T, T + 5_000])
      // At the TestClock's expiry of j (not yet k), j is claimable again, k is not.
      yield* TestClock.setTime(T + 5_000)
      expect(yield* a.registerIfAbsent("j", 3)).toBe(true)
      expect(yield* a.registerIfAbsent("k", 3)).toBe(false)
      rows = new Map((yield* allRows(admin)).map((row) => [row.key, row]))
      expect([rows.get("j")!.json, rows.get("j")!.createdAt, rows.get("j")!.expiresAt]).toEqual(["3", T + 5_000, T + 5_000 + TTL])
      expect(rows.get("k")!.json).toBe("1")
      // A row the real clock calls live but the TestClock expired: the store's clock decides.
      yield* insertRow(admin, "a", "x", "9", T + 6_000, T)
      yield* TestClock.setTime(T + 6_000)
      expect(yield* a.registerIfAbsent("x", 4)).toBe(true)
    })
  )

  it.scopedLive("a claim that waits past lockWait for the owner's lock fails Busy, writes nothing, and the key is claimable after", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      const store = yield* pgStoreOf(url, { ownerMaxEntries: 10, lockWait: "300 millis" })
      const a = yield* store.open(numberNs("a"))
      expect(yield* a.registerIfAbsent("first", 1)).toBe(true)
      const holder = yield* rawClient(url)
      const watcher = yield* rawClient(url)
      yield* query(holder, "BEGIN")
      yield* query(holder, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [OWNER])
      const exit = yield* bounded("the claim", Effect.exit(a.registerIfAbsent("k", 1)))
      yield* query(holder, "COMMIT")
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        expect(Option.isSome(failure) && failure.value instanceof StateStoreError ? failure.value.reason : Cause.pretty(exit.cause)).toBe("Busy")
      }
      expect((yield* allRows(watcher)).map((row) => row.key)).toEqual(["first"])
      expect(yield* a.registerIfAbsent("k", 2)).toBe(true)
      expect((yield* allRows(watcher)).find((row) => row.key === "k")?.json).toBe("2")
    })
  )

  for (const holderWrites of [true, false]) {
    it.scopedLive(`the claim's backend terminated while it waits for the owner's lock (${holderWrites ? "the holder then commits the key" : "the holder commits nothing"}): a typed answer, never two winners`, () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const store = yield* pgStoreOf(url, { ownerMaxEntries: 10 })
        const other = yield* pgStoreOf(url, { ownerMaxEntries: 10 })
        const a = yield* store.open(numberNs("a"))
        const a2 = yield* other.open(numberNs("a"))
        expect(yield* a.registerIfAbsent("first", 1)).toBe(true)
        const holder = yield* rawClient(url)
        const watcher = yield* rawClient(url)
        yield* query(holder, "BEGIN")
        yield* query(holder, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [OWNER])
        const claiming = yield* Effect.fork(Effect.exit(a.registerIfAbsent("k", 5)))
        const pid = yield* bounded("the claim's lock wait", advisoryWaiter(watcher))
        expect((yield* query(watcher, "SELECT pg_terminate_backend($1) AS t", [pid])).rows[0].t).toBe(true)
        if (holderWrites) yield* insertRow(holder, "a", "k", "7", Date.now() + TTL)
        yield* query(holder, "COMMIT")
        const exit = yield* bounded("the claim", Fiber.join(claiming))
        if (Exit.isFailure(exit)) {
          const failure = Cause.failureOption(exit.cause)
          expect(Option.isSome(failure) && failure.value instanceof StateStoreError, Cause.pretty(exit.cause)).toBe(true)
        }
        const claimWon = Exit.isSuccess(exit) && exit.value
        const otherWon = yield* a2.registerIfAbsent("k", 8)
        const row = (yield* allRows(watcher)).find((r) => r.key === "k")
        if (holderWrites) {
          expect([claimWon, otherWon]).toEqual([false, false])
          expect(row?.json).toBe("7")
        } else {
          expect(claimWon && otherWon).toBe(false)
          expect(row?.json).toBe(claimWon ? "5" : otherWon ? "8" : undefined)
          // Whoever holds k, nobody else gets it now.
          expect(yield* a.registerIfAbsent("k", 9)).toBe(false)
        }
      })
    )
  }

  it.scopedLive("odd keys and values (quotes, backslashes, braces, commas, NULL, unicode, 512 bytes) survive the array parameters exactly", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      const store = yield* pgStoreOf(url, { ownerMaxEntries: 1_000 })
      const admin = yield* rawClient(url)
      const h = yield* store.open({ owner: OWNER, namespace: "a", schema: Schema.String, maxEntries: 1_000, ttl: TTL })
      const keys = [
        '"',
        '""',
        "\\",
        "\\\\",
        '\\"',
        "{",
        "}",
        "{}",
        "{a,b}",
        ",",
        "a,b",
        "NULL",
        "null",
        " ",
        "  x  ",
        "\t",
        "\n",
        "'",
        "''; DROP TABLE x; --",
        "ARRAY[1]",
        "{\"a\":\"b\"}",
        "é",
        "😀",
        "\u00a0",
        "\u200b",
        "é".repeat(256),
        "😀".repeat(128),
        '"'.repeat(512),
        "\\".repeat(512),
        "x".repeat(512),
        "a\"b\\c{d}e,f'g h"
      ]
      const values = keys.map((key, i) => `${key}|${i}|\\"{},\u0001`)
      // A few of them already there, expired, to be written over.
      for (const key of keys.slice(0, 5)) yield* insertRow(admin, "a", key, JSON.stringify("old"), Date.now() - 60_000)
      const answers = yield* Effect.forEach(keys, (key, i) => h.registerIfAbsent(key, values[i]!), { concurrency: "unbounded" })
      expect(answers).toEqual(keys.map(() => true))
      const rows = new Map((yield* allRows(admin)).map((row) => [row.key, row]))
      expect([...rows.keys()].sort()).toEqual([...keys].sort())
      for (const [i, key] of keys.entries()) {
        expect(JSON.parse(rows.get(key)!.json), JSON.stringify(key)).toBe(values[i])
        expect(Option.getOrUndefined(yield* h.lookup(key)), JSON.stringify(key)).toBe(values[i])
      }
      const again = yield* Effect.forEach(keys, (key) => h.registerIfAbsent(key, "again"), { concurrency: "unbounded" })
      expect(again).toEqual(keys.map(() => false))
      // Near-misses of the odd keys are other keys: claimable.
      const near = keys.slice(0, 10).map((key) => `${key}.`)
      expect(yield* Effect.forEach(near, (key) => h.registerIfAbsent(key, "near"), { concurrency: "unbounded" })).toEqual(near.map(() => true))
    })
  )

  for (const [cap, label] of [
    [5_000, "room for all: the function decides"],
    [300, "room for fewer: the transaction decides"]
  ] as const) {
    it.scopedLive(`600 coalesced claims (450 distinct keys, 100 duplicated, 50 live, 50 expired), ${label}`, () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(pgUrl!)
        const store = yield* pgStoreOf(url, { ownerMaxEntries: cap })
        const admin = yield* rawClient(url)
        const h = yield* store.open(numberNs("a", { maxEntries: 10_000 }))
        yield* query(
          admin,
          "INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) SELECT $1, 'a', 'k' || i, '-1', $2::bigint, CASE WHEN i < 50 THEN $3::bigint ELSE $4::bigint END FROM generate_series(0, 99) AS i",
          [OWNER, Date.now(), Date.now() + TTL, Date.now() - 60_000]
        )
        const keys = [...Array.from({ length: 500 }, (_, i) => `k${i}`), ...Array.from({ length: 100 }, (_, i) => `k${100 + i}`)]
        const answers = (yield* bounded("the claims", Effect.forEach(keys, (key, i) => Effect.either(h.registerIfAbsent(key, i)), { concurrency: "unbounded" }))).map(
          outcome
        )
        const winners = new Map<string, number>()
        for (const [i, answer] of answers.entries()) {
          expect(answer === true || answer === false || answer === "LimitExceeded", `claim ${i}: ${String(answer)}`).toBe(true)
          if (answer === true) {
            expect(winners.has(keys[i]!), `${keys[i]} won twice`).toBe(false)
            winners.set(keys[i]!, i)
          }
        }
        for (let i = 0; i < 50; i++) expect(winners.has(`k${i}`), `k${i} is live`).toBe(false)
        const expected = Math.min(450, cap - 50)
        expect(winners.size).toBe(expected)
        expect(answers.filter((answer) => answer === "LimitExceeded").length).toBe(cap >= 500 ? 0 : 450 - expected)
        const live = (yield* allRows(admin)).filter((row) => row.live)
        expect(live.length).toBe(50 + expected)
        const byKey = new Map(live.map((row) => [row.key, row.json]))
        for (let i = 0; i < 50; i++) expect(byKey.get(`k${i}`)).toBe("-1")
        for (const [key, i] of winners) expect(byKey.get(key)).toBe(String(i))
      })
    )
  }
})
