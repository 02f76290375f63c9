/**
 * A child process for test/store.pgClaimFunctionAttack.test.ts: one gateway instance on a
 * PostgreSQL database under an owner cap of 6 (namespace `a`: 4, reject-new; `b`: 3,
 * evict-oldest; sweeps every 20 ms). It says it is ready, waits for the start signal (a file
 * appearing), then for each round runs 40 random operations on `a` and `b` at once — claims
 * (some with a 30 ms ttl), registers, deletes, consumes, write batches — beside 4 claims of the
 * round's race key (owner `r`), and prints one `result` line: the race keys it won and every
 * failure other than `LimitExceeded`.
 *
 *   node --import tsx test/support/claimFunctionWorker.ts <url> <go file> <worker id> <rounds>
 */
import { Effect, Either, Schema } from "effect"
import { KeyedStore } from "../../src/KeyedStore.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import { say, waitForGo } from "./workerIo.js"

/** What the worker prints. */
export type ClaimFunctionWorkerLine =
  | { readonly type: "ready"; readonly worker: string }
  | { readonly type: "result"; readonly worker: string; readonly won: ReadonlyArray<string>; readonly odd: ReadonlyArray<string> }
  | { readonly type: "fatal"; readonly worker: string; readonly message: string }

const main = () => {
  const [url = "", goFile = "", worker = "?", roundsText = "5"] = process.argv.slice(2)
  const rounds = Number(roundsText)
  let seed = [...worker].reduce((a, c) => a * 31 + c.charCodeAt(0), 11) & 0x7fffffff
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return Math.floor((seed / 0x7fffffff) * n)
  }
  const program = Effect.gen(function* () {
    const store = yield* KeyedStore
    const a = yield* store.open({ owner: "o", namespace: "a", schema: Schema.String, maxEntries: 4, overflow: "reject-new", ttl: 600_000 })
    const b = yield* store.open({ owner: "o", namespace: "b", schema: Schema.String, maxEntries: 3, overflow: "evict-oldest", ttl: 600_000 })
    const race = yield* store.open({ owner: "r", namespace: "race", schema: Schema.String, maxEntries: 100, ttl: 600_000 })
    say({ type: "ready", worker })
    yield* waitForGo(goFile, 180_000)
    const won: Array<string> = []
    const odd: Array<string> = []
    for (let round = 0; round < rounds; round++) {
      const ops = Array.from({ length: 40 }, () => {
        const h = random(2) === 0 ? a : b
        const key = `k${random(8)}`
        const now = Date.now()
        switch (random(8)) {
          case 0:
          case 1:
          case 2:
            return Effect.either(h.registerIfAbsent(key, worker))
          case 3:
            return Effect.either(h.registerIfAbsent(key, worker, { ttl: "30 millis" }))
          case 4:
            return Effect.either(h.register(key, worker))
          case 5:
            return Effect.either(h.delete(key))
          case 6:
            return Effect.either(h.consume(key))
          default:
            return Effect.either(
              h.writeBatch([
                { _tag: "Register", key, value: worker, createdAt: now, expiresAt: now + 600_000 },
                { _tag: "Delete", key: `k${random(8)}` }
              ])
            )
        }
      })
      const races = Array.from({ length: 4 }, () => Effect.either(race.registerIfAbsent(`r${round}`, worker)))
      const answers: ReadonlyArray<Either.Either<unknown, { readonly reason: string; readonly detail: string }>> = yield* Effect.all([...races, ...ops], { concurrency: "unbounded" })
      answers.forEach((answer, i) => {
        if (Either.isLeft(answer)) {
          if (answer.left.reason !== "LimitExceeded") odd.push(`${answer.left.reason}: ${answer.left.detail}`)
        } else if (i < races.length && answer.right === true) won.push(`r${round}`)
      })
    }
    return { type: "result" as const, worker, won, odd }
  })
  Effect.runPromiseExit(Effect.scoped(Effect.provide(Effect.map(program, say), PgStore.layer({ url, ownerMaxEntries: 6, sweepInterval: "20 millis" })))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

if (process.argv[1]?.endsWith("claimFunctionWorker.ts")) main()
