/**
 * A namespace handle of the SQL store: validation, the statements, the lock each write takes,
 * caps, retries and spans, for one owner + namespace.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Array as Arr, Clock, Effect, Either, Option, type Scope } from "effect"
import type { BatchOp, NamespaceHandle, RefusedWrite, StoredEntry, WriteBatchResult, WriteOptions } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { makeCoalescer } from "./coalescer.js"
import { type BusyGate, retryTransient, type Transient, transientReason } from "./retry.js"
import { makeCaps } from "./sqlCaps.js"
import { classify, fromSqlError } from "./sqlFailure.js"
import { type DbRow, type DeletedRow, execute, executeInTransaction, makeStatements, type RowTimes, type RowToWrite, type SqlText, type StatementDialect } from "./sqlStatements.js"
import type { WriteTransactions } from "./sqlTransaction.js"
import { checkKey, decodeValue, encodeJson, encodeValue, isLive, lastStepPerKey, oldestFirst, type ResolvedNamespace, writeTimes, writeTimesOf } from "./storeRules.js"

/** Rows per multi-row statement: 6 parameters a row stays far below every driver's limit. */
const CHUNK = 500

/** A register step of a batch, ready for the multi-row upsert (or, with `orEqualTo`, the conditional one). */
interface BatchRow {
  readonly key: string
  readonly json: string
  readonly createdAt: number
  readonly expiresAt: number | null
  readonly orEqualTo?: string
}

/** What every handle of one store shares. */
export interface SqlHandleContext {
  readonly sql: SqlClient
  readonly dialect: StatementDialect
  readonly writes: WriteTransactions
  readonly ownerMaxEntries: number | undefined
  readonly lockWaitMillis: number
  /** The store's scope: its background fibers (the claim batchers) end with it. */
  readonly scope: Scope.Scope
  /** Where operations on a busy database queue behind one poller (SQLite). */
  readonly gate?: BusyGate | undefined
  /** Told when a statement failed to prepare because the database was busy (see `SqlStoreHooks`). */
  readonly onStatementStuck?: (() => void) | undefined
}

/** The lock a write of this namespace takes: the namespace's, or the owner's when an owner cap spans its namespaces. */
export const lockKeyOf = (owner: string, namespace: string, ownerMaxEntries: number | undefined) =>
  ownerMaxEntries === undefined ? `${owner}/${namespace}` : owner

/** A defect (a driver or file-system throw nobody mapped) as the typed failure every store operation promises. */
export const unexpectedFailure = (operation: string, kind: "read" | "write", defect: unknown, where: { owner?: string; namespace?: string } = {}) =>
  new StateStoreError({
    reason: kind === "read" ? "ReadFailed" : "WriteFailed",
    operation,
    detail: `unexpected store error: ${defect instanceof Error ? defect.message : String(defect)}`,
    cause: defect,
    ...where
  })

