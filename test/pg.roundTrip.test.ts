/**
 * PostgreSQL single statements that take the namespace's lock themselves (consume, delete,
 * deleteIfEqual: one autocommit `WITH lock AS (SELECT pg_advisory_xact_lock(…)) DELETE …`
 * statement instead of BEGIN; lock; DELETE; COMMIT) and reads as named prepared statements —
 * tried where they could break:
 *
 * - the statement's snapshot is taken when it starts, before the lock is granted: a second
 *   connection holds the lock while it inserts, changes or deletes the very row, commits, and
 *   only then lets the statement have the lock. The value must be handed out exactly once,
 *   never a stale one, and the trigger-kept row count must stay exact;
 * - the lock is taken before any row is read or locked (else a cap-enforcing writer holding
 *   the lock and the statement holding a row would deadlock): the plan says so;
 * - a lock held past `lockWait`: `Busy`, nothing changed;
 * - the statement's connection killed (`pg_terminate_backend`) while it waits for the lock;
 *   every pooled connection killed between operations (named statements are prepared again);
 * - a storm of concurrent registers, consumes and deletes in a bounded namespace.
 *
 * No test asserts elapsed time: every wait is on an observed state (the store's statement
 * seen waiting for the advisory lock in `pg_locks`).
 */
import { createRequire } from "node:module"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Fiber, Layer, Option, Schema } from "effect"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import { lockKeyOf } from "../src/layers/store/sqlHandleCore.js"
import { makeStatements, type SqlText } from "../src/layers/store/sqlStatements.js"
import { freshPgDatabase, pgUrl } from "./support/backends.js"
import { eventually } from "./support/eventually.js"

interface RawClient {
  connect(): Promise<void>
  query<R = Record<string, unknown>>(text: string, values?: ReadonlyArray<unknown>): Promise<{ readonly rows: Array<R> }>
  end(): Promise<void>
  on(event: "error", listener: (error: Error) => void): void
}
const pg = createRequire(import.meta.url)("pg") as { Client: new (config: { connectionString: string }) => RawClient }

const OWNER = "roundtrip"
const NAMESPACE = "oneshots"
const Value = Schema.Struct({ n: Schema.Number })
const namespaceOptions = { owner: OWNER, namespace: NAMESPACE, schema: Value, maxEntries: 1000, ttl: 60 * 60 * 1000 }
const LOCK_KEY = lockKeyOf(OWNER, NAMESPACE, undefined)

/** A raw connection of the test's own, closed with the scope. */
const rawConnection = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url })
      client.on("error", () => undefined)
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

const q = <R = Record<string, unknown>>(client: RawClient, text: string, values: ReadonlyArray<unknown> = []) =>
  Effect.promise(() => client.query<R>(text, values).then((result) => result.rows))

