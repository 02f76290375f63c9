/**
 * Failure isolation: the persistent layers over a store that fails every call, and one that
 * fails 30% of calls at random. 10 000 mixed operations: nothing reaches a caller, async
 * reads answer from memory, failures are logged per burst (not per message) and counted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Logger, Metric, TestClock } from "effect"
import type { KeyedStore } from "../src/KeyedStore.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { scenarios } from "./support/channelScenarios.js"
import { makeFaultyStoreLayer } from "./support/faultyStore.js"

const OPERATIONS = 10_000

/** The channels' persistent layers (all six, one owner) over `store`. */
const persistentChannels = (store: Layer.Layer<KeyedStore, StateStoreError>) => {
  const options = { pluginId: "faulty", mirror: { flushInterval: Duration.seconds(1), maxBatch: 200 } }
  const m = PluginRuntime.channelModules
  return Layer.mergeAll(
    m.slack.layerPersistent(options),
    m.discord.layerPersistent(options),
    m.msteams.layerPersistent(options),
    m.matrix.layerPersistent(options),
    m.bluebubbles.layerPersistent(options),
    m.feishu.layerPersistent(options)
  ).pipe(Layer.provide(store))
}

const failureCount = Effect.map(Metric.snapshot, (pairs) =>
  pairs
    .filter((pair) => pair.metricKey.name === "channel_state_failures" && pair.metricKey.tags.some((t) => t.key === "plugin" && t.value === "faulty"))
    .reduce((sum, pair) => sum + Number((pair.metricState as unknown as { count: number }).count), 0)
)

describe("failure isolation", () => {
  for (const failureRate of [1, 0.3]) {
    it.scoped(`store failing ${failureRate * 100}% of calls: 10 000 mixed operations, no failure reaches a caller`, () =>
      Effect.gen(function* () {
        const faulty = makeFaultyStoreLayer(failureRate)
        const warnings: Array<string> = []
        const logger = Logger.make(({ logLevel, message }) => {
          if (logLevel._tag === "Warning" || logLevel._tag === "Error") warnings.push(String(message))
        })
        const failuresBefore = yield* failureCount
        let wrongAnswers = 0
        yield* Effect.gen(function* () {
          for (let i = 0; i < OPERATIONS; i++) {
            const scenario = scenarios[i % scenarios.length]!
            const entry = Math.floor(i / scenarios.length)
            yield* scenario.write(entry)
            // Written moments ago in this process: memory must answer even when the store cannot.
            if (!(yield* scenario.found(entry))) wrongAnswers++
            // Let time pass now and then, so flushes run and the back-off expires and probes again.
            if (i % 500 === 0) yield* TestClock.adjust("2 seconds")
          }
        }).pipe(Effect.provide(persistentChannels(faulty.layer)), Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Effect.scoped)
        const counted = (yield* failureCount) - failuresBefore
        console.log(`failure rate ${failureRate}: ${faulty.injected.count} injected faults, ${counted} counted, ${warnings.length} warning lines`)
        expect(wrongAnswers).toBe(0)
        expect(faulty.injected.count).toBeGreaterThan(0)
        expect(counted).toBe(faulty.injected.count)
        // One line when a burst starts, one summary a minute, one on recovery: far fewer than operations.
        expect(warnings.length).toBeGreaterThan(0)
        expect(warnings.length).toBeLessThan(100)
      })
    )
  }
})
