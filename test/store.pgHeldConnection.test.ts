/**
 * The connection a PostgreSQL store holds for its statements outside transactions
 * (pgHeldConnection), tried where it could break:
 *
 * - a statement that arrives while the held connection is busy must not queue behind it: it
 *   runs beside it on a pooled connection (a pool of two: held + one);
 * - a statement interrupted at every early step must leave the connection free — else every
 *   later statement would take a pooled connection, and in a pool of two the next two
 *   concurrent statements would wait for each other;
 * - the held connection killed by the server while idle: the next statement, which the driver
 *   refuses to send, must run on a new connection instead of failing (a claim must never fail
 *   `Unavailable` because the store kept a dead connection);
 * - a failing statement gives its own error, and the connection is replaced;
 * - inside a transaction, statements run on the transaction's connection;
 * - `maxAgeMillis` gives an old connection back (the pool's `connectionTTL` then replaces it);
 * - closing the scope gives it back, so the pool can end;
 * - a store whose pool has three connections (one held), two or one (nothing held then), under a mix of
 *   transactions and single statements: everything finishes, every answer right.
 *
 * No test asserts elapsed time: waits are on observed states (a statement seen waiting for an
 * advisory lock in `pg_locks`, a backend gone from `pg_stat_activity`), each bounded.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { expect, it } from "@effect/vitest"
import { Context, type Duration, Effect, Either, Exit, Fiber, Layer, Option, Redacted, Schema, Scope } from "effect"
import { makeHeldConnection } from "../src/layers/store/pgHeldConnection.js"
import { makePgExecute } from "../src/layers/store/pgPrepared.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import type { SqlText } from "../src/layers/store/sqlStatements.js"
import { bounded } from "./support/attackTools.js"
import { freshPgDatabase, pgUrl, storeOf } from "./support/backends.js"
import { describePg } from "./support/describePg.js"
import { eventually } from "./support/eventually.js"
import { query, rawClient, untilAdvisoryWaiters } from "./support/pgSessions.js"

const PID: SqlText = { text: "SELECT pg_backend_pid() AS pid", params: [] }
const LOCK = 4242
/** Waits for the advisory lock a test's own session holds, then answers its backend. */
const BLOCKED: SqlText = { text: "SELECT pg_backend_pid() AS pid, pg_advisory_xact_lock($1::bigint)::text AS waited", params: [LOCK] }

/** A pool of `maxConnections` on a fresh database, the runner holding one of them, and two sessions of the test's own. */
const setup = (maxConnections: number, extra: { readonly connectionTTL?: Duration.DurationInput; readonly maxAgeMillis?: number } = {}) =>
  Effect.gen(function* () {
    const db = yield* freshPgDatabase(pgUrl!)
    const context = yield* Layer.build(
      PgClient.layer({ url: Redacted.make(db.url), maxConnections, ...(extra.connectionTTL === undefined ? {} : { connectionTTL: extra.connectionTTL }) }).pipe(
        Layer.provide(Reactivity.layer),
        Layer.orDie
      )
    )
    const sql = Context.get(context, SqlClient)
    const outside = yield* makeHeldConnection(sql, { maxAgeMillis: extra.maxAgeMillis })
    const execute = makePgExecute(sql, outside)
    const pidOf = (statement: SqlText) => Effect.map(Effect.orDie(execute<{ pid: number }>(statement)), (rows) => rows[0]!.pid)
    const holder = yield* rawClient(db.url)
    const watcher = yield* rawClient(db.url)
    /** Runs `meanwhile` while a statement through the runner waits for the lock the holder holds; answers both backends. */
    const whileOneBlocks = <A>(meanwhile: Effect.Effect<A>) =>
      Effect.gen(function* () {
        yield* query(holder, "SELECT pg_advisory_lock($1)", [LOCK])
        const blocked = yield* Effect.fork(pidOf(BLOCKED))
        yield* bounded("the blocked statement reaching the lock", untilAdvisoryWaiters(watcher, 1), 30)
        const beside = yield* bounded("a statement beside a busy held connection", meanwhile, 30)
        yield* query(holder, "SELECT pg_advisory_unlock($1)", [LOCK])
        return { blocked: yield* bounded("the blocked statement, once the lock is free", Fiber.join(blocked), 30), beside }
      })
    return { db, sql, execute, pidOf, holder, watcher, whileOneBlocks }
  })