/** A fresh database, the store on it (its production clock: the database's) with the `registered` rows, raw connections, the namespace. */
const setup = (settings: Partial<PgStore.PgStoreOptions> = {}, registered: Record<string, number> = {}, bound: { readonly maxEntries?: number; readonly overflow?: "evict-oldest" | "reject-new" } = {}) =>
  Effect.gen(function* () {
    const db = yield* freshPgDatabase(pgUrl!)
    const context = yield* Layer.build(PgStore.layer({ url: db.url, sweepInterval: "1 hour", ...settings }))
    const store = Context.get(context, KeyedStore)
    const handle: NamespaceHandle<typeof Value.Type> = yield* store.open({ ...namespaceOptions, ...bound })
    for (const [key, n] of Object.entries(registered)) yield* handle.register(key, { n })
    const admin = yield* rawConnection(db.url)
    const holder = yield* rawConnection(db.url)
    /** Rows stored in the namespace, and what the trigger-kept counter says. */
    const counts = Effect.map(
      q<{ stored: string; counted: string | null }>(
        admin,
        "SELECT (SELECT count(*) FROM channel_state_entries WHERE owner = $1 AND namespace = $2) AS stored, (SELECT row_count FROM channel_state_counts WHERE owner = $1 AND namespace = $2) AS counted",
        [OWNER, NAMESPACE]
      ),
      (rows) => ({ stored: Number(rows[0]!.stored), counted: Number(rows[0]!.counted ?? 0) })
    )
    const rowOf = (key: string) =>
      Effect.map(q<{ value_json: string }>(admin, "SELECT value_json FROM channel_state_entries WHERE owner = $1 AND namespace = $2 AND entry_key = $3", [OWNER, NAMESPACE, key]), (rows) =>
        rows[0] === undefined ? undefined : (JSON.parse(rows[0].value_json) as typeof Value.Type)
      )
    /** Advisory-lock requests of this database still waiting (the store's statement, once it waits). */
    const waiting = Effect.map(
      q<{ n: string }>(admin, "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
      (rows) => Number(rows[0]!.n)
    )
    const waiterSeen = Effect.flatMap(eventually(waiting, (n) => n > 0), (n) => (n > 0 ? Effect.void : Effect.dieMessage("the store's statement never waited for the lock")))
    /** The holder: a transaction holding the namespace's lock (as every writer of the namespace takes it). */
    const hold = Effect.zipRight(q(holder, "BEGIN"), q(holder, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [LOCK_KEY]))
    /** Inserts a row stamped by the database's clock; `expiresIn` ms from now (negative: already expired), none by default. */
    const insertRow = (client: RawClient, key: string, n: number, expiresIn: number | null = null) =>
      q(
        client,
        "INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ($1, $2, $3, $4, floor(extract(epoch from clock_timestamp()) * 1000)::bigint, floor(extract(epoch from clock_timestamp()) * 1000)::bigint + $5::bigint)",
        [OWNER, NAMESPACE, key, JSON.stringify({ n }), expiresIn]
      )
    /** The holder changes the value of `key` / deletes its row. */
    const setValue = (key: string, n: number) =>
      q(holder, "UPDATE channel_state_entries SET value_json = $4 WHERE owner = $1 AND namespace = $2 AND entry_key = $3", [OWNER, NAMESPACE, key, JSON.stringify({ n })])
    const deleteRow = (key: string) => q(holder, "DELETE FROM channel_state_entries WHERE owner = $1 AND namespace = $2 AND entry_key = $3", [OWNER, NAMESPACE, key])
    return { db, handle, admin, holder, counts, rowOf, waiting, waiterSeen, hold, insertRow, setValue, deleteRow }
  })

/** Runs `operation` in a fiber, waits until the store's statement waits for the lock the holder has, runs `meanwhile` on the holder, commits, and joins. */
const whileHeld = <A, E>(
  env: Effect.Effect.Success<ReturnType<typeof setup>>,
  operation: Effect.Effect<A, E>,
  meanwhile: Effect.Effect<unknown> = Effect.void
) =>
  Effect.gen(function* () {
    yield* env.hold
    const running = yield* Effect.fork(Effect.either(operation))
    yield* env.waiterSeen
    yield* meanwhile
    yield* q(env.holder, "COMMIT")
    return yield* Fiber.join(running)
  })

describe.skipIf(pgUrl === undefined)("PostgreSQL: one round trip per operation, under the namespace's lock", () => {
  it.scopedLive("consume waits for the lock; a row the holder inserted and committed meanwhile is handed out exactly once", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      const first = yield* whileHeld(env, env.handle.consume("k"), env.insertRow(env.holder, "k", 1))
      expect(Either.isRight(first)).toBe(true)
      const second = yield* env.handle.consume("k")
      const third = yield* env.handle.consume("k")
      // The first consume started before the insert committed: it may miss it (it then stays for the next one), never both.
      const handedOut = [Either.getOrThrow(first), second, third].filter(Option.isSome)
      expect(handedOut).toEqual([Option.some({ n: 1 })])
      expect(yield* env.rowOf("k")).toBeUndefined()
      expect(yield* env.counts).toEqual({ stored: 0, counted: 0 })
    }))

  it.scopedLive("consume of a row the holder changes and commits meanwhile hands out the new value, never the old one", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 1 })
      const taken = yield* whileHeld(env, env.handle.consume("k"), env.setValue("k", 2))
      expect(taken).toEqual(Either.right(Option.some({ n: 2 })))
      expect(yield* env.rowOf("k")).toBeUndefined()
      expect(yield* env.counts).toEqual({ stored: 0, counted: 0 })
    }))

  it.scopedLive("consume of a row the holder deletes meanwhile answers none, and the count is not taken twice", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 1 })
      yield* env.handle.register("other", { n: 9 })
      const taken = yield* whileHeld(env, env.handle.consume("k"), env.deleteRow("k"))
      expect(taken).toEqual(Either.right(Option.none()))
      expect(yield* env.counts).toEqual({ stored: 1, counted: 1 })
      expect(yield* env.handle.lookup("other")).toEqual(Option.some({ n: 9 }))
    }))

  it.scopedLive("consume of a row the holder deletes and inserts again meanwhile: the value is handed out exactly once", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 1 })
      const first = yield* whileHeld(env, env.handle.consume("k"), Effect.zipRight(env.deleteRow("k"), env.insertRow(env.holder, "k", 2)))
      const second = yield* env.handle.consume("k")
      const handedOut = [Either.getOrThrow(first), second].filter(Option.isSome)
      expect(handedOut).toEqual([Option.some({ n: 2 })])
      expect(yield* env.counts).toEqual({ stored: 0, counted: 0 })
    }))

  it.scopedLive("deleteIfEqual of a value the holder replaces meanwhile deletes nothing: the new value stays", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 1 })
      const deleted = yield* whileHeld(env, env.handle.deleteIfEqual("k", { n: 1 }), env.setValue("k", 2))
      expect(deleted).toEqual(Either.right(false))
      expect(yield* env.rowOf("k")).toEqual({ n: 2 })
      expect(yield* env.counts).toEqual({ stored: 1, counted: 1 })
    }))

  it.scopedLive("deleteIfEqual of the value the holder writes back meanwhile: the answer agrees with the row left", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 2 })
      const deleted = yield* whileHeld(env, env.handle.deleteIfEqual("k", { n: 1 }), env.setValue("k", 1))
      // The statement started while the value was { n: 2 }: answering `false` then is right, and
      // leaves the holder's { n: 1 } in place; `true` must mean it is gone.
      expect(Either.isRight(deleted)).toBe(true)
      const row = yield* env.rowOf("k")
      if (Either.getOrThrow(deleted)) expect(row).toBeUndefined()
      else expect(row).toEqual({ n: 1 })
      const counts = yield* env.counts
      expect(counts).toEqual({ stored: row === undefined ? 0 : 1, counted: row === undefined ? 0 : 1 })
    }))

  it.scopedLive("delete of a row the holder re-registers meanwhile removes it", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 1 })
      const deleted = yield* whileHeld(env, env.handle.delete("k"), env.setValue("k", 3))
      expect(deleted).toEqual(Either.right(true))
      expect(yield* env.rowOf("k")).toBeUndefined()
      expect(yield* env.counts).toEqual({ stored: 0, counted: 0 })
    }))

  it.scopedLive("a lock held past lockWait: consume fails Busy and changes nothing; after the release it takes the row", () =>
    Effect.gen(function* () {
      const env = yield* setup({ lockWait: "300 millis" }, { k: 1 })
      yield* env.hold
      const refused = yield* Effect.either(env.handle.consume("k"))
      expect(Either.isLeft(refused) && refused.left.reason).toBe("Busy")
      expect(yield* env.rowOf("k")).toEqual({ n: 1 })
      yield* q(env.holder, "COMMIT")
      expect(yield* env.handle.consume("k")).toEqual(Option.some({ n: 1 }))
      expect(yield* env.counts).toEqual({ stored: 0, counted: 0 })
    }))

  it.scopedLive("reads never wait for the lock: lookup answers from what is committed while the holder has an uncommitted insert", () =>
    Effect.gen(function* () {
      const env = yield* setup({ lockWait: "300 millis" }, { k: 1 })
      yield* env.hold
      yield* env.insertRow(env.holder, "fresh", 5)
      expect(yield* env.handle.lookup("k")).toEqual(Option.some({ n: 1 }))
      expect(yield* env.handle.lookup("fresh")).toEqual(Option.none())
      yield* q(env.holder, "COMMIT")
      expect(yield* env.handle.lookup("fresh")).toEqual(Option.some({ n: 5 }))
    }))

  it.scopedLive("the consume's connection killed while it waits for the lock: retried on another, the value handed out once", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { k: 1 })
      yield* env.hold
      const running = yield* Effect.fork(Effect.either(env.handle.consume("k")))
      yield* env.waiterSeen
      const killed = yield* q<{ killed: boolean }>(
        env.admin,
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
      )
      expect(killed.map((r) => r.killed)).toEqual([true])
      // The retry waits for the lock again, on a new connection.
      yield* env.waiterSeen
      yield* q(env.holder, "COMMIT")
      const taken = yield* Fiber.join(running)
      expect(taken).toEqual(Either.right(Option.some({ n: 1 })))
      expect(yield* env.handle.consume("k")).toEqual(Option.none())
      expect(yield* env.counts).toEqual({ stored: 0, counted: 0 })
    }))

  it.scopedLive("every pooled connection killed between operations: the named statements are prepared again on new ones", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      for (let i = 0; i < 20; i++) yield* env.handle.register(`k${i}`, { n: i })
      for (let i = 0; i < 10; i++) expect(yield* env.handle.lookup(`k${i}`)).toEqual(Option.some({ n: i }))
      yield* q(env.admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1", [
        Number((yield* q<{ pid: number }>(env.holder, "SELECT pg_backend_pid() AS pid"))[0]!.pid)
      ])
      const answers = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => (i % 2 === 0 ? env.handle.lookup(`k${i}`) : env.handle.consume(`k${i}`)), {
        concurrency: 5
      })
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => Option.some({ n: i })))
      expect(yield* env.counts).toEqual({ stored: 10, counted: 10 })
    }))

  it.scopedLive("the lock is taken before the statement locks or writes a row: a one-time filter above the scan", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      const statements = makeStatements({ backend: "pg", databaseClock: true }, OWNER, NAMESPACE)
      const lock = { key: LOCK_KEY, timeout: "5000ms" }
      /** The generic plan of a prepared statement, as the store's named statements end up with. */
      const planOf = (statement: SqlText) =>
        Effect.gen(function* () {
          yield* q(env.admin, "SET plan_cache_mode = force_generic_plan")
          yield* q(env.admin, `PREPARE probe AS ${statement.text}`)
          const placeholders = statement.params.map(() => "NULL").join(", ")
          const plan = (yield* q<{ "QUERY PLAN": string }>(env.admin, `EXPLAIN (COSTS OFF) EXECUTE probe(${placeholders})`)).map((r) => r["QUERY PLAN"]).join("\n")
          yield* q(env.admin, "DEALLOCATE probe")
          return plan
        })
      // consume / delete and deleteIfEqual: the gate, then the scan of the entries that the DELETE locks.
      for (const statement of [statements.take(0, "k", lock), statements.deleteIfEqual(0, "k", "{}", lock)]) {
        const plan = yield* planOf(statement)
        const gate = plan.indexOf("One-Time Filter")
        expect(gate, plan).toBeGreaterThan(-1)
        expect(plan.search(/Index Scan|Seq Scan|Bitmap/), plan).toBeGreaterThan(gate)
      }
      // The claim: the counter row is locked (FOR UPDATE) under the gate, and the insert runs under a one-time filter on it.
      const claimPlan = yield* planOf(statements.claimIfRoom(0, [{ key: "k", json: "{}", times: { _tag: "FromNow", ttlMillis: 1000 } }], lock, 10))
      const counter = claimPlan.slice(claimPlan.indexOf("CTE channel_state_room"), claimPlan.indexOf("CTE channel_state_claimed"))
      expect(counter.indexOf("One-Time Filter"), claimPlan).toBeGreaterThan(counter.indexOf("LockRows"))
      expect(counter.indexOf("channel_state_counts"), claimPlan).toBeGreaterThan(counter.indexOf("One-Time Filter"))
      const insert = claimPlan.slice(claimPlan.indexOf("CTE channel_state_claimed"))
      expect(insert.indexOf("One-Time Filter"), claimPlan).toBeGreaterThan(insert.indexOf("Insert on"))
    }))

  it.scopedLive("a storm of registers, consumes and deletes while another connection takes the lock over and over: every value handed out at most once, the count exact", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      const handedOut = new Map<string, number>()
      const keys = Array.from({ length: 40 }, (_, i) => `s${i % 10}`)
      const storm = Effect.forEach(
        keys,
        (key, i) =>
          Effect.either(
            i % 3 === 0
              ? env.handle.register(key, { n: i })
              : i % 3 === 1
                ? Effect.map(env.handle.consume(key), (taken) => {
                    if (Option.isSome(taken)) handedOut.set(`${key}@${taken.value.n}`, (handedOut.get(`${key}@${taken.value.n}`) ?? 0) + 1)
                  })
                : env.handle.delete(key)
          ),
        { concurrency: 8 }
      )
      // Short holds by another connection, over and over, while the storm runs.
      const disturb = Effect.forever(Effect.zipRight(env.hold, Effect.zipRight(Effect.sleep("5 millis"), q(env.holder, "COMMIT"))))
      const disturber = yield* Effect.fork(disturb)
      const results = yield* storm
      yield* Fiber.interrupt(disturber)
      yield* Effect.promise(() => env.holder.query("ROLLBACK").catch(() => undefined))
      expect(results.filter(Either.isLeft)).toEqual([])
      // A register writes a distinct value: none was handed out twice.
      expect([...handedOut.values()].filter((n) => n > 1)).toEqual([])
      const counts = yield* env.counts
      expect(counts.counted).toBe(counts.stored)
    }))
  it.scopedLive("a claim waiting for the lock while the holder claims the same key and commits: the holder's row stands, the claim answers false", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      const claimed = yield* whileHeld(env, env.handle.registerIfAbsent("k", { n: 2 }), env.insertRow(env.holder, "k", 1))
      expect(claimed).toEqual(Either.right(false))
      expect(yield* env.rowOf("k")).toEqual({ n: 1 })
      expect(yield* env.counts).toEqual({ stored: 1, counted: 1 })
    }))

  it.scopedLive("a claim waiting for the lock while the holder leaves the key expired: the claim takes it", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      const claimed = yield* whileHeld(env, env.handle.registerIfAbsent("k", { n: 2 }), env.insertRow(env.holder, "k", 1, -1000))
      expect(claimed).toEqual(Either.right(true))
      expect(yield* env.rowOf("k")).toEqual({ n: 2 })
      expect(yield* env.counts).toEqual({ stored: 1, counted: 1 })
    }))

  it.scopedLive("a claim of a key live when it starts answers false at once, without waiting for a held lock (not Busy)", () =>
    Effect.gen(function* () {
      const env = yield* setup({ lockWait: "200 millis" }, { k: 1 })
      yield* env.hold
      expect(yield* env.handle.registerIfAbsent("k", { n: 2 })).toBe(false)
      expect(yield* env.waiting).toBe(0)
      yield* q(env.holder, "COMMIT")
      expect(yield* env.rowOf("k")).toEqual({ n: 1 })
    }))

  it.scopedLive("reject-new, 3 rows at most: the holder fills the namespace while a claim waits — the claim is refused, never a 4th row", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { a: 1, b: 2 }, { maxEntries: 3, overflow: "reject-new" })
      const claimed = yield* whileHeld(env, env.handle.registerIfAbsent("k", { n: 9 }), env.insertRow(env.holder, "c", 3))
      expect(Either.isLeft(claimed) && claimed.left.reason).toBe("LimitExceeded")
      expect(yield* env.rowOf("k")).toBeUndefined()
      expect(yield* env.counts).toEqual({ stored: 3, counted: 3 })
    }))

  it.scopedLive("evict-oldest, 3 rows at most: the holder fills the namespace while a claim waits — the claim wins and the oldest row goes", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, { a: 1, b: 2 }, { maxEntries: 3 })
      const claimed = yield* whileHeld(env, env.handle.registerIfAbsent("k", { n: 9 }), env.insertRow(env.holder, "c", 3))
      expect(claimed).toEqual(Either.right(true))
      expect(yield* env.rowOf("k")).toEqual({ n: 9 })
      expect(yield* env.rowOf("a")).toBeUndefined()
      expect(yield* env.counts).toEqual({ stored: 3, counted: 3 })
    }))

  it.scopedLive("a namespace that never held a row (no counter yet): the holder writes its first rows up to the bound while a claim waits — still exact", () =>
    Effect.gen(function* () {
      const env = yield* setup({}, {}, { maxEntries: 2, overflow: "reject-new" })
      const claimed = yield* whileHeld(env, env.handle.registerIfAbsent("k", { n: 9 }), Effect.zipRight(env.insertRow(env.holder, "a", 1), env.insertRow(env.holder, "b", 2)))
      expect(Either.isLeft(claimed) && claimed.left.reason).toBe("LimitExceeded")
      expect(yield* env.counts).toEqual({ stored: 2, counted: 2 })
    }))

  it.scopedLive("the claim's connection killed while it waits for the lock: retried on another, the key claimed once", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      yield* env.hold
      const running = yield* Effect.fork(Effect.either(env.handle.registerIfAbsent("k", { n: 1 })))
      yield* env.waiterSeen
      yield* q(env.admin, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
      yield* env.waiterSeen
      yield* q(env.holder, "COMMIT")
      expect(yield* Fiber.join(running)).toEqual(Either.right(true))
      expect(yield* env.handle.registerIfAbsent("k", { n: 2 })).toBe(false)
      expect(yield* env.rowOf("k")).toEqual({ n: 1 })
      expect(yield* env.counts).toEqual({ stored: 1, counted: 1 })
    }))

  it.scopedLive("expiry racing claims: a row expiring while 3 stores claim its key over and over — at most one winner per expiry, and the winner's row is the one stored", () =>
    Effect.gen(function* () {
      const env = yield* setup()
      const stores = yield* Effect.forEach([0, 1, 2], () =>
        Effect.flatMap(Layer.build(PgStore.layer({ url: env.db.url, sweepInterval: "1 hour" })), (context) => Context.get(context, KeyedStore).open(namespaceOptions))
      )
      for (let round = 0; round < 5; round++) {
        const key = `race${round}`
        yield* env.insertRow(env.admin, key, -1, 30)
        // Each store claims with a short TTL of its own value until it wins or the round is over.
        const results = yield* Effect.forEach(
          stores,
          (handle, s) =>
            Effect.gen(function* () {
              const won: Array<number> = []
              for (let attempt = 0; attempt < 20; attempt++) {
                if (yield* handle.registerIfAbsent(key, { n: s * 100 + attempt }, { ttl: "10 seconds" })) won.push(s * 100 + attempt)
                yield* Effect.sleep("3 millis")
              }
              return won
            }),
          { concurrency: "unbounded" }
        )
        const winners = results.flat()
        expect(winners.length, `round ${round}: ${JSON.stringify(results)}`).toBe(1)
        expect(yield* env.rowOf(key)).toEqual({ n: winners[0] })
      }
      expect((yield* env.counts).counted).toBe((yield* env.counts).stored)
    }))
})
