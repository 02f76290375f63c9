/**
 * A namespace handle of the memory store: the reference model of every rule the SQL store
 * keeps (the property test compares them step by step). Each operation runs without
 * yielding, so it is atomic.
 *
 * @internal
 */
import { Clock, Effect, Either, Option } from "effect"
import type { BatchOp, Change, CompareResult, EntriesPage, KeyRange, NamespaceHandle, Observation, RefusedWrite, StoredEntry, WriteBatchResult, WriteOptions } from "../../KeyedStore.js"
import type { StateStoreError } from "../../StateStoreError.js"
import { ABSENT, byteOrder, checkKeys, checkRange, checkRevision, revisionOf } from "./bulkRules.js"
import { decodeValue, encodeValue } from "./valueRules.js"
import { capExceeded, checkKey, invalid, isLive, lastStepPerKey, oldestFirst, type ResolvedNamespace, writeTimes } from "./storeRules.js"

/** A stored row. */
export interface MemoryRow {
  readonly key: string
  readonly json: string
  readonly createdAt: number
  readonly expiresAt: number | undefined
}

/** One namespace's rows, by key. */
export type MemoryRows = Map<string, MemoryRow>

/** What a handle needs from its store. */
export interface MemoryHandleContext {
  readonly rows: MemoryRows
  /** Live rows of the owner across its namespaces. */
  readonly ownerLive: (now: number) => number
  readonly ownerMaxEntries: number | undefined
}

const liveCount = (rows: MemoryRows, now: number) => {
  let count = 0
  for (const row of rows.values()) if (isLive(row.expiresAt, now)) count++
  return count
}

