/**
 * What the cross-process compare-and-set test and its workers (compareWorker.ts) share: the
 * counter's namespace and the workers' result line.
 */
import { Schema } from "effect"
import type { NamespaceOptions } from "../../src/KeyedStore.js"
import type { WorkerLine } from "./workerIo.js"

export const Counter = Schema.Struct({ n: Schema.Number, by: Schema.String })
export type Counter = typeof Counter.Type

export const counterNamespace: NamespaceOptions<Counter, unknown> = {
  owner: "cas-race",
  namespace: "counters",
  schema: Counter as Schema.Schema<Counter, unknown>,
  retention: "retained"
}
export const COUNTER_KEY = "counter"

export type CompareLine = WorkerLine<{
  /** The counter values this worker's applied sets moved from (each must be moved from exactly once, across workers). */
  readonly movedFrom: ReadonlyArray<number>
  readonly conflicts: number
  readonly failures: ReadonlyArray<string>
}>

