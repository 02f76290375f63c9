/**
 * The batch writes of a SQL namespace handle: `writeBatch` (how write-behind mirrors flush)
 * and the claim batcher, which lands concurrent `registerIfAbsent` calls of one namespace
 * together: in one statement while the counts leave room for them all, else in one transaction.
 *
 * @internal
 */
import * as Arr from "effect/Array"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { BatchOp, RefusedWrite, WriteBatchResult } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { readSteps } from "./bulkRules.js"
import { makeCoalescer } from "./coalescer.js"
import { classify } from "./sqlFailure.js"
import { CHUNK, type SqlHandleCore } from "./sqlHandleCore.js"
import type { RowToWrite } from "./sqlStatements.js"
import { checkKey, isLive, lastStepPerKey, oldestFirst, writeTimesOf } from "./storeRules.js"
import { encodeJson } from "./valueRules.js"

/** A register step of a batch, ready for the multi-row upsert (or, with `orEqualTo`, the conditional one). */
interface BatchRow {
  readonly key: string
  readonly json: string
  readonly createdAt: number
  readonly expiresAt: number | null
  readonly orEqualTo?: string
}

const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

/** The first claim of each key among `rows`: the one that takes part in a one-statement claim (a later claim of the key loses to it). */
const firstClaimOfEachKey = (rows: ReadonlyArray<RowToWrite>) => {
  const first = new Map<string, RowToWrite>()
  for (const row of rows) if (!first.has(row.key)) first.set(row.key, row)
  return first
}

/** Each claim's answer once a statement wrote the keys `won`: `true` for the first claim of a key written, `false` for every other. */
const answersOf = (rows: ReadonlyArray<RowToWrite>, first: ReadonlyMap<string, RowToWrite>, won: ReadonlyArray<string>) => {
  const written = new Set(won)
  return rows.map((row) => first.get(row.key) === row && written.has(row.key))
}

