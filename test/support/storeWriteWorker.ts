/**
 * A child process that writes into one keyed-store namespace from many fibers at once, for
 * the cross-process cap and deadlock tests (test/caps.processes.test.ts,
 * test/writeBatch.deadlock.test.ts). It opens the store directly (`SqliteStore.layer` /
 * `PgStore.layer`, production settings) and the namespace, says it is ready, waits for the
 * start signal (a file appearing), writes, and prints one `result` line with every write
 * that failed.
 *
 *   node --import tsx test/support/storeWriteWorker.ts <sqlite|pg> <file or url> <go file> <worker id> distinct <reject-new|evict-oldest> <writers> <keys per writer>
 *   node --import tsx test/support/storeWriteWorker.ts <sqlite|pg> <file or url> <go file> <worker id> batches <ascending|descending> <batches> <keys> <concurrent batches>
 *
 * - `distinct`: `writers` fibers at once, each `register`ing its own `keys per writer` keys
 *   (none shared with any other writer or process) into the capped namespace {@link capsNamespace}.
 * - `batches`: `writeBatch`es over the same `keys` keys of {@link batchNamespace}, each listing
 *   them in the given order (every seventh step a delete, shifting with the batch, the rest
 *   registers), `concurrent batches` at a time.
 */
import { Effect, Either, Layer, Schema } from "effect"
import { type BatchOp, KeyedStore, type NamespaceOptions, type OverflowPolicy } from "../../src/KeyedStore.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../../src/StateStoreError.js"
import { say, type WorkerLine, waitForGo } from "./workerIo.js"

export const Written = Schema.Struct({ worker: Schema.String, n: Schema.Number })
export type Written = typeof Written.Type

/** The capped namespace of the `distinct` mode: 5 live rows at most. */
export const CAP = 5
export const capsNamespace = (overflow: OverflowPolicy): NamespaceOptions<Written, unknown> => ({
  owner: "caps-race",
  namespace: `capped.${overflow}`,
  schema: Written as Schema.Schema<Written, unknown>,
  maxEntries: CAP,
  overflow
})

/** The namespace of the `batches` mode: room for every key. */
export const batchNamespace: NamespaceOptions<Written, unknown> = {
  owner: "batch-race",
  namespace: "overlapping",
  schema: Written as Schema.Schema<Written, unknown>,
  maxEntries: 10_000
}
export const batchKey = (k: number): string => `key-${String(k).padStart(3, "0")}`

/** One write the store failed. */
export interface FailedWrite {
  readonly what: string
  readonly reason: string
  readonly message: string
}

export type StoreWriteLine = WorkerLine<{
  /** Writes made (a `register` each, or a `writeBatch` each). */
  readonly attempted: number
  /** The keys whose `register` succeeded (`distinct`). */
  readonly written: ReadonlyArray<string>
  readonly failed: ReadonlyArray<FailedWrite>
  /** Steps of batches the store refused on their own (`batches`). */
  readonly refused: number
}>

const main = () => {
  const [backend, location, goFile, worker = "?", mode, ...rest] = process.argv.slice(2)
  const store = Layer.suspend((): Layer.Layer<KeyedStore, StateStoreError> => {
    if (backend === "sqlite") return SqliteStore.layer({ filename: location! })
    if (backend === "pg") return PgStore.layer({ url: location! })
    throw new Error(`unknown backend ${String(backend)}`)
  })
  const failedWrite = (what: string, error: StateStoreError): FailedWrite => ({ what, reason: error.reason, message: error.message })

  const distinct = (overflow: OverflowPolicy, writers: number, keysPerWriter: number) =>
    Effect.gen(function* () {
      const handle = yield* Effect.flatMap(KeyedStore, (s) => s.open(capsNamespace(overflow)))
      say({ type: "ready", worker })
      yield* waitForGo(goFile!)
      const startedAt = Date.now()
      const written: Array<string> = []
      const failed: Array<FailedWrite> = []
      yield* Effect.forEach(
        Array.from({ length: writers }, (_, w) => w),
        (w) =>
          Effect.forEach(
            Array.from({ length: keysPerWriter }, (_, k) => k),
            (k) => {
              const key = `${worker}-w${w}-k${k}`
              return Effect.map(Effect.either(handle.register(key, { worker, n: w * keysPerWriter + k })), (done) => {
                if (Either.isRight(done)) written.push(key)
                else failed.push(failedWrite(key, done.left))
              })
            },
            { discard: true }
          ),
        { concurrency: "unbounded", discard: true }
      )
      return { type: "result", worker, startedAt, finishedAt: Date.now(), attempted: writers * keysPerWriter, written, failed, refused: 0 } satisfies StoreWriteLine
    })

  const batches = (order: string, count: number, keys: number, concurrency: number) =>
    Effect.gen(function* () {
      const handle = yield* Effect.flatMap(KeyedStore, (s) => s.open(batchNamespace))
      say({ type: "ready", worker })
      yield* waitForGo(goFile!)
      const startedAt = Date.now()
      const failed: Array<FailedWrite> = []
      let refused = 0
      const batchOf = (b: number): ReadonlyArray<BatchOp<Written>> =>
        Array.from({ length: keys }, (_, i) => {
          const k = order === "descending" ? keys - 1 - i : i
          return (k + b) % 7 === 0
            ? { _tag: "Delete" as const, key: batchKey(k) }
            : { _tag: "Register" as const, key: batchKey(k), value: { worker, n: b }, createdAt: Date.now(), expiresAt: undefined }
        })
      yield* Effect.forEach(
        Array.from({ length: count }, (_, b) => b),
        (b) =>
          Effect.map(Effect.either(handle.writeBatch(batchOf(b))), (done) => {
            if (Either.isRight(done)) refused += done.right.refused.length
            else failed.push(failedWrite(`batch ${b}`, done.left))
          }),
        { concurrency, discard: true }
      )
      return { type: "result", worker, startedAt, finishedAt: Date.now(), attempted: count, written: [], failed, refused } satisfies StoreWriteLine
    })

  const program = Effect.suspend(() => {
    if (mode === "distinct") return distinct(rest[0] as OverflowPolicy, Number(rest[1]), Number(rest[2]))
    if (mode === "batches") return batches(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]))
    return Effect.fail(new Error(`unknown mode ${String(mode)}`))
  })

  Effect.runPromiseExit(Effect.scoped(Effect.provide(Effect.map(program, say), store))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

if (process.argv[1]?.endsWith("storeWriteWorker.ts")) main()
