/**
 * Attacks on the connection a PostgreSQL store holds for its statements outside transactions
 * (pgHeldConnection), beyond store.pgHeldConnection.test.ts:
 *
 * - the held connection killed by the server while the store is idle, and the process busy
 *   (its event loop did not turn between the kill and the next statement, as on a loaded
 *   machine): the runner's statement runs or fails 57P01 (the driver sent it before reading the
 *   server's goodbye: the command did not run) — through the store, registerIfAbsent and
 *   consume still succeed (the store runs again a write the server answered with a SQLSTATE);
 * - a statement interrupted while the pool is exhausted (sql-pg's cancel waits for a pooled
 *   connection and gives up after 5 s): its connection must not be handed on with the
 *   statement still running and the cancel still queued — the next statement there would wait
 *   behind it, then be cancelled by it;
 * - interrupted while waiting for a connection (held path and pooled path): none lost;
 * - the held connection idle past the pool's idleTimeout, then forgotten by the network (a
 *   proxy that answers the next packet with a reset): the pool would have closed an idle
 *   connection by then, so the next claim must not fail "may or may not have been applied";
 * - a pool of two: a transaction waiting for another session's lock must not stall another
 *   owner's transaction (a held connection beside it did; a pool of two now holds none).
 *
 * No test asserts elapsed time: waits are on observed states (pg_locks, pg_stat_activity,
 * fiber states), each bounded.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as net from "node:net"
import { Context, Effect, Either, Exit, Fiber, Layer, Option, Redacted, Schedule, Schema } from "effect"
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
/** Waits for advisory lock `key` (which a test's own session holds), then answers its backend. */
const blockedOn = (key: number): SqlText => ({ text: "SELECT pg_backend_pid() AS pid, pg_advisory_xact_lock($1::bigint)::text AS waited", params: [key] })

/** A pool of `maxConnections` on `url`, the runner holding one of them (built in the current scope). */
const runnerOn = (url: string, maxConnections: number) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections }).pipe(Layer.provide(Reactivity.layer), Layer.orDie))
    const sql = Context.get(context, SqlClient)
    const execute = makePgExecute(sql, yield* makeHeldConnection(sql))
    return { sql, execute }
  })

/** psql, run synchronously: the process's event loop does not turn meanwhile. */
const psqlSync = (url: string, text: string): string => execFileSync("psql", [url, "-XAtqc", text], { encoding: "utf8" }).trim()

/**
 * Terminates backend `pid` and waits until it is gone from pg_stat_activity — synchronously, so
 * that this process reads nothing from its sockets meanwhile (a busy process would not either).
 */
