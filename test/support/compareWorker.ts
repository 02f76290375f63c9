/**
 * A child process for the cross-process compare-and-set test: opens the keyed store on a
 * shared database, says it is ready, waits for the start signal, then increments one counter
 * `increments` times by observe + compareAndSet (observing again after each conflict) and
 * prints which counter values it moved from, and how many conflicts it met.
 *
 *   node --import tsx test/support/compareWorker.ts <sqlite|pg> <file or url> <go file> <worker id> <increments>
 */
import { Effect, type Layer, Option } from "effect"
import { KeyedStore } from "../../src/KeyedStore.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import type { StateStoreError } from "../../src/StateStoreError.js"
import { COUNTER_KEY, counterNamespace } from "./compareProtocol.js"
import { say, waitForGo } from "./workerIo.js"

const [backend, location, goFile, worker, increments] = process.argv.slice(2)

const storeLayer = (): Layer.Layer<KeyedStore, StateStoreError> => {
  if (backend === "sqlite") return SqliteStore.layer({ filename: location! })
  if (backend === "pg") return PgStore.layer({ url: location! })
  throw new Error(`unknown backend ${String(backend)}`)
}

const main = Effect.gen(function* () {
  const store = yield* KeyedStore
  const counters = yield* store.open(counterNamespace)
  say({ type: "ready", worker })
  yield* waitForGo(goFile!)
  const startedAt = Date.now()
  const movedFrom: Array<number> = []
  const failures: Array<string> = []
  let conflicts = 0
  while (movedFrom.length < Number(increments)) {
    const seen = yield* counters.observe(COUNTER_KEY)
    const from = Option.match(seen.entry, { onNone: () => 0, onSome: (entry) => entry.value.n })
    const result = yield* Effect.either(counters.compareAndSet(COUNTER_KEY, seen.revision, { _tag: "Set", value: { n: from + 1, by: worker! } }))
    if (result._tag === "Left") failures.push(result.left.message)
    else if (result.right._tag === "Applied") movedFrom.push(from)
    else conflicts++
    if (failures.length > 20) break
  }
  say({ type: "result", worker, startedAt, finishedAt: Date.now(), movedFrom, conflicts, failures })
})

Effect.runPromise(Effect.scoped(Effect.provide(main, storeLayer()))).catch((error) => {
  say({ type: "fatal", worker, message: String(error) })
  process.exit(1)
})
