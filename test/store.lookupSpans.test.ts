/**
 * The PostgreSQL lookup coalescing, tried, under an installed tracer: each lookup is a
 * store operation, so (README, test/store.spans.test.ts) each makes a `KeyedStore.lookup` span
 * inside its caller's span — whether it ran alone or was coalesced with others.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Schema, Tracer } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { pgBackend, pgUrl } from "./support/backends.js"
import { describePg } from "./support/describePg.js"

describePg("spans of coalesced PostgreSQL lookups", () => {
  it.scopedLive("20 concurrent lookups under a tracer make 20 KeyedStore.lookup spans, each inside its caller's span", () =>
    Effect.gen(function* () {
      const db = yield* pgBackend(pgUrl ?? "").fresh
      const context = yield* Layer.build(db.store())
      const store = yield* Effect.provide(KeyedStore, context)
      const ns = yield* store.open({ owner: "p", namespace: "spans", schema: Schema.Number, maxEntries: 100 })
      yield* ns.register("k", 1)
      const builtIn = yield* Effect.tracer
      const spans: Array<Tracer.Span> = []
      const recording = Tracer.make({
        span: (name, parent, spanContext, links, startTime, kind, options) => {
          const span = builtIn.span(name, parent, spanContext, links, startTime, kind, options)
          spans.push(span)
          return span
        },
        context: (f, fiber) => builtIn.context(f, fiber)
      })
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
