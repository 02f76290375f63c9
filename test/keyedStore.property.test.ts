/**
 * Model-based property test: random operation sequences run in lock step on the memory store
 * (the reference model) and on a SQL backend (a fresh database per run), sharing one
 * TestClock, with restarts of the SQL store (closed, then reopened on the same database)
 * in between. Every result — success values and failure reasons — and the namespace contents
 * after every step must agree.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, FastCheck as fc, Layer, Option, Schema, Scope, TestClock } from "effect"
import { type BatchOp, KeyedStore, type NamespaceHandle, type NamespaceOptions, type OverflowPolicy, type WriteOptions } from "../src/KeyedStore.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, sqlBackends } from "./support/backends.js"

const Value = Schema.Struct({ n: Schema.Number })
type Value = typeof Value.Type

// ---- the generated program ------------------------------------------------------------

/** Timestamps are generated relative to the clock at the step, so they stay meaningful. */
type Write =
  | { readonly _tag: "Default" }
  | { readonly _tag: "Ttl"; readonly ttl: number }
  | { readonly _tag: "ExpiresIn"; readonly expiresIn: number }
  | { readonly _tag: "Created"; readonly createdAgo: number; readonly ttl: number | undefined }

type BatchStep =
  | { readonly _tag: "Register"; readonly key: string; readonly n: number; readonly createdAgo: number; readonly expiresIn: number | undefined }
  | { readonly _tag: "Delete"; readonly key: string }

type Op =
  | { readonly _tag: "register" | "registerIfAbsent"; readonly key: string; readonly n: number; readonly write: Write }
  | { readonly _tag: "lookup" | "lookupEntry" | "consume" | "delete"; readonly key: string }
  | { readonly _tag: "size" | "entries" | "clear" }
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "restart" }
  | { readonly _tag: "writeBatch"; readonly steps: ReadonlyArray<BatchStep> }

interface Config {
  readonly maxEntries: number
  readonly overflow: OverflowPolicy
  readonly ttl: number | undefined
  readonly ownerMaxEntries: number
}

// Plain keys plus two whose UTF-16 and UTF-8 orders differ (U+FF61 vs U+1F600): eviction ties must agree.
const KEYS = ["a", "b", "c", "\uFF61", "\u{1F600}"] as const
const key = fc.constantFrom(...KEYS)
const n = fc.integer({ min: 0, max: 9 })
// Durations cluster on a few values so that expiry boundaries (expiresAt === now) get hit.
const millis = fc.constantFrom(1, 500, 999, 1000, 1001, 2500, 10_000)
const offset = fc.constantFrom(-1000, -1, 0, 1, 1000, 2500)

const write: fc.Arbitrary<Write> = fc.oneof(
  fc.constant({ _tag: "Default" as const }),
  fc.record({ _tag: fc.constant("Ttl" as const), ttl: millis }),
  fc.record({ _tag: fc.constant("ExpiresIn" as const), expiresIn: offset }),
  fc.record({ _tag: fc.constant("Created" as const), createdAgo: fc.constantFrom(0, 1, 1000, 5000), ttl: fc.option(millis, { nil: undefined }) })
)

const batchStep: fc.Arbitrary<BatchStep> = fc.oneof(
  fc.record({
    _tag: fc.constant("Register" as const),
    key,
    n,
    createdAgo: fc.constantFrom(-1000, 0, 1, 1000, 5000),
    expiresIn: fc.option(offset, { nil: undefined })
  }),
  fc.record({ _tag: fc.constant("Delete" as const), key })
)

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ _tag: fc.constantFrom("register" as const, "registerIfAbsent" as const), key, n, write }) },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constantFrom("lookup" as const, "lookupEntry" as const, "consume" as const, "delete" as const), key }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constantFrom("size" as const, "entries" as const, "clear" as const) }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("advance" as const), millis: fc.constantFrom(1, 499, 500, 1000, 2500, 60_000) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("writeBatch" as const), steps: fc.array(batchStep, { maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("restart" as const) }) }
)

const config: fc.Arbitrary<Config> = fc.record({
  maxEntries: fc.integer({ min: 1, max: 4 }),
  overflow: fc.constantFrom<OverflowPolicy>("evict-oldest", "reject-new"),
  ttl: fc.option(fc.constantFrom(1000, 2500, 10_000), { nil: undefined }),
  ownerMaxEntries: fc.constantFrom(3, 50_000)
})

// ---- running one step -------------------------------------------------------------------

/** A step's outcome in a form `toEqual` compares and prints well. */
type Outcome = { readonly ok: unknown } | { readonly failed: StateStoreError["reason"] }

