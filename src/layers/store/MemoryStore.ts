/**
 * The in-memory keyed store: the reference model the SQL backends are tested against, and
 * a store for users' own tests. Same rules, same errors, nothing survives the process.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { NamespaceHandle, NamespaceOptions } from "../../KeyedStore.js"
import { KeyedStore } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { firstProblem } from "../settingsCheck.js"
import type { MemoryRows } from "./memoryCore.js"
import { typedFailures } from "./handleGuard.js"
import { makeMemoryHandle } from "./memoryHandle.js"
import { defaultStoreSettings, isLive, makeNamespaceRegistry, resolveNamespace, type StoreSettings, storeSettingRules } from "./storeRules.js"

/**
 * Builds a memory store. Operations are atomic (they run without yielding). Expired rows are
 * invisible, and dropped from a namespace whenever it is written (no background fiber). A
 * wrong setting fails it with `InvalidInput`, naming the setting.
 */
export const make = (settings: Partial<StoreSettings> = {}) =>
  Effect.suspend(() => {
    const problem = firstProblem("", settings, storeSettingRules)
    return problem === undefined ? Effect.succeed(settings) : Effect.fail(new StateStoreError({ reason: "InvalidInput", operation: "open", detail: problem }))
  }).pipe(Effect.map(() => {
    const config = { ...defaultStoreSettings, ...settings }
    const tables = new Map<string, MemoryRows>()
    const register = makeNamespaceRegistry()

    const rowsOf = (owner: string, namespace: string): MemoryRows => {
      const id = `${owner}\u0000${namespace}`
      let rows = tables.get(id)
      if (rows === undefined) {
        rows = new Map()
        tables.set(id, rows)
      }
      return rows
    }
    const ownerLive = (owner: string) => (now: number) => {
      let count = 0
      for (const [id, rows] of tables) {
        if (!id.startsWith(`${owner}\u0000`)) continue
        for (const row of rows.values()) if (isLive(row.expiresAt, now)) count++
      }
      return count
    }

    const open = <A, I>(options: NamespaceOptions<A, I>): Effect.Effect<NamespaceHandle<A>, StateStoreError> =>
      Effect.gen(function* () {
        const ns = yield* resolveNamespace(options, config.maxValueBytes)
        yield* register(ns)
        return typedFailures(makeMemoryHandle(ns, { rows: rowsOf(ns.owner, ns.namespace), ownerLive: ownerLive(ns.owner), ownerMaxEntries: config.ownerMaxEntries }))
      })

    return KeyedStore.of({ backend: "memory", open })
  }))

/** The memory store as a layer (a fresh, empty store per build). */
export const layer = (settings: Partial<StoreSettings> = {}): Layer.Layer<KeyedStore, StateStoreError> => Layer.effect(KeyedStore, make(settings))
