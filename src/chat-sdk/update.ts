/**
 * Read-modify-write of one row, atomic across processes: observe the row, compute the change,
 * and apply it with the store's compare-and-set, which lands only while the row is still
 * exactly as observed. On a conflict the store answers with the row as it is now and the
 * change is computed again from that — so nothing another caller wrote in between is lost or
 * brought back. Lock-free: every conflict means another caller's change landed.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { Change, NamespaceHandle, Observation, StoredEntry } from "../KeyedStore.js"
import type { StateStoreError } from "../StateStoreError.js"

/** What a step decides: the change to apply (none: write nothing) and what the update answers once it lands. */
export interface Step<A, R> {
  readonly change: Change<A> | undefined
  readonly result: R
}

/** Applies `step` to the live entry of `key` (none when absent or expired), again on every conflict; one observe and one compare-and-set when uncontended. */
export const updateRow = <A, R>(
  handle: NamespaceHandle<A>,
  key: string,
  step: (current: Option.Option<StoredEntry<A>>, now: number) => Step<A, R>
): Effect.Effect<R, StateStoreError> => {
  const attempt = (seen: Observation<A>): Effect.Effect<R, StateStoreError> =>
    Effect.flatMap(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => {
      const { change, result } = step(seen.entry, now)
      if (change === undefined) return Effect.succeed(result)
      return Effect.flatMap(handle.compareAndSet(key, seen.revision, change), (outcome) => (outcome._tag === "Conflict" ? attempt(outcome.current) : Effect.succeed(result)))
    })
  return Effect.flatMap(handle.observe(key), attempt)
}