/** Builds the handle of the resolved namespace `ns` over its rows. */
export const makeMemoryHandle = <A>(ns: ResolvedNamespace<A>, ctx: MemoryHandleContext): NamespaceHandle<A> => {
  const { rows, ownerMaxEntries } = ctx
  const full = (operation: string, key: string | undefined, what: "namespace" | "owner") => capExceeded(ns, ownerMaxEntries, operation, key, what)
  /** Drops the namespace's expired rows (they are invisible already); stands in for the sweeper. */
  const dropExpired = (now: number) => {
    for (const row of rows.values()) if (!isLive(row.expiresAt, now)) rows.delete(row.key)
  }

  /**
   * Applies `mutate` (through `put`/`del`, which keep an undo log), then the caps: the oldest
   * rows of an `evict-oldest` namespace are evicted; a full `reject-new` namespace or owner
   * undoes every change and fails with `LimitExceeded`.
   */
  const transact = <R>(operation: string, now: number, key: string | undefined, mutate: (put: (row: MemoryRow) => void, del: (key: string) => void) => R): Either.Either<R, StateStoreError> => {
    const undo: Array<readonly [string, MemoryRow | undefined]> = []
    const put = (row: MemoryRow) => {
      undo.push([row.key, rows.get(row.key)])
      rows.set(row.key, row)
    }
    const del = (k: string) => {
      undo.push([k, rows.get(k)])
      rows.delete(k)
    }
    const rollback = (error: StateStoreError) => {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [k, previous] = undo[i]!
        if (previous === undefined) rows.delete(k)
        else rows.set(k, previous)
      }
      return Either.left(error)
    }
    const result = mutate(put, del)
    dropExpired(now)
    if (rows.size > ns.maxEntries) {
      if (ns.overflow === "reject-new") return rollback(full(operation, key, "namespace"))
      for (const row of [...rows.values()].sort(oldestFirst).slice(0, rows.size - ns.maxEntries)) del(row.key)
    }
    if (ownerMaxEntries !== undefined && ctx.ownerLive(now) > ownerMaxEntries) return rollback(full(operation, key, "owner"))
    return Either.right(result)
  }

  /** How many new keys fit, as the SQL store's `room` computes it. */
  const room = (now: number, fresh: number) => {
    if (ns.overflow === "evict-oldest" && ownerMaxEntries === undefined) return fresh
    dropExpired(now)
    const namespaceFree = Math.max(0, ns.maxEntries - rows.size)
    const ownerFree = ownerMaxEntries === undefined ? Number.POSITIVE_INFINITY : Math.max(0, ownerMaxEntries - ctx.ownerLive(now))
    if (ns.overflow === "reject-new") return Math.min(fresh, namespaceFree, ownerFree)
    return namespaceFree <= ownerFree ? fresh : Math.min(fresh, ownerFree)
  }

  const prepare = (operation: string, key: string, value: A, options: WriteOptions | undefined, now: number): Either.Either<MemoryRow, StateStoreError> => {
    const keyError = checkKey(ns, operation, key)
    if (keyError) return Either.left(keyError)
    return Either.flatMap(encodeValue(ns, operation, key, value), (json) => Either.map(writeTimes(ns, operation, now, options), (times): MemoryRow => ({ key, json, ...times })))
  }
  const liveRow = (key: string, now: number) => {
    const row = rows.get(key)
    return row !== undefined && isLive(row.expiresAt, now) ? row : undefined
  }
  const decodeRow = (operation: string, row: MemoryRow) =>
    Either.map(decodeValue(ns, operation, row.key, row.json), (value): StoredEntry<A> => ({ key: row.key, value, createdAt: row.createdAt, expiresAt: row.expiresAt })).pipe(
      Either.mapLeft((error) => {
        rows.delete(row.key)
        return error
      })
    )
  const withKey = <R>(operation: string, key: string, f: (now: number) => Either.Either<R, StateStoreError>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const keyError = checkKey(ns, operation, key)
      return keyError ? Effect.fail(keyError) : f(now)
    })
  const expectedJson = (operation: string, key: string, expected: A) => encodeValue(ns, operation, key, expected)

  const lookupEntry = (key: string) =>
    withKey("lookup", key, (now) => {
      const row = liveRow(key, now)
      return row === undefined ? Either.right(Option.none()) : Either.map(decodeRow("lookup", row), Option.some)
    })

  const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

  const writeBatch = (ops: ReadonlyArray<BatchOp<A>>): Effect.Effect<WriteBatchResult> =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const refused: Array<RefusedWrite> = []
      const deletes: Array<{ key: string; ifEqual: string | undefined }> = []
      const plain: Array<MemoryRow> = []
      const conditional: Array<{ row: MemoryRow; orEqualTo: string }> = []
      for (const op of lastStepPerKey(ops)) {
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
      return { refused }
    })

  const lookupMany = (keys: ReadonlyArray<string>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkKeys(ns, "lookupMany", keys)
      if (problem) return Effect.fail(problem)
      return Effect.succeed(
        keys.map((key): Either.Either<Option.Option<A>, StateStoreError> => {
          const row = liveRow(key, now)
          return row === undefined ? Either.right(Option.none()) : Either.map(decodeRow("lookupMany", row), (entry) => Option.some(entry.value))
        })
      )
    })

  const deleteMany = (keys: ReadonlyArray<string>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkKeys(ns, "deleteMany", keys)
      if (problem) return Effect.fail(problem)
      return Effect.succeed(
        keys.map((key) => {
          const live = liveRow(key, now) !== undefined
          rows.delete(key)
          return live
        })
      )
    })

  const entriesInRange = (range: KeyRange): Effect.Effect<EntriesPage<A>, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const checked = checkRange(ns, range)
      if (!("limit" in checked)) return Effect.fail(checked)
      const { from, to, cursor, order, limit } = checked
      const direction = order === "asc" ? 1 : -1
      const inRange = [...rows.values()]
        .filter(
          (row) =>
            isLive(row.expiresAt, now) &&
            (from === undefined || byteOrder(row.key, from) >= 0) &&
            (to === undefined || byteOrder(row.key, to) < 0) &&
            (cursor === undefined || direction * byteOrder(row.key, cursor) > 0)
        )
        .sort((a, b) => direction * byteOrder(a.key, b.key))
      const page = inRange.slice(0, limit)
      const entries: Array<StoredEntry<A>> = []
      for (const row of page) {
        const entry = decodeRow("entriesInRange", row)
        if (Either.isLeft(entry)) return Effect.fail(entry.left)
        entries.push(entry.right)
      }
      return Effect.succeed({ entries, cursor: inRange.length > limit ? page[page.length - 1]!.key : undefined })
    })

  const observation = (operation: string, row: MemoryRow | undefined): Either.Either<Observation<A>, StateStoreError> =>
    row === undefined
      ? Either.right({ entry: Option.none(), revision: ABSENT })
      : Either.map(decodeRow(operation, row), (entry) => ({ entry: Option.some(entry), revision: revisionOf(row.json, row.createdAt, row.expiresAt) }))

  const compareAndSet = (key: string, revision: string, change: Change<A>): Effect.Effect<CompareResult<A>, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const problem = checkKey(ns, "compareAndSet", key) ?? checkRevision(ns, key, revision)
      if (problem) return Effect.fail(problem)
      const tag = (change as { _tag?: unknown } | null)?._tag
      if (tag !== "Set" && tag !== "Delete" && tag !== "Keep") {
        return Effect.fail(invalid("compareAndSet", 'change must be { _tag: "Set", value }, { _tag: "Delete" } or { _tag: "Keep" }', { owner: ns.owner, namespace: ns.namespace, key }))
      }
      let toWrite: MemoryRow | undefined
      if (change._tag === "Set") {
        const prepared = prepare("compareAndSet", key, change.value, change.options, now)
        if (Either.isLeft(prepared)) return Effect.fail(prepared.left)
        toWrite = prepared.right
      }
      const seen = liveRow(key, now)
      if ((seen === undefined ? ABSENT : revisionOf(seen.json, seen.createdAt, seen.expiresAt)) !== revision) {
        return Either.map(observation("compareAndSet", seen), (current): CompareResult<A> => ({ _tag: "Conflict", current }))
      }
      if (change._tag === "Keep" || (change._tag === "Delete" && seen === undefined)) return Effect.succeed({ _tag: "Unchanged" } as const)
      if (change._tag === "Delete") {
        rows.delete(key)
        return Effect.succeed({ _tag: "Applied" } as const)
      }
      if (seen !== undefined) {
        rows.set(key, toWrite!)
        return Effect.succeed({ _tag: "Applied" } as const)
      }
      return Either.map(
        transact("compareAndSet", now, key, (put) => put(toWrite!)),
        (): CompareResult<A> => ({ _tag: "Applied" })
      )
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
    lookupMany,
    deleteMany,
    entriesInRange,
    observe: (key) => withKey("observe", key, (now) => observation("observe", liveRow(key, now))),
    compareAndSet,
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