const killSync = (url: string, pid: number) => {
  psqlSync(url, `SELECT pg_terminate_backend(${pid})`)
  for (let i = 0; i < 3000; i++) {
    if (psqlSync(url, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`) === "0") return
  }
  throw new Error(`backend ${pid} still there`)
}

/** Sessions waiting for advisory lock `key` in this database. */
const waitersOn = (watcher: Parameters<typeof query>[0], key: number) =>
  Effect.map(
    query(
      watcher,
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      [key]
    ),
    (r) => r.rows[0].n as number
  )
const untilWaitersOn = (watcher: Parameters<typeof query>[0], key: number, n: number) =>
  bounded(`${n} waiter(s) on advisory lock ${key}`, Effect.repeat(waitersOn(watcher, key), { until: (m) => m >= n, schedule: Schedule.spaced("10 millis") }), 60)

/**
 * A TCP proxy in front of PostgreSQL whose current connections can be made dead the way a
 * middlebox (NAT, firewall, load balancer) forgets an idle connection: nothing is said to
 * either side until the client sends again, which is then answered with a reset.
 */
const deadlyProxy = (target: URL) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: (database: string) => string; readonly forgetAll: () => void; readonly close: () => void }>((resume) => {
      const pairs = new Set<{ readonly client: net.Socket; readonly server: net.Socket; dead: boolean }>()
      const listener = net.createServer((client) => {
        const server = net.connect(Number(target.port || 5432), target.hostname)
        const pair = { client, server, dead: false }
        pairs.add(pair)
        const close = () => {
          pairs.delete(pair)
          client.destroy()
          server.destroy()
        }
        client.on("data", (chunk) => {
          if (!pair.dead) server.write(chunk)
          else {
            pairs.delete(pair)
            client.resetAndDestroy()
            server.destroy()
          }
        })
        server.on("data", (chunk) => {
          if (!pair.dead) client.write(chunk)
        })
        for (const socket of [client, server]) {
          socket.on("error", close)
          socket.on("close", close)
        }
      })
      listener.listen(0, "127.0.0.1", () => {
        const { port } = listener.address() as net.AddressInfo
        resume(
          Effect.succeed({
            url: (database) => {
              const url = new URL(target.toString())
              url.host = `127.0.0.1:${port}`
              url.pathname = `/${database}`
              return url.toString()
            },
            forgetAll: () => {
              for (const pair of pairs) pair.dead = true
            },
            close: () => {
              for (const pair of pairs) {
                pair.client.destroy()
                pair.server.destroy()
              }
              listener.close()
            }
          })
        )
      })
    }),
    (proxy) => Effect.sync(proxy.close)
  )

describePg("the held connection, attacked", () => {
  it.scopedLive("killed by the server while idle, the process busy until the next statement: that statement runs, or fails with the server's 57P01 (it did not run) — never a failure that leaves its outcome unknown — and the next one runs (runner)", () =>
    Effect.gen(function* () {
      const db = yield* freshPgDatabase(pgUrl!)
      const { execute } = yield* runnerOn(db.url, 3)
      for (let round = 0; round < 3; round++) {
        const held = (yield* Effect.orDie(execute<{ pid: number }>(PID)))[0]!.pid
        const answer = yield* Effect.either(
          Effect.suspend(() => {
            killSync(db.url, held)
            return execute<{ pid: number }>(PID)
          })
        )
        if (Either.isLeft(answer)) expect((answer.left.cause as { code?: string }).code, `round ${round}: ${String(answer.left.cause)}`).toBe("57P01")
        const next = yield* Effect.orDie(execute<{ pid: number }>(PID))
        expect(next[0]!.pid).not.toBe(held)
      }
    })
  )

  it.scopedLive("killed by the server while idle, the process busy until the next write: registerIfAbsent and consume do not fail Unavailable (store)", () =>
    Effect.gen(function* () {
      const db = yield* freshPgDatabase(pgUrl!)
      const store = yield* storeOf(PgStore.layer({ url: db.url, sweepInterval: "1 hour", client: { maxConnections: 3 } }))
      const h = yield* store.open({ owner: "held", namespace: "killed", schema: Schema.Struct({ n: Schema.Number }), maxEntries: 1000, ttl: "1 hour" })
      const watcher = yield* rawClient(db.url)
      const me = (yield* query(watcher, "SELECT pg_backend_pid() AS pid")).rows[0].pid as number
      for (let round = 0; round < 4; round++) {
        yield* Effect.orDie(h.register(`r${round}`, { n: round }))
        yield* Effect.orDie(h.lookup(`r${round}`))
        // The held connection: the store's backend whose last statement was that lookup.
        const heldRows = (yield* query(
          watcher,
          "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1 AND state = 'idle' AND query LIKE 'SELECT%' ORDER BY state_change DESC LIMIT 1",
          [me]
        )).rows
        expect(heldRows.length).toBe(1)
        const held = heldRows[0].pid as number
        const write = round % 2 === 0 ? h.registerIfAbsent(`c${round}`, { n: round }) : Effect.map(h.consume(`r${round}`), Option.isSome)
        // Rounds 0-1: the process busy from the kill to the write; 2-3: the event loop has turned
        // (two round trips of the watcher) and the client has read the server's goodbye.
        const claimed = yield* Effect.either(
          round < 2
            ? Effect.suspend(() => {
                killSync(db.url, held)
                return write
              })
            : Effect.zipRight(
                Effect.zipRight(
                  Effect.sync(() => killSync(db.url, held)),
                  Effect.zipRight(query(watcher, "SELECT 1"), query(watcher, "SELECT 1"))
                ),
                write
              )
        )
        expect(claimed, `round ${round}`).toEqual(Either.right(true))
      }
    })
  )

  for (const victim of ["held", "pooled"] as const) {
    it.scopedLive(`interrupted on the ${victim} connection while the pool is exhausted (the cancel cannot get a connection): a later statement on that connection neither waits behind the interrupted one nor is cancelled`, () =>
      Effect.gen(function* () {
        const db = yield* freshPgDatabase(pgUrl!)
        const { execute } = yield* runnerOn(db.url, 2)
        const holder = yield* rawClient(db.url)
        const watcher = yield* rawClient(db.url)
        const [L1, L2, L3] = [5101, 5102, 5103]
        for (const key of [L1, L2, L3]) yield* query(holder, "SELECT pg_advisory_lock($1)", [key])
        yield* Effect.orDie(execute<{ pid: number }>(PID))
        // A on the held connection, B beside it on the pool's other one: the pool is exhausted.
        const a = yield* Effect.fork(execute<{ pid: number }>(blockedOn(L1)))
        yield* untilWaitersOn(watcher, L1, 1)
        const b = yield* Effect.fork(execute<{ pid: number }>(blockedOn(L2)))
        yield* untilWaitersOn(watcher, L2, 1)
        // X waits for a pooled connection (the held one is busy).
        const x = yield* Effect.fork(Effect.either(execute<{ pid: number }>(blockedOn(L3))))
        yield* bounded(
          "X waiting for a connection",
          Effect.repeat(Fiber.status(x), { until: (st) => st._tag === "Suspended", schedule: Schedule.spaced("10 millis") }),
          30
        )
        const [interrupted, interruptedLock, survivor, survivorLock] = victim === "held" ? [a, L1, b, L2] : [b, L2, a, L1]
        // The interruption: sql-pg's cancel waits for a pooled connection, and gives up after 5 s.
        yield* bounded("the interruption", Fiber.interrupt(interrupted), 60)
        // X must now run on a connection of its own, not queued behind the interrupted statement (still waiting for its lock).
        yield* untilWaitersOn(watcher, L3, 1)
        yield* query(holder, "SELECT pg_advisory_unlock($1)", [interruptedLock])
        // The survivor ends: on the pooled one, its connection goes to the cancel still queued in the pool, which then runs.
        yield* query(holder, "SELECT pg_advisory_unlock($1)", [survivorLock])
        expect(Exit.isSuccess(yield* bounded("the survivor", Fiber.await(survivor), 60))).toBe(true)
        if (victim === "held") {
          yield* eventually(
            Effect.zip(
              Effect.map(query(watcher, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_cancel_backend%'"), (r) => r.rows[0].n as number),
              Effect.map(Fiber.poll(x), Option.isSome)
            ),
            ([cancels, done]) => cancels > 0 || done,
            30_000
          )
        }
        yield* query(holder, "SELECT pg_advisory_unlock($1)", [L3])
        const outcome = yield* bounded("X", Fiber.join(x), 60)
        expect(Either.isRight(outcome), Either.isLeft(outcome) ? String(outcome.left.cause) : "").toBe(true)
      })
    )
  }
  it.scopedLive("interrupted while waiting for a connection (the pool exhausted by two transactions), on the held path and beside it: no connection is lost, the next two statements still run side by side", () =>
    Effect.gen(function* () {
      const db = yield* freshPgDatabase(pgUrl!)
      const { sql, execute } = yield* runnerOn(db.url, 2)
      const holder = yield* rawClient(db.url)
      const watcher = yield* rawClient(db.url)
      const [L1, L2, L3] = [5201, 5202, 5203]
      for (let round = 0; round < 3; round++) {
        // A failing statement: the held connection is given back, the next statement takes one anew.
        expect(Either.isLeft(yield* Effect.either(execute({ text: "SELECT 1 / $1::int AS x", params: [0] })))).toBe(true)
        for (const key of [L1, L2]) yield* query(holder, "SELECT pg_advisory_lock($1)", [key])
        const transactions = yield* Effect.forEach([L1, L2], (key) => Effect.fork(Effect.orDie(sql.withTransaction(sql.unsafe("SELECT pg_advisory_xact_lock($1::bigint)", [key])))))
        yield* untilWaitersOn(watcher, L1, 1)
        yield* untilWaitersOn(watcher, L2, 1)
        // One statement waits to take the held connection, the other (the held one's lock taken) for a pooled one.
        const waiting = yield* Effect.forEach([0, 1], () => Effect.fork(execute(PID)))
        for (const fiber of waiting) {
          yield* bounded("a statement waiting for a connection", Effect.repeat(Fiber.status(fiber), { until: (st) => st._tag === "Suspended", schedule: Schedule.spaced("10 millis") }), 30)
        }
        const interrupting = yield* Effect.forEach(waiting, (fiber) => Effect.fork(Fiber.interrupt(fiber)))
        for (const key of [L1, L2]) yield* query(holder, "SELECT pg_advisory_unlock($1)", [key])
        yield* bounded("the transactions", Fiber.joinAll(transactions), 30)
        yield* bounded("the interruptions", Fiber.joinAll(interrupting), 30)
        // Both connections must be there: one statement on the held connection waits for L3, the next beside it.
        yield* query(holder, "SELECT pg_advisory_lock($1)", [L3])
        const blocked = yield* Effect.fork(execute<{ pid: number }>(blockedOn(L3)))
        yield* untilWaitersOn(watcher, L3, 1)
        const beside = yield* bounded(`round ${round}: a statement beside the blocked one`, Effect.orDie(execute<{ pid: number }>(PID)), 20)
        yield* query(holder, "SELECT pg_advisory_unlock($1)", [L3])
        const first = yield* bounded("the blocked statement", Effect.orDie(Fiber.join(blocked)), 30)
        expect(first[0]!.pid).not.toBe(beside[0]!.pid)
      }
    })
  )
  it.scopedLive("the held connection idle past the pool's idleTimeout, then forgotten by the network: the next claim does not fail (an idle pooled connection would have been closed by then)", () =>
    Effect.gen(function* () {
      const db = yield* freshPgDatabase(pgUrl!)
      const proxy = yield* deadlyProxy(new URL(pgUrl!))
      const store = yield* storeOf(PgStore.layer({ url: proxy.url(db.name), sweepInterval: "1 hour", client: { maxConnections: 3, idleTimeout: "200 millis" } }))
      const h = yield* store.open({ owner: "held", namespace: "forgotten", schema: Schema.Struct({ n: Schema.Number }), maxEntries: 1000, ttl: "1 hour" })
      const watcher = yield* rawClient(db.url)
      const me = (yield* query(watcher, "SELECT pg_backend_pid() AS pid")).rows[0].pid as number
      /** The store's backends, each with how long the server has seen it idle. */
      const storeBackends = Effect.map(
        query(
          watcher,
          "SELECT pid, state, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 AS idle_ms FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1 AND backend_type = 'client backend'",
          [me]
        ),
        (r) => r.rows as ReadonlyArray<{ pid: number; state: string; idle_ms: number }>
      )
      for (let round = 0; round < 2; round++) {
        yield* Effect.orDie(h.registerIfAbsent(`warm${round}`, { n: round }))
        // Every connection the store keeps has been idle, as the server sees it, for twice the pool's idleTimeout.
        const idle = yield* eventually(storeBackends, (rows) => rows.length > 0 && rows.every((row) => row.state === "idle" && row.idle_ms > 400), 30_000)
        expect(idle.every((row) => row.idle_ms > 400)).toBe(true)
        proxy.forgetAll()
        const claimed = yield* Effect.either(h.registerIfAbsent(`c${round}`, { n: round }))
        expect(claimed, `round ${round}`).toEqual(Either.right(true))
      }
    })
  )
  it.scopedLive("a pool of two, one transaction waiting for another session's lock, the held connection idle: another owner's transaction still runs", () =>
    Effect.gen(function* () {
      const db = yield* freshPgDatabase(pgUrl!)
      const store = yield* storeOf(PgStore.layer({ url: db.url, sweepInterval: "1 hour", lockWait: "60 seconds", ownerMaxEntries: 1000, client: { maxConnections: 2 } }))
      const open = (owner: string) => store.open({ owner, namespace: "ns", schema: Schema.Struct({ n: Schema.Number }), maxEntries: 1000, ttl: "1 hour" })
      const capped = yield* open("capped")
      const free = yield* open("free")
      const holder = yield* rawClient(db.url)
      const watcher = yield* rawClient(db.url)
      const batch = (key: string) => [{ _tag: "Register" as const, key, value: { n: 1 }, createdAt: Date.now(), expiresAt: undefined }]
      // The held connection taken (and idle from here on).
      yield* Effect.orDie(free.lookup("warm"))
      yield* query(holder, "BEGIN")
      yield* query(holder, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", ["capped"])
      const waiting = yield* Effect.fork(Effect.either(capped.writeBatch(batch("w"))))
      yield* bounded("the capped owner's transaction waiting for the lock", untilAdvisoryWaiters(watcher, 1), 30)
      const beside = yield* bounded("another owner's transaction beside it", Effect.either(free.writeBatch(batch("f"))), 30)
      yield* query(holder, "COMMIT")
      expect(Either.isRight(beside), Either.isLeft(beside) ? beside.left.detail : "").toBe(true)
      expect(Either.isRight(yield* bounded("the waiting transaction", Fiber.join(waiting), 60))).toBe(true)
    })
  )
})
