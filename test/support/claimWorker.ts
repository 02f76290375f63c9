/**
 * A child process for the multi-process test: opens the keyed store on a shared database,
 * says it is ready, waits for the start signal (a file appearing), then races the other
 * worker and prints what it won as one JSON line.
 *
 *   node --import tsx test/support/claimWorker.ts <sqlite|pg> <file or url> <go file> <worker id>
 */
import { Effect, Either, Layer, Option } from "effect"
import { KeyedStore, type NamespaceHandle } from "../../src/KeyedStore.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../../src/StateStoreError.js"
import {
  CLAIM_KEYS,
  CONSUME_KEYS,
  type Claim,
  claimKey,
  claimsNamespace,
  consumeKey,
  oneShotNamespace,
  RACE_KEY,
  RACERS,
  type ResultLine,
  type WorkerFailure,
  type WorkerLine
} from "./claimProtocol.js"
import { waitForGo } from "./workerIo.js"

const [backend, location, goFile, worker] = process.argv.slice(2)

const say = (line: WorkerLine) => process.stdout.write(`${JSON.stringify(line)}\n`)

const storeLayer = (): Layer.Layer<KeyedStore, StateStoreError> => {
  if (backend === "sqlite") return SqliteStore.layer({ filename: location! })
  if (backend === "pg") return PgStore.layer({ url: location! })
  throw new Error(`unknown backend ${String(backend)}`)
}

const race = (claims: NamespaceHandle<Claim>, oneShot: NamespaceHandle<Claim>) => {
  const failures: Array<WorkerFailure> = []
  const claimed: Array<string> = []
  const consumed: Array<{ key: string; value: Claim }> = []
  let raceWins = 0
  const record = <A>(op: string, key: string, effect: Effect.Effect<A, StateStoreError>, onSuccess: (a: A) => void) =>
    Effect.map(Effect.either(effect), (result) => {
      if (Either.isRight(result)) onSuccess(result.right)
      else failures.push({ op, key, reason: result.left.reason, message: result.left.message })
    })

  // The contended key and the one-shot keys are spread through the distinct claims, so the
  // two workers collide on them over the whole run, not only in its first milliseconds.
  const steps: Array<Effect.Effect<void>> = []
  const spacing = Math.floor(CLAIM_KEYS / Math.max(RACERS, CONSUME_KEYS))
  for (let i = 0; i < CLAIM_KEYS; i++) {
    const key = claimKey(i)
    steps.push(record("registerIfAbsent", key, claims.registerIfAbsent(key, { worker: worker!, n: i }), (won) => {
      if (won) claimed.push(key)
    }))
    if (i % spacing !== 0) continue
    const slot = i / spacing
    if (slot < RACERS) {
      steps.push(record("registerIfAbsent", RACE_KEY, claims.registerIfAbsent(RACE_KEY, { worker: worker!, n: slot }), (won) => {
        if (won) raceWins++
      }))
    }
    if (slot < CONSUME_KEYS) {
      const once = consumeKey(slot)
      steps.push(record("consume", once, oneShot.consume(once), (value) => {
        if (Option.isSome(value)) consumed.push({ key: once, value: value.value })
      }))
    }
  }
  return Effect.gen(function* () {
    yield* waitForGo(goFile!)
    const startedAt = Date.now()
    yield* Effect.all(steps, { concurrency: "unbounded", discard: true })
    const finishedAt = Date.now()
    const result: ResultLine = { type: "result", worker: worker!, startedAt, finishedAt, raceWins, claimed, consumed, failures }
    return result
  })
}

const program = Effect.gen(function* () {
  const store = yield* KeyedStore
  const claims = yield* store.open(claimsNamespace)
  const oneShot = yield* store.open(oneShotNamespace)
  say({ type: "ready", worker: worker! })
  say(yield* race(claims, oneShot))
})

Effect.runPromiseExit(Effect.scoped(Effect.provide(program, Layer.suspend(storeLayer)))).then((exit) => {
  if (exit._tag === "Failure") {
    say({ type: "fatal", worker: worker ?? "?", message: String(exit.cause) })
    process.exitCode = 1
  }
})