/** The batch writes of the namespace `core` is for; the claim batcher runs in the store's scope. */
export const makeSqlBatchWrites = <A>(core: SqlHandleCore<A>) =>
  Effect.gen(function* () {
  const { ctx, ns, at, statements, caps, lockKey, exec, read, run, judgeTime, expectedJson } = core
  const { sql, writes, dialect } = ctx

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
      // Room for every claim: the claims need no check of which keys are live, and no cap check after.
      const roomForAll = caps.refusesWhenFull && (yield* caps.roomForAll(candidates.length))
      if (caps.refusesWhenFull && !roomForAll) {
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
      if (anyWon && !roomForAll) yield* caps.enforce("registerIfAbsent", now)
      return results
    })
  /**
   * PostgreSQL without an owner cap: the claims waiting together in one autocommit statement
   * under the namespace's lock (`claimIfRoom`: one round trip), the first claim of a key taking
   * part. Only when the namespace's counter says they all fit; when it does not (or the
   * namespace has no counter yet) nothing was written and the transaction decides
   * (`claimBatch`, which makes room or refuses). Under an owner cap every claim is that
   * transaction: the owner's total spans counter rows a statement's snapshot may not see yet.
   */
  const claimAtOnce = (rows: ReadonlyArray<RowToWrite>) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const first = firstClaimOfEachKey(rows)
      const answers = yield* writes.single<{ candidates: number | string; room_count: number | string | null; won: ReadonlyArray<string> | null }>(lockKey, (lock) =>
        // `single` hands PostgreSQL's statements their lock: this path runs on PostgreSQL only.
        statements.claimIfRoom(now, [...first.values()], lock!, ns.maxEntries)
      )
      const answer = answers[0]
      const candidates = Number(answer?.candidates ?? 0)
      if (candidates > 0 && (answer?.room_count == null || Number(answer.room_count) + candidates > ns.maxEntries)) return yield* writes.transaction(lockKey, claimBatch(rows))
      return answersOf(rows, first, answer?.won ?? [])
    })
  /**
   * PostgreSQL under an owner cap, when the database has the claim function: the claims
   * waiting together in one call of it (`claimInFunction`: one round trip), the first claim of a
   * key taking part. When the counters leave no room for all of them it wrote nothing, and the
   * transaction decides (`claimBatch`: it makes room or refuses).
   */
  const claimInFunction = (rows: ReadonlyArray<RowToWrite>) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const first = firstClaimOfEachKey(rows)
      const answers = yield* writes.single<{ candidates: number; room: boolean; won: ReadonlyArray<string> | null }>(lockKey, (lock) =>
        // `single` hands PostgreSQL's statements their lock: this path runs on PostgreSQL only.
        statements.claimInFunction(now, [...first.values()], lock!, ns.maxEntries, ctx.ownerMaxEntries)
      )
      if (answers[0]?.room === false) return yield* writes.transaction(lockKey, claimBatch(rows))
      return answersOf(rows, first, answers[0]?.won ?? [])
    })
  /**
   * SQLite: the claims waiting together in one autocommit statement while the counts leave
   * room for all of them (`claimIfCountsAllow`), the first claim of a key taking part. When it
   * wrote nothing — the counts leave no room, or every key is live — the transaction decides
   * (`claimBatch`: it makes room, refuses, or finds the keys taken).
   */
  const claimInOneStatement = (rows: ReadonlyArray<RowToWrite>) =>
    Effect.catchIf(claimInOneStatementOnce(rows), (error) => error._tag === "SqlError" && classify(error).kind === "busy", (busy) =>
      // Found the file locked: when every key of the batch has turned live since the claims looked (they queued), they all lose,
      // without waiting for the lock (and never Busy); otherwise the contention is waited out (each attempt looks again).
      Effect.flatMap(allLive(rows), Option.match({ onNone: () => Effect.fail(busy), onSome: Effect.succeed }))
    )
  /** `Some` (every claim `false`) when every key of `rows` has a live row: a read, never behind the lock nor the busy gate. */
  const allLive = (rows: ReadonlyArray<RowToWrite>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(read<{ entry_key: string }>(statements.liveKeys(now, [...new Set(rows.map((row) => row.key))])), (found) => {
        const live = new Set(found.map((r) => r.entry_key))
        return rows.every((row) => live.has(row.key)) ? Option.some(rows.map((): boolean | StateStoreError => false)) : Option.none()
      })
    )
  const claimInOneStatementOnce = (rows: ReadonlyArray<RowToWrite>) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const first = firstClaimOfEachKey(rows)
      const written = yield* exec<{ entry_key: string }>(statements.claimIfCountsAllow(now, [...first.values()], ns.maxEntries, ctx.ownerMaxEntries))
      if (written.length === 0) return yield* writes.transaction(lockKey, claimBatch(rows))
      return answersOf(
        rows,
        first,
        written.map((row) => row.entry_key)
      )
    })
  /** Whether `key` has a live row: a read, which SQLite's write lock never blocks. */
  const isLiveKey = (now: number, key: string) => Effect.map(read(statements.lookup(now, key)), (rows) => rows.length > 0)
  /**
   * SQLite, a claim that came when no other claim of the namespace was waiting or running: the
   * one-statement claim first, without the look at its key that claims waiting for others make
   * (one statement where there were two). Only when it wrote nothing, or found the database
   * locked by another connection, is its key read: a live key answers `false` at once — never
   * waiting for the lock, never `Busy` — and otherwise the transaction decides, or the
   * contention is waited out as for any write (each attempt reading the key again).
   */
  const claimAlone = (row: RowToWrite) =>
    run(
      "registerIfAbsent",
      "write",
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const attempt = yield* Effect.either(exec<{ entry_key: string }>(statements.claimIfCountsAllow(now, [row], ns.maxEntries, ctx.ownerMaxEntries)))
        if (Either.isRight(attempt) && attempt.right.length > 0) return true
        const busy = Either.isLeft(attempt) && classify(attempt.left).kind === "busy"
        if (Either.isLeft(attempt) && !busy) return yield* Effect.fail(attempt.left)
        if (yield* isLiveKey(now, row.key)) return false
        if (Either.isLeft(attempt)) return yield* Effect.fail(attempt.left)
        return (yield* writes.transaction(lockKey, claimBatch([row])))[0]!
      }),
      row.key,
      // The database known busy (another write of the store waits out the lock): a live key answers before the claim queues behind it.
      liveAnswer(row)
    )
  /** `Some(false)` when `row`'s key has a live row (a read: never behind the lock, nor the busy gate). */
  const liveAnswer = (row: RowToWrite) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.map(isLiveKey(now, row.key), (live) => (live ? Option.some(false) : Option.none())))
  /** A claim about to wait for others: its key's live row first, which answers it at once (under contention most claimers lose). */
  const lookFirst = (row: RowToWrite) => run("registerIfAbsent", "read", liveAnswer(row), row.key)
  /** PostgreSQL's claims: one statement (`claimAtOnce`, or under an owner cap `claimInFunction`), or without the function the transaction. */
  const pgClaim = ctx.ownerMaxEntries === undefined ? claimAtOnce : ctx.claimFunction ? claimInFunction : undefined
  /** Whether a claim asks for its key's live row before it is submitted (PostgreSQL's transaction); the statements look within themselves, SQLite's claims as above. */
  const claimsLookFirst = dialect.backend === "pg" && pgClaim === undefined
  const claims = yield* makeCoalescer(
    (rows: ReadonlyArray<RowToWrite>) =>
      run(
        "registerIfAbsent",
        "write",
        dialect.backend === "sqlite" ? claimInOneStatement(rows) : pgClaim !== undefined ? pgClaim(rows) : writes.transaction(lockKey, claimBatch(rows)),
        undefined,
        dialect.backend === "sqlite" ? allLive(rows) : undefined
      ),
    {
      maxBatch: CHUNK,
      scope: ctx.scope,
      closed: new StateStoreError({ reason: "Unavailable", operation: "registerIfAbsent", detail: "the store was closed", ...at }),
      ...(dialect.backend === "sqlite" ? { alone: claimAlone, beforeQueued: lookFirst } : {})
    }
  )

  const writeBatch = (ops: ReadonlyArray<BatchOp<A>>): Effect.Effect<WriteBatchResult, StateStoreError> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const steps = readSteps(ns, ops)
      if (steps instanceof StateStoreError) return Effect.fail(steps)
      const refused: Array<RefusedWrite> = []
      const deletes: Array<string> = []
      const conditionalDeletes: Array<{ key: string; json: string }> = []
      let rows: Array<BatchRow> = []
      const conditionalRows: Array<{ row: RowToWrite; orEqualTo: string }> = []
      for (const op of lastStepPerKey(steps)) {
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
        for (const chunk of Arr.chunksOf(accepted, CHUNK)) yield* ctx.writes.execute(statements.upsertMany(chunk))
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

  return { writeBatch, claims, claimsLookFirst }
  })