/** Builds the handle of the resolved namespace `ns`; its claim batcher runs in the store's scope. */
export const makeSqlHandle = <A>(ctx: SqlHandleContext, ns: ResolvedNamespace<A>): Effect.Effect<NamespaceHandle<A>> =>
  Effect.gen(function* () {
  const { sql, dialect, writes } = ctx
  const { owner, namespace } = ns
  const at = { owner, namespace }
  const statements = makeStatements(dialect, owner, namespace)
  const caps = makeCaps(sql, statements, ns, ctx.ownerMaxEntries)
  const lockKey = lockKeyOf(owner, namespace, ctx.ownerMaxEntries)
  const exec = <R extends object = Record<string, unknown>>(q: SqlText) => execute<R>(sql, q)
  // Reads never wait on the gate: SQLite's write lock does not block readers (WAL).
  const retry = { read: retryTransient(ctx.lockWaitMillis), write: retryTransient(ctx.lockWaitMillis, ctx.gate) }
  /**
   * Retried: contention and dropped connections — except a statement that failed to prepare
   * while the database was busy, which this connection keeps failing (it is replaced instead).
   */
  const transient = (error: SqlError | StateStoreError): Transient => {
    if (error._tag !== "SqlError") return transientReason(error)
    const kind = classify(error).kind
    if (kind === "busy" && error.message.startsWith("Failed to prepare")) {
      ctx.onStatementStuck?.()
      return undefined
    }
    return kind === "failed" ? undefined : kind
  }

  /** Runs one store operation: contention waited out, typed errors (defects included), a span. */
  const run = <R>(operation: string, kind: "read" | "write", effect: Effect.Effect<R, SqlError | StateStoreError>, key?: string) =>
    retry[kind](effect, transient).pipe(
      Effect.mapError((error) => (error._tag === "SqlError" ? fromSqlError(operation, kind, key === undefined ? at : { ...at, key })(error) : error)),
      Effect.catchAllDefect((defect) => Effect.fail(unexpectedFailure(operation, kind, defect, at))),
      Effect.withSpan(`KeyedStore.${operation}`, { attributes: { owner, namespace, backend: dialect.backend }, captureStackTrace: false })
    )
  const withValidKey = <R>(operation: string, key: string, kind: "read" | "write", f: (now: number) => Effect.Effect<R, SqlError | StateStoreError>) => {
    const problem = checkKey(ns, operation, key)
    return problem ? Effect.fail(problem) : run(operation, kind, Effect.flatMap(Clock.currentTimeMillis, f), key)
  }

  /** A deleted row that no longer decodes: removed (only while it still holds that text) and reported `Corrupt`. */
  const toEntry = (operation: string, row: DbRow): Effect.Effect<StoredEntry<A>, StateStoreError | SqlError> =>
    Either.match(decodeValue(ns, operation, row.entry_key, row.value_json), {
      onLeft: (corrupt) => Effect.zipRight(writes.statement(lockKey, exec(statements.deleteCorrupt(row.entry_key, row.value_json))), Effect.fail(corrupt)),
      onRight: (value) =>
        Effect.succeed({
          key: row.entry_key,
          value,
          createdAt: Number(row.created_at),
          expiresAt: row.expires_at === null ? undefined : Number(row.expires_at)
        })
    })

  /** When a write is stamped: explicit times as given; otherwise now (+ TTL), by the database's clock when it decides. */
  const rowTimes = (operation: string, now: number, options: WriteOptions | undefined): Either.Either<RowTimes, StateStoreError> =>
    Either.map(writeTimes(ns, operation, now, options), (t): RowTimes =>
      dialect.databaseClock && options?.createdAt === undefined && options?.expiresAt === undefined
        ? { _tag: "FromNow", ttlMillis: t.expiresAt === undefined ? null : t.expiresAt - t.createdAt }
        : { _tag: "At", createdAt: t.createdAt, expiresAt: t.expiresAt ?? null }
    )
  const prepareRow = (operation: string, key: string, value: A, options: WriteOptions | undefined, now: number): Either.Either<RowToWrite, StateStoreError> => {
    const problem = checkKey(ns, operation, key)
    if (problem) return Either.left(problem)
    return Either.flatMap(encodeValue(ns, operation, key, value), (json) => Either.map(rowTimes(operation, now, options), (times) => ({ key, json, times })))
  }
  const writing = <R>(operation: string, key: string, value: A, options: WriteOptions | undefined, f: (row: RowToWrite, now: number) => Effect.Effect<R, SqlError | StateStoreError>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Either.match(prepareRow(operation, key, value, options, now), { onLeft: Effect.fail, onRight: (row) => run(operation, "write", f(row, now), key) })
    )

  const lookupEntry = (key: string) =>
    withValidKey("lookup", key, "read", (now) =>
      Effect.flatMap(exec<DbRow>(statements.lookup(now, key)), (rows) => (rows[0] === undefined ? Effect.succeed(Option.none()) : Effect.map(toEntry("lookup", rows[0]), Option.some)))
    )

  /** Deletes `key`, returning the row when it was live. */
  const take = (now: number, key: string) =>
    Effect.map(writes.statement(lockKey, exec<DeletedRow>(statements.take(now, key))), (rows) => {
      const row = rows[0]
      return row !== undefined && (row.live === true || row.live === 1) ? row : undefined
    })

  /** The JSON a value encodes to, as the store compares it. */
  const expectedJson = (operation: string, key: string, expected: A) => encodeValue(ns, operation, key, expected)

  /**
   * The time a write's liveness is judged by, inside its transaction: the host's `now` with the
   * application clock; with the database's clock, the database's own time — read only when a
   * row carries an explicit expiry that could already have passed (this host's clock may be
   * ahead of the database's or behind it, and the database decides).
   */
  const judgeTime = (now: number, expiries: ReadonlyArray<number | null>) =>
    !dialect.databaseClock || expiries.every((expiresAt) => expiresAt === null)
      ? Effect.succeed(now)
      : Effect.map(exec<{ now: number | string }>(statements.now(now)), (rows) => Number(rows[0]?.now ?? now))

  /**
   * An `evict-oldest` batch carrying more live rows than the namespace holds: its older rows
   * would be evicted by this very batch, so they are deleted instead of written and evicted
   * (the same end state, without the churn).
   */
  const keepNewest = <R extends { key: string; createdAt: number; expiresAt: number | null }>(rows: Array<R>, deletes: Array<string>, now: number): Array<R> => {
    // Under an owner cap fewer rows may fit than the namespace holds: each is then written or refused, never dropped.
    // With the database's clock, which rows are live is the database's to say: they are written, then evicted.
    if (ns.overflow !== "evict-oldest" || caps.refusesWhenFull || dialect.databaseClock || rows.length <= ns.maxEntries) return rows
    const liveRows = rows.filter((row) => isLive(row.expiresAt, now))
    if (liveRows.length <= ns.maxEntries) return rows
    const kept = [...liveRows].sort((a, b) => oldestFirst(b, a)).slice(0, ns.maxEntries)
    const keptKeys = new Set(kept.map((row) => row.key))
    for (const row of rows) if (!keptKeys.has(row.key)) deletes.push(row.key)
    return kept
  }

  /**
   * A batch's register step, encoded with its explicit timestamps (and the JSON its condition
   * compares to), or why it is refused. Straight-line code: it runs once per row of a flush.
   */
  const batchRow = (op: Extract<BatchOp<A>, { readonly _tag: "Register" }>, now: number): BatchRow | StateStoreError => {
    const json = encodeJson(ns, "writeBatch", op.key, op.value)
    if (typeof json !== "string") return json
    const times = writeTimesOf(ns, "writeBatch", now, { createdAt: op.createdAt, expiresAt: op.expiresAt })
    if (times instanceof StateStoreError) return times
    if (op.ifAbsentOr === undefined) return { key: op.key, json, createdAt: times.createdAt, expiresAt: times.expiresAt ?? null }
    const orEqualTo = encodeJson(ns, "writeBatch", op.key, op.ifAbsentOr)
    if (typeof orEqualTo !== "string") return orEqualTo
    return { key: op.key, json, createdAt: times.createdAt, expiresAt: times.expiresAt ?? null, orEqualTo }
  }

  const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

  /**
   * The claims waiting together, in one transaction: one multi-row statement writes each key
   * that has no live row (the first claim of a key in the batch takes part; a second one
   * loses to it); a `reject-new` namespace or an owner cap takes as many new keys as fit.
   */
  const claimBatch = (rows: ReadonlyArray<RowToWrite>) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const results: Array<boolean | StateStoreError> = rows.map(() => false)
      const first = new Map<string, number>()
      for (const [i, row] of rows.entries()) if (!first.has(row.key)) first.set(row.key, i)
      let candidates = [...first.values()]
      if (caps.refusesWhenFull) {
        const live = new Set<string>()
        for (const chunk of Arr.chunksOf(candidates, CHUNK)) {
          for (const found of yield* exec<{ entry_key: string }>(statements.liveKeys(now, chunk.map((i) => rows[i]!.key)))) live.add(found.entry_key)
        }
        candidates = candidates.filter((i) => !live.has(rows[i]!.key))
        // A row expired on arrival takes no room: it is invisible at once, and swept.
        const judged = yield* judgeTime(
          now,
          candidates.map((i) => {
            const times = rows[i]!.times
            return times._tag === "At" ? times.expiresAt : null
          })
        )
        const deadOnArrival = (i: number) => {
          const times = rows[i]!.times
          return times._tag === "At" && !isLive(times.expiresAt, judged)
        }
        let fits = yield* caps.room(now, candidates.filter((i) => !deadOnArrival(i)).length)
        candidates = candidates.filter((i) => {
          if (deadOnArrival(i) || fits-- > 0) return true
          results[i] = caps.full("registerIfAbsent", rows[i]!.key, ns.overflow === "reject-new" ? "namespace" : "owner")
          return false
        })
      }
      let anyWon = false
      for (const chunk of Arr.chunksOf(candidates, CHUNK)) {
        const won = new Set((yield* exec<{ entry_key: string }>(statements.claimMany(now, chunk.map((i) => rows[i]!)))).map((r) => r.entry_key))
        for (const i of chunk) results[i] = won.has(rows[i]!.key)
        anyWon ||= won.size > 0
      }
      if (anyWon) yield* caps.enforce("registerIfAbsent", now)
      return results
    })
  const claims = yield* makeCoalescer(
    (rows: ReadonlyArray<RowToWrite>) => run("registerIfAbsent", "write", writes.transaction(lockKey, claimBatch(rows))),
    {
      maxBatch: CHUNK,
      scope: ctx.scope,
      closed: new StateStoreError({ reason: "Unavailable", operation: "registerIfAbsent", detail: "the store was closed", ...at })
    }
  )

  const writeBatch = (ops: ReadonlyArray<BatchOp<A>>): Effect.Effect<WriteBatchResult, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const refused: Array<RefusedWrite> = []
      const deletes: Array<string> = []
      const conditionalDeletes: Array<{ key: string; json: string }> = []
      let rows: Array<BatchRow> = []
      const conditionalRows: Array<{ row: RowToWrite; orEqualTo: string }> = []
      for (const op of lastStepPerKey(ops)) {
        const problem = checkKey(ns, "writeBatch", op.key)
        if (problem) {
          refused.push({ key: String(op.key), error: problem })
          continue
        }
        if (op._tag === "Delete") {
          if (op.ifEqual === undefined) {
            deletes.push(op.key)
            continue
          }
          const json = expectedJson("writeBatch", op.key, op.ifEqual)
          if (Either.isLeft(json)) refused.push({ key: op.key, error: json.left })
          else conditionalDeletes.push({ key: op.key, json: json.right })
          continue
        }
        const row = batchRow(op, now)
        if (row instanceof StateStoreError) refused.push({ key: op.key, error: row })
        else if (row.orEqualTo === undefined) rows.push(row)
        else conditionalRows.push({ row: { key: row.key, json: row.json, times: { _tag: "At", createdAt: row.createdAt, expiresAt: row.expiresAt } }, orEqualTo: row.orEqualTo })
      }
      rows = keepNewest(rows, deletes, now)
      // One key order on every backend and in every process: concurrent batches never deadlock.
      deletes.sort()
      rows.sort(byKey)
      conditionalDeletes.sort(byKey)
      conditionalRows.sort((a, b) => byKey(a.row, b.row))
      if (deletes.length + conditionalDeletes.length + rows.length + conditionalRows.length === 0) return Effect.succeed({ refused })

      const body = Effect.gen(function* () {
        const refusedHere: Array<RefusedWrite> = []
        for (const keys of Arr.chunksOf(deletes, CHUNK)) yield* exec(statements.deleteKeys(keys))
        for (const { key, json } of conditionalDeletes) yield* exec(statements.deleteIfEqual(now, key, json))
        let accepted = rows
        if (rows.length > 0 && caps.refusesWhenFull) {
          const live = new Set<string>()
          for (const chunk of Arr.chunksOf(rows, CHUNK)) {
            for (const found of yield* exec<{ entry_key: string }>(statements.liveKeys(now, chunk.map((row) => row.key)))) live.add(found.entry_key)
          }
          // A row expired on arrival takes no room: it is invisible at once, and swept.
          const judged = yield* judgeTime(
            now,
            rows.map((row) => row.expiresAt)
          )
          let fits = yield* caps.room(now, rows.filter((row) => !live.has(row.key) && isLive(row.expiresAt, judged)).length)
          accepted = []
          for (const row of rows) {
            if (live.has(row.key) || !isLive(row.expiresAt, judged) || fits-- > 0) accepted.push(row)
            else refusedHere.push({ key: row.key, error: caps.full("writeBatch", row.key, ns.overflow === "reject-new" ? "namespace" : "owner") })
          }
        }
        for (const chunk of Arr.chunksOf(accepted, CHUNK)) yield* executeInTransaction(sql, statements.upsertMany(chunk))
        if (accepted.length > 0) yield* caps.enforce("writeBatch", now)
        for (const { row, orEqualTo } of conditionalRows) {
          // Each in a savepoint: one that would overflow a cap is refused alone.
          const landed = yield* Effect.either(
            sql.withTransaction(
              Effect.flatMap(exec(statements.upsertIfAbsent(now, row, orEqualTo)), (written) =>
                written.length > 0 ? caps.enforce("writeBatch", now, row.key) : Effect.void
              )
            )
          )
          if (Either.isLeft(landed)) {
            if (landed.left._tag === "StateStoreError" && landed.left.reason === "LimitExceeded") refusedHere.push({ key: row.key, error: landed.left })
            else return yield* Effect.fail(landed.left)
          }
        }
        return refusedHere
      })
      return Effect.map(run("writeBatch", "write", writes.transaction(lockKey, body)), (refusedHere) => ({ refused: refused.concat(refusedHere) }))
    })

  return {
    owner,
    namespace,
    register: (key, value, options) =>
      writing("register", key, value, options, (row, now) =>
        writes.transaction(lockKey, Effect.zipRight(exec(statements.upsert(now, row)), caps.enforce("register", now, key)))
      ),
    registerIfAbsent: (key, value, options) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Either.match(prepareRow("registerIfAbsent", key, value, options, now), {
          onLeft: Effect.fail,
          onRight: (row) =>
            // A live row answers at once, without the lock (a read: SQLite's write lock does not
            // block it): under contention most claimers are losers, and they need not queue.
            Effect.flatMap(run("registerIfAbsent", "read", exec(statements.lookup(now, key)), key), (live) =>
              live.length > 0 ? Effect.succeed(false) : Effect.flatMap(claims.submit(row), (won) => (typeof won === "boolean" ? Effect.succeed(won) : Effect.fail(won)))
            )
        })
      ),
    replaceIfEqual: (key, expected, value, options) =>
      Either.match(expectedJson("replaceIfEqual", key, expected), {
        onLeft: Effect.fail,
        onRight: (json) =>
          writing("replaceIfEqual", key, value, options, (row, now) =>
            // An update adds no row: no cap to check, no counter to lock.
            Effect.map(exec(statements.replaceIfEqual(now, row, json)), (written) => written.length > 0)
          )
      }),
    deleteIfEqual: (key, expected) =>
      Either.match(expectedJson("deleteIfEqual", key, expected), {
        onLeft: Effect.fail,
        onRight: (json) =>
          withValidKey("deleteIfEqual", key, "write", (now) =>
            Effect.map(writes.statement(lockKey, exec(statements.deleteIfEqual(now, key, json))), (deleted) => deleted.length > 0)
          )
      }),
    lookupEntry,
    lookup: (key) => Effect.map(lookupEntry(key), Option.map((entry) => entry.value)),
    consume: (key) =>
      withValidKey("consume", key, "write", (now) =>
        Effect.flatMap(take(now, key), (row) => (row === undefined ? Effect.succeed(Option.none()) : Effect.map(toEntry("consume", row), (entry) => Option.some(entry.value))))
      ),
    delete: (key) => withValidKey("delete", key, "write", (now) => Effect.map(take(now, key), (row) => row !== undefined)),
    writeBatch,
    entries: run(
      "entries",
      "read",
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* exec<DbRow>(statements.entries(now))
        const decoded = yield* Effect.forEach(rows, (row) => Effect.either(toEntry("entries", row)))
        const failed = decoded.find(Either.isLeft)
        return failed ? yield* Effect.fail(failed.left) : decoded.map((d) => (d as Either.Right<never, StoredEntry<A>>).right)
      })
    ),
    size: run(
      "size",
      "read",
      Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.map(exec<{ n: number | string }>(statements.size(now)), (rows) => Number(rows[0]?.n ?? 0)))
    ),
    clear: run(
      "clear",
      "write",
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        writes.transaction(
          lockKey,
          Effect.flatMap(exec<{ n: number | string }>(statements.size(now)), (rows) => Effect.as(exec(statements.deleteAll()), Number(rows[0]?.n ?? 0)))
        )
      )
    )
  } satisfies NamespaceHandle<A>
  })
