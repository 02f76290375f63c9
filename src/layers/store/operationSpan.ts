/**
 * The span of one store operation, made only where somebody can see it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Tracer from "effect/Tracer"

/** Effect's built-in tracer: the one a fiber has when nobody installed another (it exports nothing). */
let builtIn: Tracer.Tracer | undefined
const builtInTracer = (): Tracer.Tracer => {
  builtIn ??= Effect.runSync(Effect.tracer)
  return builtIn
}

/**
 * Runs `effect` in a span named `name` when a tracer is installed (`@effect/opentelemetry`,
 * or any `Layer.setTracer`). Under Effect's built-in tracer, whose spans go nowhere, no span
 * is made: one costs about three times what SQLite takes to answer a lookup.
 */
export const withOperationSpan =
  (name: string, attributes: Record<string, unknown>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.tracerWith((tracer) => (tracer === builtInTracer() ? effect : Effect.withSpan(effect, name, { attributes, captureStackTrace: false })))
