/**
 * A child process that takes the store's write lock away, over and over, for
 * test/claims.contention.test.ts:
 *
 * - SQLite: the database's write lock, `BEGIN IMMEDIATE` and `BEGIN EXCLUSIVE` by turns (its
 *   own better-sqlite3 connection, which may block its own event loop while it waits);
 * - PostgreSQL: the advisory locks named on the command line, in one transaction — the locks
 *   the store takes first in every write transaction of those namespaces. While holding
 *   them it counts, every 50 ms on a second connection, the advisory-lock requests of this
 *   database that are waiting (how the test knows the holds really blocked the store).
 *
 * The first hold lasts until `continue` arrives on stdin; every later one `hold ms`, with a
 * random gap of `min gap ms`–`max gap ms` between them, until `stop` arrives. On PostgreSQL it
 * says `waited` the first time in a hold that it sees a waiter (the test sends `continue` only
 * after the first hold's, so the store's writers really start against a held lock).
 *
 *   node --import tsx test/support/lockDisturber.ts <sqlite|pg> <file or url> <hold ms> <min gap ms> <max gap ms> [lock key …]
 */
import Database from "better-sqlite3"
import { SqlClient } from "@effect/sql/SqlClient"
import { Deferred, Effect, Fiber } from "effect"
import { pgClientLayer } from "./backends.js"
import { onStdinLine, say } from "./workerIo.js"

export type DisturberLine =
  | { readonly type: "held"; readonly n: number; readonly how: string; readonly at: number }
  | { readonly type: "waited"; readonly n: number; readonly waiters: number }
  | { readonly type: "released"; readonly n: number; readonly at: number; readonly waiters: number }
  | {
      readonly type: "result"
      /** Lock holds in all, the first (open-ended) one included. */
      readonly holds: number
      /** PostgreSQL: holds during which some other session waited for an advisory lock; the most waiting at once. */
      readonly holdsWithWaiters: number
      readonly maxWaiters: number
    }
  | { readonly type: "fatal"; readonly message: string }

/** Takes the lock, runs `whileHeld` (which answers how many waiters it saw), releases. */
type Hold = (n: number, whileHeld: (n: number, how: string) => Effect.Effect<number>) => Effect.Effect<number, unknown>

const sqliteHold = (file: string): Hold => {
  const db = new Database(file, { timeout: 10_000, fileMustExist: true })
  const begin = (how: string) =>
    Effect.retry(
      Effect.try(() => db.exec(how)),
      { times: 20 }
    )
  return (n, whileHeld) => {
    const how = n % 2 === 0 ? "BEGIN IMMEDIATE" : "BEGIN EXCLUSIVE"
    return Effect.zipRight(
      begin(how),
      Effect.ensuring(
        whileHeld(n, how),
        Effect.sync(() => db.exec("COMMIT"))
      )
    )
  }
}

const pgHold =
  (sql: SqlClient, keys: ReadonlyArray<string>): Hold =>
  (n, whileHeld) =>
    Effect.gen(function* () {
      const holding = yield* Deferred.make<void>()
      const letGo = yield* Deferred.make<void>()
      const transaction = yield* Effect.fork(
        sql.withTransaction(
          Effect.gen(function* () {
            for (const key of keys) yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`
            yield* Deferred.succeed(holding, undefined)
            yield* Deferred.await(letGo)
          })
        )
      )
      yield* Effect.raceFirst(Deferred.await(holding), Fiber.join(transaction))
      // Forked outside the transaction: these queries run on another pooled connection.
      const waiters = yield* whileHeld(n, `pg_advisory_xact_lock × ${keys.length}`)
      yield* Deferred.succeed(letGo, undefined)
      yield* Fiber.join(transaction)
      return waiters
    })

const pgWaiters = (sql: SqlClient) =>
  Effect.map(
    sql<{ n: string | number }>`SELECT count(*) AS n FROM pg_locks
      WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    (rows) => Number(rows[0]?.n ?? 0)
  ).pipe(Effect.orDie)

const main = () => {
  const [backend, location, holdMs = "1000", minGapMs = "100", maxGapMs = "300", ...keys] = process.argv.slice(2)
  let go: () => void = () => {}
  const continued = new Promise<void>((resolve) => {
    go = resolve
  })
  let stopping = false
  onStdinLine((line) => {
    if (line === "continue") go()
    if (line === "stop") stopping = true
  })

  const run = (hold: Hold, countWaiters: Effect.Effect<number>) =>
    Effect.gen(function* () {
      let holds = 0
      let holdsWithWaiters = 0
      let maxWaiters = 0
      const whileHeld = (n: number, how: string) =>
        Effect.gen(function* () {
          say({ type: "held", n, how, at: Date.now() })
          let most = 0
          const watch = Effect.forever(
            Effect.zipRight(
              Effect.map(countWaiters, (w) => {
                if (w > 0 && most === 0) say({ type: "waited", n, waiters: w })
                most = Math.max(most, w)
              }),
              Effect.sleep("50 millis")
            )
          )
          const until = n === 0 ? Effect.promise(() => continued) : Effect.sleep(`${Number(holdMs)} millis`)
          yield* Effect.raceFirst(until, watch)
          return most
        })
      while (!stopping) {
        const n = holds++
        const waiters = yield* hold(n, whileHeld)
        if (waiters > 0) holdsWithWaiters++
        maxWaiters = Math.max(maxWaiters, waiters)
        say({ type: "released", n, at: Date.now(), waiters })
        const gap = Number(minGapMs) + Math.random() * (Number(maxGapMs) - Number(minGapMs))
        yield* Effect.sleep(`${Math.round(gap)} millis`)
      }
      say({ type: "result", holds, holdsWithWaiters, maxWaiters })
    })

  const program =
    backend === "sqlite"
      ? run(sqliteHold(location!), Effect.succeed(0))
      : backend === "pg"
        ? Effect.flatMap(SqlClient, (sql) => run(pgHold(sql, keys), pgWaiters(sql))).pipe(Effect.provide(pgClientLayer(location!)))
        : Effect.fail(new Error(`unknown backend ${String(backend)}`))

  Effect.runPromiseExit(program).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", message: String(exit.cause) })
      process.exitCode = 1
    }
    process.stdin.destroy()
  })
}

if (process.argv[1]?.endsWith("lockDisturber.ts")) main()
