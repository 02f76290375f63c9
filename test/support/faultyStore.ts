/**
 * A keyed store that fails on purpose: every operation of every handle fails with an
 * `Unavailable` StateStoreError with probability `failureRate` (a seeded PRNG, so runs
 * repeat), otherwise it runs on the memory store. Counts the failures it injected.
 */
import { Effect, Layer } from "effect"
import { KeyedStore, type NamespaceHandle } from "../../src/KeyedStore.js"
import * as MemoryStore from "../../src/layers/store/MemoryStore.js"
import { StateStoreError } from "../../src/StateStoreError.js"

export const makeFaultyStoreLayer = (failureRate: number, seed = 42) => {
  let state = seed >>> 0
  const random = () => {
    state = (state * 1664525 + 1013904223) >>> 0
    return state / 2 ** 32
  }
  const injected = { count: 0 }
  const maybeFail = <A>(operation: string, effect: Effect.Effect<A, StateStoreError>): Effect.Effect<A, StateStoreError> =>
    Effect.suspend(() => {
      if (random() >= failureRate) return effect
      injected.count++
      return Effect.fail(new StateStoreError({ reason: "Unavailable", operation, detail: "injected fault" }))
    })
  const wrap = <A>(h: NamespaceHandle<A>): NamespaceHandle<A> => ({
    owner: h.owner,
    namespace: h.namespace,
    register: (key, value, options) => maybeFail("register", h.register(key, value, options)),
    registerIfAbsent: (key, value, options) => maybeFail("registerIfAbsent", h.registerIfAbsent(key, value, options)),
    replaceIfEqual: (key, expected, value, options) => maybeFail("replaceIfEqual", h.replaceIfEqual(key, expected, value, options)),
    deleteIfEqual: (key, expected) => maybeFail("deleteIfEqual", h.deleteIfEqual(key, expected)),
    lookup: (key) => maybeFail("lookup", h.lookup(key)),
    lookupEntry: (key) => maybeFail("lookup", h.lookupEntry(key)),
    consume: (key) => maybeFail("consume", h.consume(key)),
    delete: (key) => maybeFail("delete", h.delete(key)),
    writeBatch: (ops) => maybeFail("writeBatch", h.writeBatch(ops)),
    lookupMany: (keys) => maybeFail("lookupMany", h.lookupMany(keys)),
    deleteMany: (keys) => maybeFail("deleteMany", h.deleteMany(keys)),
    entriesInRange: (range) => maybeFail("entriesInRange", h.entriesInRange(range)),
    observe: (key) => maybeFail("observe", h.observe(key)),
    compareAndSet: (key, revision, change) => maybeFail("compareAndSet", h.compareAndSet(key, revision, change)),
    entries: maybeFail("entries", h.entries),
    size: maybeFail("size", h.size),
    clear: maybeFail("clear", h.clear)
  })
  const layer = Layer.scoped(
    KeyedStore,
    Effect.map(MemoryStore.make(), (inner) => KeyedStore.of({ backend: inner.backend, open: (options) => Effect.map(inner.open(options), wrap) }))
  )
  return { layer, injected }
}