/** `n` steps of the calling fiber. */
const steps = (n: number) => (n <= 0 ? Effect.void : Effect.repeatN(Effect.yieldNow(), n - 1))

describePg("the connection a PostgreSQL store holds for its single statements", () => {
  it.scopedLive("one statement after another runs on one connection; one that comes while it is busy runs beside it on another (a pool of two)", () =>
    Effect.gen(function* () {
      const env = yield* setup(2)
      const sequential = yield* Effect.forEach(Array.from({ length: 10 }), () => env.pidOf(PID))
      expect(new Set(sequential).size).toBe(1)
      const held = sequential[0]!
      const { blocked, beside } = yield* env.whileOneBlocks(env.pidOf(PID))
      expect(blocked).toBe(held)
      expect(beside).not.toBe(held)
      expect(yield* env.pidOf(PID)).toBe(held)
    })
  )

  it.scopedLive("a statement interrupted at every early step leaves the connection free: in a pool of two, the next two concurrent statements still run side by side", () =>
    Effect.gen(function* () {
      const env = yield* setup(2)
      const schedules = Array.from({ length: 16 }, (_, i) => 10 + i * 2).flatMap((maxOps) => Array.from({ length: 8 }, (_, lag) => ({ maxOps, lag })))
      for (const { maxOps, lag } of schedules) {
        const running = yield* Effect.fork(Effect.withMaxOpsBeforeYield(env.execute(PID), maxOps))
        yield* steps(lag)
        yield* Fiber.interrupt(running)
        // Both must answer: the held connection free takes the blocked one, the pool's other one the second.
        const { blocked, beside } = yield* env.whileOneBlocks(env.pidOf(PID))
        expect(blocked, `yields every ${maxOps}, interrupted after ${lag} steps`).not.toBe(beside)
      }
    })
  )

  it.scopedLive("the held connection killed by the server while idle, 5 rounds: the next statement runs on a new connection instead of failing", () =>
    Effect.gen(function* () {
      const env = yield* setup(4)
      for (let round = 0; round < 5; round++) {
        const held = yield* env.pidOf(PID)
        expect(yield* env.pidOf(PID)).toBe(held)
        yield* query(env.holder, "SELECT pg_terminate_backend($1)", [held])
        const gone = yield* eventually(
          Effect.map(query(env.watcher, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1", [held]), (r) => r.rows[0].n as number),
          (n) => n === 0
        )
        expect(gone).toBe(0)
        // Let the client read the server's goodbye (it arrived before the backend left pg_stat_activity).
        yield* Effect.sleep("50 millis")
        const answer = yield* Effect.either(env.execute<{ pid: number }>(PID))
        expect(Either.isRight(answer), JSON.stringify(answer)).toBe(true)
        if (Either.isRight(answer)) expect(answer.right[0]!.pid).not.toBe(held)
      }
    })
  )

  it.scopedLive("a failing statement answers its own error; the next ones run as before, on one connection", () =>
    Effect.gen(function* () {
      const env = yield* setup(2)
      yield* env.pidOf(PID)
      const failed = yield* Effect.either(env.execute({ text: "SELECT 1 / $1::int AS x", params: [0] }))
      expect(Either.isLeft(failed) && (failed.left.cause as { code?: string }).code).toBe("22012")
      const after = yield* Effect.forEach(Array.from({ length: 5 }), () => env.pidOf(PID))
      expect(new Set(after).size).toBe(1)
      const { blocked, beside } = yield* env.whileOneBlocks(env.pidOf(PID))
      expect(blocked).toBe(after[0])
      expect(beside).not.toBe(blocked)
    })
  )

  it.scopedLive("inside a transaction a statement runs on the transaction's connection, and is undone with it", () =>
    Effect.gen(function* () {
      const env = yield* setup(4)
      yield* Effect.orDie(env.sql.unsafe("CREATE TABLE held_probe (n int)"))
      const outcome = yield* Effect.exit(
        env.sql.withTransaction(
          Effect.gen(function* () {
            const mine = (yield* env.sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`)[0]!.pid
            const theirs = yield* env.pidOf(PID)
            yield* env.execute({ text: "INSERT INTO held_probe (n) VALUES ($1)", params: [1] })
            expect(theirs).toBe(mine)
            return yield* Effect.fail("undo")
          })
        )
      )
      expect(Exit.isFailure(outcome)).toBe(true)
      expect((yield* query(env.watcher, "SELECT count(*)::int AS n FROM held_probe")).rows[0].n).toBe(0)
    })
  )

  it.scopedLive("with maxAgeMillis (the pool's connectionTTL), a connection older than that is given back and the pool replaces it", () =>
    Effect.gen(function* () {
      const env = yield* setup(2, { connectionTTL: "300 millis", maxAgeMillis: 300 })
      const first = yield* env.pidOf(PID)
      expect(yield* env.pidOf(PID)).toBe(first)
      yield* Effect.sleep("1 second")
      expect(yield* env.pidOf(PID)).not.toBe(first)
    })
  )

  it.scopedLive("closing the scope gives the held connection back: the pool then ends", () =>
    Effect.gen(function* () {
      const db = yield* freshPgDatabase(pgUrl!)
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 2 }).pipe(Layer.provide(Reactivity.layer), Layer.orDie), scope)
      const sql = Context.get(context, SqlClient)
      const execute = makePgExecute(sql, yield* Scope.extend(makeHeldConnection(sql), scope))
      expect((yield* Effect.orDie(execute<{ one: number }>({ text: "SELECT 1 AS one", params: [] })))[0]!.one).toBe(1)
      yield* bounded("closing the pool with the held connection", Scope.close(scope, Exit.void), 30)
      const watcher = yield* rawClient(db.url)
      const left = yield* eventually(
        Effect.map(query(watcher, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"), (r) => r.rows[0].n as number),
        (n) => n === 0
      )
      expect(left).toBe(0)
    })
  )

  for (const maxConnections of [3, 2, 1]) {
    it.scopedLive(`a store on a pool of ${maxConnections}${maxConnections < 3 ? " (nothing held)" : " (one held)"}: concurrent transactions, claims, consumes and lookups all finish, every answer right`, () =>
      Effect.gen(function* () {
        const db = yield* freshPgDatabase(pgUrl!)
        const store = yield* storeOf(PgStore.layer({ url: db.url, sweepInterval: "1 hour", client: { maxConnections }, ownerMaxEntries: 100_000 }))
        const h = yield* store.open({ owner: "held", namespace: "mix", schema: Schema.Struct({ n: Schema.Number }), maxEntries: 100_000, ttl: "1 hour" })
        const work = Array.from({ length: 240 }, (_, i) => {
          switch (i % 4) {
            case 0:
              return Effect.map(h.writeBatch([{ _tag: "Register" as const, key: `b${i}`, value: { n: i }, createdAt: Date.now(), expiresAt: undefined }]), () => true)
            case 1:
              return h.registerIfAbsent(`c${i}`, { n: i })
            case 2:
              return Effect.map(Effect.zipRight(h.register(`t${i}`, { n: i }), h.consume(`t${i}`)), (taken) => Option.getOrNull(taken)?.n === i)
            default:
              return Effect.map(Effect.zipRight(h.register(`l${i}`, { n: i }), h.lookup(`l${i}`)), (found) => Option.getOrNull(found)?.n === i)
          }
        })
        const answers = yield* bounded(`the mix on a pool of ${maxConnections}`, Effect.forEach(work, (w) => w, { concurrency: 24 }), 120)
        expect(answers.filter((a) => a !== true)).toEqual([])
        expect(yield* h.size).toBe(180)
      })
    )
  }
})