const writeOptions = (w: Write, now: number): WriteOptions | undefined => {
  switch (w._tag) {
    case "Default":
      return undefined
    case "Ttl":
      return { ttl: w.ttl }
    case "ExpiresIn":
      return { expiresAt: now + w.expiresIn }
    case "Created":
      return { createdAt: Math.max(0, now - w.createdAgo), ttl: w.ttl }
  }
}

const batchOps = (steps: ReadonlyArray<BatchStep>, now: number): Array<BatchOp<Value>> =>
  steps.map((s) =>
    s._tag === "Delete"
      ? s
      : {
          _tag: "Register",
          key: s.key,
          value: { n: s.n },
          createdAt: Math.max(0, now - s.createdAgo),
          expiresAt: s.expiresIn === undefined ? undefined : now + s.expiresIn
        }
  )

const plainOption = (o: Option.Option<unknown>) => (Option.isSome(o) ? { some: o.value } : "none")

const run = (h: NamespaceHandle<Value>, step: Exclude<Op, { _tag: "advance" | "restart" }>, now: number): Effect.Effect<Outcome> => {
  const effect: Effect.Effect<unknown, StateStoreError> = (() => {
    switch (step._tag) {
      case "register":
        return h.register(step.key, { n: step.n }, writeOptions(step.write, now))
      case "registerIfAbsent":
        return h.registerIfAbsent(step.key, { n: step.n }, writeOptions(step.write, now))
      case "lookup":
        return Effect.map(h.lookup(step.key), plainOption)
      case "lookupEntry":
        return Effect.map(h.lookupEntry(step.key), plainOption)
      case "consume":
        return Effect.map(h.consume(step.key), plainOption)
      case "delete":
        return h.delete(step.key)
      case "size":
        return h.size
      case "entries":
        return h.entries
      case "clear":
        return h.clear
      case "writeBatch":
        return h.writeBatch(batchOps(step.steps, now))
    }
  })()
  return Effect.map(Effect.either(effect), (result): Outcome => (Either.isRight(result) ? { ok: result.right ?? null } : { failed: result.left.reason }))
}

const openWith = (context: Context.Context<KeyedStore>, c: Config) => {
  const options: NamespaceOptions<Value, unknown> = {
    owner: "plugin-model",
    namespace: "things",
    schema: Value as Schema.Schema<Value, unknown>,
    maxEntries: c.maxEntries,
    overflow: c.overflow,
    ttl: c.ttl
  }
  return Context.get(context, KeyedStore).open(options)
}

const agreesWithModel = (backend: BackendFactory) =>
  describe(`KeyedStore model check: ${backend.name} against memory`, () => {
    it.scoped.prop(
      "random operation sequences, with restarts, give the same results as the memory store, step by step",
      { c: config, ops: fc.array(op, { maxLength: 40, size: "max" }) },
      ({ c, ops }) =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          const settings = { ownerMaxEntries: c.ownerMaxEntries }
          const model = yield* openWith(yield* Layer.build(MemoryStore.layer(settings)), c)
          // The SQL store lives in its own scope, so a restart can close it and open it again.
          const openReal = Effect.gen(function* () {
            const scope = yield* Scope.make()
            const handle = yield* openWith(yield* Layer.buildWithScope(db.store(settings), scope), c)
            return { scope, handle }
          })
          let real = yield* openReal
          yield* Effect.addFinalizer(() => Scope.close(real.scope, Exit.void))
          const trace: Array<string> = []
          for (const [i, step] of ops.entries()) {
            trace.push(`${i}: ${JSON.stringify(step)}`)
            if (step._tag === "advance") {
              yield* TestClock.adjust(step.millis)
              continue
            }
            if (step._tag === "restart") {
              yield* Scope.close(real.scope, Exit.void)
              real = yield* openReal
              continue
            }
            const now = yield* TestClock.currentTimeMillis
            const expected = yield* run(model, step, now)
            const actual = yield* run(real.handle, step, now)
            expect(actual, `result of step ${i} at t=${now}ms, config ${JSON.stringify(c)}\n${trace.join("\n")}`).toEqual(expected)
            const contents = yield* Effect.all([run(model, { _tag: "entries" }, now), run(real.handle, { _tag: "entries" }, now)])
            expect(contents[1], `contents after step ${i} at t=${now}ms, config ${JSON.stringify(c)}\n${trace.join("\n")}`).toEqual(contents[0])
          }
        }),
      { timeout: 120_000, fastCheck: { numRuns: 25 } }
    )
  })

for (const backend of sqlBackends) agreesWithModel(backend)
