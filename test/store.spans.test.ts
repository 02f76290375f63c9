/**
 * "Each store operation is a span `KeyedStore.<operation>` when a tracer is installed": a
 * recording tracer (delegating to Effect's own) sees the spans of every operation, with the
 * owner, namespace and backend as attributes, parented to the caller's span — for reads on the
 * reader connection and for writes alike. (Under Effect's built-in tracer none is made.)
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { pgBackend, pgUrl, tempDir } from "./support/backends.js"
import { describePg } from "./support/describePg.js"


/** A tracer that makes the built-in tracer's spans and keeps every one it made. */
const recordingTracer = Effect.map(Effect.tracer, (builtIn) => {
  const spans: Array<Tracer.Span> = []
  const recording = Tracer.make({
    span: (name, parent, spanContext, links, startTime, kind, options) => {
      const span = builtIn.span(name, parent, spanContext, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: (f, fiber) => builtIn.context(f, fiber)
  })
  return { spans, recording }
})

describe("store operations under an installed tracer", () => {
  it.scopedLive("lookup, registerIfAbsent and consume each make a KeyedStore.<operation> span with owner, namespace and backend, inside the caller's span", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const context = yield* Layer.build(SqliteStore.layer({ filename: file }))
      const store = yield* Effect.provide(KeyedStore, context)
      const ns = yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 100 })
      const { spans, recording } = yield* recordingTracer
      yield* Effect.gen(function* () {
        yield* ns.registerIfAbsent("k", 1)
        yield* ns.lookup("k")
        yield* ns.consume("k")
      }).pipe(Effect.withSpan("caller"), Effect.withTracer(recording))

      const caller = spans.find((s) => s.name === "caller")
      const ours = spans.filter((s) => s.name.startsWith("KeyedStore."))
      // A claim that comes alone is one statement, run in the caller's fiber: one span.
      expect(ours.map((s) => s.name)).toEqual(["KeyedStore.registerIfAbsent", "KeyedStore.lookup", "KeyedStore.consume"])
      for (const span of ours) {
        expect(Object.fromEntries(span.attributes)).toMatchObject({ owner: "p", namespace: "n", backend: "sqlite" })
        expect(span.status._tag).toBe("Ended")
      }
      const parentOf = (span: Tracer.Span) => (span.parent._tag === "Some" ? span.parent.value : undefined)
      expect(ours.map((span) => parentOf(span))).toEqual([caller, caller, caller])
    })
  )
})

describePg("spans of coalesced PostgreSQL lookups", () => {
  it.scopedLive("20 concurrent lookups under a tracer make 20 KeyedStore.lookup spans, each inside its caller's span", () =>
    Effect.gen(function* () {
      const db = yield* pgBackend(pgUrl ?? "").fresh
      const context = yield* Layer.build(db.store())
      const store = yield* Effect.provide(KeyedStore, context)
      const ns = yield* store.open({ owner: "p", namespace: "spans", schema: Schema.Number, maxEntries: 100 })
      yield* ns.register("k", 1)
      const { spans, recording } = yield* recordingTracer
      yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => ns.lookup("k").pipe(Effect.withSpan(`caller${i}`)),
        { concurrency: "unbounded" }
      ).pipe(Effect.withTracer(recording))
      const ours = spans.filter((s) => s.name.startsWith("KeyedStore."))
      const parentName = (s: Tracer.Span) => (s.parent._tag === "Some" && s.parent.value._tag === "Span" ? s.parent.value.name : undefined)
      expect(ours.map((s) => `${s.name} in ${parentName(s)}`).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `KeyedStore.lookup in caller${i}`).sort())
    })
  )
})
