/**
 * The promise every handle keeps whatever it is given: each member fails only with a typed
 * `StateStoreError`, never a defect — a throw while an operation is built (an options object
 * whose getter throws, a batch that is not an array) or while it runs (a driver or
 * file-system throw nobody mapped) becomes a typed failure.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { NamespaceHandle } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"

/** A defect (a driver or file-system throw nobody mapped) as the typed failure every store operation promises. */
export const unexpectedFailure = (operation: string, kind: "read" | "write", defect: unknown, where: { owner?: string; namespace?: string } = {}) =>
  new StateStoreError({
    reason: kind === "read" ? "ReadFailed" : "WriteFailed",
    operation,
    detail: `unexpected store error: ${defect instanceof Error ? defect.message : String(defect)}`,
    cause: defect,
    ...where
  })

const READS = new Set(["lookup", "lookupEntry", "lookupMany", "entriesInRange", "observe", "entries", "size"])

/** `handle`, with every member's defects turned into typed failures (`ReadFailed` for reads, `WriteFailed` for writes). */
export const typedFailures = <A>(handle: NamespaceHandle<A>): NamespaceHandle<A> => {
  const at = { owner: handle.owner, namespace: handle.namespace }
  const guard = <R>(name: string, effect: () => Effect.Effect<R, StateStoreError>) =>
    Effect.catchAllDefect(Effect.suspend(effect), (defect) => Effect.fail(unexpectedFailure(name, READS.has(name) ? "read" : "write", defect, at)))
  const guarded: Record<string, unknown> = { owner: handle.owner, namespace: handle.namespace }
  for (const [name, member] of Object.entries(handle)) {
    if (name === "owner" || name === "namespace") continue
    guarded[name] = Effect.isEffect(member)
      ? guard(name, () => member as Effect.Effect<unknown, StateStoreError>)
      : (...args: ReadonlyArray<unknown>) => guard(name, () => (member as (...a: ReadonlyArray<unknown>) => Effect.Effect<unknown, StateStoreError>)(...args))
  }
  return guarded as unknown as NamespaceHandle<A>
}
