/**
 * A namespace handle of the memory store: the reference model of every rule the SQL store
 * keeps (the property test compares them step by step). Each operation runs without
 * yielding, so it is atomic. The single-key members and batches here; the many-key, range
 * and compare-and-set members in memoryBulk.ts.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { BatchOp, NamespaceHandle, RefusedWrite, StoredEntry, WriteBatchResult } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { readSteps } from "./bulkRules.js"
import { makeMemoryBulk } from "./memoryBulk.js"
import { liveCount, type MemoryHandleContext, type MemoryRow, makeMemoryCore } from "./memoryCore.js"
import { checkKey, isLive, lastStepPerKey, oldestFirst, type ResolvedNamespace } from "./storeRules.js"


/** Builds the handle of the resolved namespace `ns` over its rows. */
export const makeMemoryHandle = <A>(ns: ResolvedNamespace<A>, ctx: MemoryHandleContext): NamespaceHandle<A> => {
  const core = makeMemoryCore(ns, ctx)
  const { rows, full, transact, room, prepare, liveRow, decodeRow, withKey, expectedJson } = core

  const lookupEntry = (key: string) =>
    withKey("lookup", key, (now) => {
      const row = liveRow(key, now)
      return row === undefined ? Either.right(Option.none()) : Either.map(decodeRow("lookup", row), Option.some)
    })

  const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

  const writeBatch = (ops: ReadonlyArray<BatchOp<A>>): Effect.Effect<WriteBatchResult, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const steps = readSteps(ns, ops)
      if (steps instanceof StateStoreError) return Effect.fail(steps)
      const refused: Array<RefusedWrite> = []
      const deletes: Array<{ key: string; ifEqual: string | undefined }> = []
      const plain: Array<MemoryRow> = []
      const conditional: Array<{ row: MemoryRow; orEqualTo: string }> = []
      for (const op of lastStepPerKey(steps)) {
        const keyError = checkKey(ns, "writeBatch", op.key)
        if (keyError) {
          refused.push({ key: String(op.key), error: keyError })
          continue
        }
        if (op._tag === "Delete") {
          const json = op.ifEqual === undefined ? Either.right(undefined) : expectedJson("writeBatch", op.key, op.ifEqual)
          if (Either.isLeft(json)) refused.push({ key: op.key, error: json.left })
          else deletes.push({ key: op.key, ifEqual: json.right })
          continue
        }
        const row = prepare("writeBatch", op.key, op.value, { createdAt: op.createdAt, expiresAt: op.expiresAt }, now)
        const orEqualTo = op.ifAbsentOr === undefined ? Either.right(undefined) : expectedJson("writeBatch", op.key, op.ifAbsentOr)
        if (Either.isLeft(row)) refused.push({ key: op.key, error: row.left })
        else if (Either.isLeft(orEqualTo)) refused.push({ key: op.key, error: orEqualTo.left })
        else if (orEqualTo.right === undefined) plain.push(row.right)
        else conditional.push({ row: row.right, orEqualTo: orEqualTo.right })
      }
      plain.sort(byKey)
      conditional.sort((a, b) => byKey(a.row, b.row))
      for (const { key, ifEqual } of deletes) {
        if (ifEqual === undefined || liveRow(key, now)?.json === ifEqual) rows.delete(key)
      }
      // A row expired on arrival takes no room: it is invisible at once.
      const fresh = plain.filter((row) => liveRow(row.key, now) === undefined && isLive(row.expiresAt, now))
      let fits = room(now, fresh.length)
      const accepted = plain.filter((row) => liveRow(row.key, now) !== undefined || !isLive(row.expiresAt, now) || fits-- > 0)
      for (const row of plain) if (!accepted.includes(row)) refused.push({ key: row.key, error: full("writeBatch", row.key, ns.overflow === "reject-new" ? "namespace" : "owner") })
      const written = transact("writeBatch", now, undefined, (put) => {
        for (const row of accepted) put(row)
      })
      if (Either.isLeft(written)) for (const row of accepted) refused.push({ key: row.key, error: written.left })
      for (const { row, orEqualTo } of conditional) {
        const current = liveRow(row.key, now)
        if (current !== undefined && current.json !== orEqualTo) continue
        const landed = transact("writeBatch", now, row.key, (put) => put(row))
        if (Either.isLeft(landed)) refused.push({ key: row.key, error: landed.left })
      }
      return Effect.succeed({ refused })
    })

  return {
    owner: ns.owner,
    namespace: ns.namespace,
    register: (key, value, options) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Either.flatMap(prepare("register", key, value, options, now), (row) => transact("register", now, key, (put) => put(row)))
      ),
    registerIfAbsent: (key, value, options) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Either.flatMap(prepare("registerIfAbsent", key, value, options, now), (row) =>
          liveRow(key, now) !== undefined
            ? Either.right(false)
            : transact("registerIfAbsent", now, key, (put) => {
                put(row)
                return true
              })
        )
      ),
    replaceIfEqual: (key, expected, value, options) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Either.flatMap(expectedJson("replaceIfEqual", key, expected), (json) =>
          Either.map(prepare("replaceIfEqual", key, value, options, now), (row) => {
            if (liveRow(key, now)?.json !== json) return false
            rows.set(key, row)
            return true
          })
        )
      ),
    deleteIfEqual: (key, expected) =>
      Either.match(expectedJson("deleteIfEqual", key, expected), {
        onLeft: Effect.fail,
        onRight: (json) => withKey("deleteIfEqual", key, (now) => Either.right(liveRow(key, now)?.json === json && rows.delete(key)))
      }),
    lookupEntry,
    lookup: (key) => Effect.map(lookupEntry(key), Option.map((entry) => entry.value)),
    consume: (key) =>
      withKey("consume", key, (now) => {
        const row = liveRow(key, now)
        rows.delete(key)
        return row === undefined ? Either.right(Option.none()) : Either.map(decodeRow("consume", row), (entry) => Option.some(entry.value))
      }),
    delete: (key) =>
      withKey("delete", key, (now) => {
        const live = liveRow(key, now) !== undefined
        rows.delete(key)
        return Either.right(live)
      }),
    writeBatch,
    ...makeMemoryBulk(core),
    entries: Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const live = [...rows.values()].filter((row) => isLive(row.expiresAt, now)).sort(oldestFirst)
      const decoded = live.map((row) => decodeRow("entries", row))
      const failed = decoded.find(Either.isLeft)
      return failed ? Effect.fail(failed.left) : Effect.succeed(decoded.map((d) => (d as Either.Right<never, StoredEntry<A>>).right))
    }),
    size: Effect.map(Clock.currentTimeMillis, (now) => liveCount(rows, now)),
    clear: Effect.map(Clock.currentTimeMillis, (now) => {
      const live = liveCount(rows, now)
      rows.clear()
      return live
    })
  }
}
