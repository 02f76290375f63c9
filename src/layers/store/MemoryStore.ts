/**
 * The in-memory keyed store: the reference model the SQL backends are tested against, and
 * a store for users' own tests. Same rules, same errors, nothing survives the process.
 *
 * @module
 */
import { Clock, Effect, Either, Layer, Option } from "effect"
import type { BatchOp, NamespaceHandle, NamespaceOptions, StoredEntry, WriteOptions } from "../../KeyedStore.js"
import { KeyedStore } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import {
  checkKey,
  decodeValue,
  defaultStoreSettings,
  encodeValue,
  isLive,
  lastStepPerKey,
  makeNamespaceRegistry,
  oldestFirst,
  type ResolvedNamespace,
  resolveNamespace,
  type StoreSettings,
  writeTimes
} from "./storeRules.js"

interface Row {
  readonly key: string
  readonly json: string
  readonly createdAt: number
  readonly expiresAt: number | undefined
}

type Rows = Map<string, Row>

/**
 * Builds a memory store. Operations are atomic (they run without yielding). Expired rows are
 * invisible, and dropped from a namespace whenever it is written (no background fiber).
 */
export const make = (settings: Partial<StoreSettings> = {}) =>
  Effect.gen(function* () {
    const config = { ...defaultStoreSettings, ...settings }
    const tables = new Map<string, Rows>()
    const register = makeNamespaceRegistry()

    const rowsOf = (owner: string, namespace: string): Rows => {
      const id = `${owner}\u0000${namespace}`
      let rows = tables.get(id)
      if (rows === undefined) {
        rows = new Map()
        tables.set(id, rows)
      }
      return rows
    }
    const ownerLive = (owner: string, now: number) => {
      let count = 0
      for (const [id, rows] of tables) {
        if (!id.startsWith(`${owner}\u0000`)) continue
        for (const row of rows.values()) if (isLive(row.expiresAt, now)) count++
      }
      return count
    }
    const liveCount = (rows: Rows, now: number) => {
      let count = 0
      for (const row of rows.values()) if (isLive(row.expiresAt, now)) count++
      return count
    }
    /** Drops the namespace's expired rows (they are invisible already); stands in for a sweeper. */
    const dropExpired = (rows: Rows, now: number) => {
      for (const row of rows.values()) if (!isLive(row.expiresAt, now)) rows.delete(row.key)
    }

    const open = <A, I>(options: NamespaceOptions<A, I>): Effect.Effect<NamespaceHandle<A>, StateStoreError> =>
      Effect.gen(function* () {
        const ns = yield* resolveNamespace(options)
        yield* register(ns)
        return makeHandle(ns, rowsOf(ns.owner, ns.namespace))
      })

    const makeHandle = <A>(ns: ResolvedNamespace<A>, rows: Rows): NamespaceHandle<A> => {
      const at = { owner: ns.owner, namespace: ns.namespace }
      const limit = (operation: string, detail: string) =>
        new StateStoreError({ reason: "LimitExceeded", operation, detail, ...at })

      /**
       * Applies `mutate` (through `put`/`del`, which keep an undo log) and then the caps; on
       * a cap failure every change is undone, so nothing stored changes.
       */
      const transact = <R>(
        operation: string,
        now: number,
        mutate: (put: (row: Row) => void, del: (key: string) => void) => R
      ): Either.Either<R, StateStoreError> => {
        const undo: Array<readonly [string, Row | undefined]> = []
        const put = (row: Row) => {
          undo.push([row.key, rows.get(row.key)])
          rows.set(row.key, row)
        }
        const del = (key: string) => {
          undo.push([key, rows.get(key)])
          rows.delete(key)
        }
        const rollback = (detail: string) => {
          for (let i = undo.length - 1; i >= 0; i--) {
            const [key, previous] = undo[i]!
            if (previous === undefined) rows.delete(key)
            else rows.set(key, previous)
          }
          return Either.left(limit(operation, detail))
        }
        const result = mutate(put, del)
        dropExpired(rows, now)
        if (liveCount(rows, now) > ns.maxEntries) {
          if (ns.overflow === "reject-new") return rollback(`namespace is full (${ns.maxEntries} live entries, overflow "reject-new")`)
          const excess = rows.size - ns.maxEntries
          if (excess > 0) for (const row of [...rows.values()].sort(oldestFirst).slice(0, excess)) del(row.key)
        }
        if (ownerLive(ns.owner, now) > config.ownerMaxEntries) return rollback(`owner holds more than ${config.ownerMaxEntries} live entries`)
        return Either.right(result)
      }

      const prepare = (operation: string, key: string, value: A, options: WriteOptions | undefined, now: number) => {
        const keyError = checkKey(ns, operation, key)
        if (keyError) return Either.left(keyError)
        return Either.flatMap(encodeValue(ns, operation, key, value), (json) =>
          Either.map(writeTimes(ns, operation, now, options), (times): Row => ({ key, json, ...times }))
        )
      }
      const liveRow = (key: string, now: number) => {
        const row = rows.get(key)
        return row !== undefined && isLive(row.expiresAt, now) ? row : undefined
      }
      const decodeRow = (operation: string, row: Row) =>
        Either.map(decodeValue(ns, operation, row.key, row.json), (value) => {
          const entry: StoredEntry<A> = { key: row.key, value, createdAt: row.createdAt, expiresAt: row.expiresAt }
          return entry
        }).pipe(
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

      const lookupEntry = (key: string) =>
        withKey("lookup", key, (now) => {
          const row = liveRow(key, now)
          return row === undefined ? Either.right(Option.none()) : Either.map(decodeRow("lookup", row), Option.some)
        })

      return {
        owner: ns.owner,
        namespace: ns.namespace,
        register: (key, value, options) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Either.flatMap(prepare("register", key, value, options, now), (row) =>
              transact("register", now, (put) => put(row))
            )
          ),
        registerIfAbsent: (key, value, options) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Either.flatMap(prepare("registerIfAbsent", key, value, options, now), (row) =>
              liveRow(key, now) !== undefined
                ? Either.right(false)
                : transact("registerIfAbsent", now, (put) => {
                    put(row)
                    return true
                  })
            )
          ),
        lookupEntry,
        lookup: (key) => Effect.map(lookupEntry(key), Option.map((entry) => entry.value)),
        consume: (key) =>
          withKey("consume", key, (now) => {
            const row = liveRow(key, now)
            if (row === undefined) return Either.right(Option.none())
            rows.delete(key)
            return Either.map(decodeRow("consume", row), (entry) => Option.some(entry.value))
          }),
        delete: (key) =>
          withKey("delete", key, (now) => {
            const live = liveRow(key, now) !== undefined
            rows.delete(key)
            return Either.right(live)
          }),
        writeBatch: (ops: ReadonlyArray<BatchOp<A>>) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            const prepared: Array<Row | { key: string; delete: true }> = []
            for (const op of lastStepPerKey(ops)) {
              const keyError = checkKey(ns, "writeBatch", op.key)
              if (keyError) return Effect.fail(keyError)
              if (op._tag === "Delete") {
                prepared.push({ key: op.key, delete: true })
                continue
              }
              const row = prepare("writeBatch", op.key, op.value, { createdAt: op.createdAt, expiresAt: op.expiresAt }, now)
              if (Either.isLeft(row)) return Effect.fail(row.left)
              prepared.push(row.right)
            }
            return transact("writeBatch", now, (put, del) => {
              for (const step of prepared) {
                if ("delete" in step) del(step.key)
                else put(step)
              }
            })
          }),
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

    return KeyedStore.of({ backend: "memory", open })
  })

/** The memory store as a layer (a fresh, empty store per build). */
export const layer = (settings: Partial<StoreSettings> = {}): Layer.Layer<KeyedStore> => Layer.effect(KeyedStore, make(settings))
