/**
 * The keyed store over any `@effect/sql` client. One implementation serves SQLite and
 * PostgreSQL: every statement is parameterised and written in the SQL both dialects share
 * (`ON CONFLICT … DO UPDATE … WHERE`, `DELETE … RETURNING`, row-value `IN`).
 *
 * @module
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { Array as Arr, Clock, Effect, Either, Layer, Option, Schedule } from "effect"
import type { BatchOp, NamespaceHandle, NamespaceOptions, StoredEntry, WriteOptions } from "../../KeyedStore.js"
import { KeyedStore, type StoreBackend } from "../../KeyedStore.js"
import { StateStoreError } from "../../StateStoreError.js"
import { migrate } from "./migrations.js"
import { fromSqlError } from "./sqlFailure.js"
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
import { forkSweeper } from "./sweeper.js"

/** Rows per multi-row statement: 6 parameters a row stays far below every driver's limit. */
const CHUNK = 500

interface DbRow {
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number | string
  readonly expires_at: number | string | null
}

type InsertRow = {
  readonly owner: string
  readonly namespace: string
  readonly entry_key: string
  readonly value_json: string
  readonly created_at: number
  readonly expires_at: number | null
}

/**
 * A locked SQLite file or a dropped connection is retried from the fiber, briefly, never by
 * blocking. The retry machinery is only entered after a first failure, so the success path
 * pays nothing for it.
 */
const retryUnavailable = <A, R>(effect: Effect.Effect<A, StateStoreError, R>) =>
  Effect.catchIf(
    effect,
    (error) => error.reason === "Unavailable",
    () =>
      Effect.retry(effect, {
        schedule: Schedule.exponential("5 millis").pipe(Schedule.intersect(Schedule.recurs(5))),
        while: (error) => error.reason === "Unavailable"
      })
  )

/**
 * Writes re-count a namespace (and its owner) only when an upper bound of its live rows —
 * the last exact count plus rows inserted since — could be past a limit, and at least every
 * this many inserts (or the namespace's `maxEntries`, if larger), so rows written by other
 * processes are noticed too. A count reads every row of the namespace, so recounting every
 * `maxEntries` inserts keeps its cost constant per insert.
 */
const RECOUNT_EVERY = 10_000

/**
 * Builds the store over the `SqlClient` in context: checks the schema version, runs the
 * migrations, and forks the expired-row sweeper in the current scope.
 */
export const make = (settings: Partial<StoreSettings> = {}) =>
  Effect.gen(function* () {
    const config = { ...defaultStoreSettings, ...settings }
    const sql = yield* SqlClient
    const backend: StoreBackend = sql.onDialectOrElse({ pg: () => "pg", orElse: () => "sqlite" })
    yield* migrate.pipe(
      Effect.mapError((error) =>
        error._tag === "StateStoreError"
          ? error
          : error._tag === "SqlError"
            ? fromSqlError("open", "write")(error)
            : new StateStoreError({ reason: "OpenFailed", operation: "open", detail: error.message, cause: error })
      ),
      retryUnavailable
    )
    const registerNamespace = makeNamespaceRegistry()

    /**
     * `@effect/sql` turns a failed COMMIT or ROLLBACK into a defect. Here it becomes the typed
     * failure it is; on SQLite the connection's transaction is rolled back so the next
     * operation does not find one still open.
     */
    const failedCommitIsAFailure = <R>(effect: Effect.Effect<R, SqlError | StateStoreError>) =>
      Effect.catchSomeDefect(effect, (defect) =>
        defect instanceof SqlError
          ? Option.some(
              Effect.zipRight(
                sql.onDialectOrElse({ sqlite: () => Effect.ignore(sql`ROLLBACK`), orElse: () => Effect.void }),
                Effect.fail(defect)
              )
            )
          : Option.none()
      )

    yield* forkSweeper(config, (limit) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        sql<{ entry_key: string }>`DELETE FROM channel_state_entries
          WHERE (owner, namespace, entry_key) IN (
            SELECT owner, namespace, entry_key FROM channel_state_entries
            WHERE expires_at <= ${now} LIMIT ${limit})
          RETURNING entry_key`
      ).pipe(
        Effect.map((rows) => rows.length),
        Effect.mapError(fromSqlError("sweep", "write")),
        retryUnavailable
      )
    )

    /**
     * The multi-row upsert for `rows` rows, built once per size: a batch then costs one
     * parameter array instead of building and compiling a statement fragment per row.
     * Parameterised like every other statement (only placeholders are generated).
     */
    const upsertTexts = new Map<number, string>()
    const placeholder = sql.onDialectOrElse({ pg: () => (i: number) => `$${i}`, orElse: () => (_: number) => "?" })
    const upsertStatement = (rows: number): string => {
      let text = upsertTexts.get(rows)
      if (text === undefined) {
        const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 6 }, (_, c) => placeholder(r * 6 + c + 1)).join(", ")})`)
        text = `INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ${tuples.join(", ")}
          ON CONFLICT (owner, namespace, entry_key) DO UPDATE SET
            value_json = excluded.value_json, created_at = excluded.created_at, expires_at = excluded.expires_at`
        upsertTexts.set(rows, text)
      }
      return text
    }

    /** The one-row upsert that only replaces an expired row: a claim (`RETURNING` a row when it won). */
    const claimStatement = `${upsertStatement(1)}
          WHERE channel_state_entries.expires_at IS NOT NULL AND channel_state_entries.expires_at <= ${placeholder(7)}
          RETURNING entry_key`

    // Upper bounds of live rows per owner (shared by its namespaces) — see enforceCaps.
    const ownerBounds = new Map<string, number>()

    const makeHandle = <A>(ns: ResolvedNamespace<A>): NamespaceHandle<A> => {
      const { owner, namespace } = ns
      let namespaceBound = Number.POSITIVE_INFINITY
      let insertsSinceCount = 0
      const recountEvery = Math.max(RECOUNT_EVERY, ns.maxEntries)
      const estimates = {
        add: (inserted: number) => {
          namespaceBound += inserted
          insertsSinceCount += inserted
          const ownerBound = (ownerBounds.get(owner) ?? Number.POSITIVE_INFINITY) + inserted
          ownerBounds.set(owner, ownerBound)
          return { namespace: namespaceBound, owner: ownerBound, recount: insertsSinceCount >= recountEvery }
        },
        counted: (namespaceLive: number, ownerLive: number) => {
          namespaceBound = namespaceLive
          insertsSinceCount = 0
          ownerBounds.set(owner, ownerLive)
        }
      }
      const at = { owner, namespace }
      const live = (now: number) => sql`(expires_at IS NULL OR expires_at > ${now})`
      const inNamespace = sql`owner = ${owner} AND namespace = ${namespace}`

      /** Runs one store operation: typed errors, retry when busy, a span. */
      const run = <R>(operation: string, kind: "read" | "write", effect: Effect.Effect<R, SqlError | StateStoreError>, key?: string) =>
        effect.pipe(
          failedCommitIsAFailure,
          Effect.mapError((error) =>
            error._tag === "SqlError" ? fromSqlError(operation, kind, key === undefined ? at : { ...at, key })(error) : error
          ),
          retryUnavailable,
          Effect.withSpan(`KeyedStore.${operation}`, { attributes: { owner, namespace, backend }, captureStackTrace: false })
        )
      const withValidKey = <R>(operation: string, key: string, f: () => Effect.Effect<R, SqlError | StateStoreError>, kind: "read" | "write" = "read") => {
        const problem = checkKey(ns, operation, key)
        return problem ? Effect.fail(problem) : run(operation, kind, Effect.suspend(f), key)
      }

      const toEntry = (operation: string, row: DbRow): Effect.Effect<StoredEntry<A>, StateStoreError | SqlError> =>
        Either.match(decodeValue(ns, operation, row.entry_key, row.value_json), {
          onLeft: (corrupt) =>
            Effect.zipRight(
              sql`DELETE FROM channel_state_entries WHERE ${inNamespace} AND entry_key = ${row.entry_key} AND value_json = ${row.value_json}`,
              Effect.fail(corrupt)
            ),
          onRight: (value) =>
            Effect.succeed({
              key: row.entry_key,
              value,
              createdAt: Number(row.created_at),
              expiresAt: row.expires_at === null ? undefined : Number(row.expires_at)
            })
        })

      const prepareRow = (
        operation: string,
        key: string,
        value: A,
        options: WriteOptions | undefined,
        now: number
      ): Either.Either<InsertRow, StateStoreError> => {
        const problem = checkKey(ns, operation, key)
        if (problem) return Either.left(problem)
        const json = encodeValue(ns, operation, key, value)
        if (Either.isLeft(json)) return Either.left(json.left)
        const times = writeTimes(ns, operation, now, options)
        if (Either.isLeft(times)) return Either.left(times.left)
        const { createdAt, expiresAt } = times.right
        return Either.right({ owner, namespace, entry_key: key, value_json: json.right, created_at: createdAt, expires_at: expiresAt ?? null })
      }

      const rowParams = (rows: ReadonlyArray<InsertRow>): Array<unknown> => {
        const params: Array<unknown> = []
        for (const row of rows) params.push(row.owner, row.namespace, row.entry_key, row.value_json, row.created_at, row.expires_at)
        return params
      }
      const upsert = (rows: ReadonlyArray<InsertRow>) => sql.unsafe(upsertStatement(rows.length), rowParams(rows))

      /**
       * Applies the overflow policy and the owner cap after `inserted` rows were written,
       * inside the write's transaction. Counts exactly only when an upper bound says a
       * limit may be passed (see {@link RECOUNT_EVERY}).
       */
      const enforceCaps = (operation: string, now: number, inserted: number) =>
        Effect.gen(function* () {
          const bound = estimates.add(inserted)
          if (bound.namespace <= ns.maxEntries && bound.owner <= config.ownerMaxEntries && !bound.recount) return
          const [counts] = yield* sql<{ ns_live: number | string; owner_live: number | string }>`SELECT
            (SELECT count(*) FROM channel_state_entries WHERE ${inNamespace} AND ${live(now)}) AS ns_live,
            (SELECT count(*) FROM channel_state_entries WHERE owner = ${owner} AND ${live(now)}) AS owner_live`
          const nsLive = Number(counts?.ns_live ?? 0)
          let ownerLive = Number(counts?.owner_live ?? 0)
          if (nsLive > ns.maxEntries) {
            if (ns.overflow === "reject-new") {
              return yield* new StateStoreError({
                reason: "LimitExceeded",
                operation,
                detail: `namespace is full (${ns.maxEntries} live entries, overflow "reject-new")`,
                ...at
              })
            }
            yield* sql`DELETE FROM channel_state_entries WHERE ${inNamespace} AND expires_at <= ${now}`
            yield* sql`DELETE FROM channel_state_entries WHERE ${inNamespace} AND entry_key IN (
              SELECT entry_key FROM channel_state_entries WHERE ${inNamespace}
              ORDER BY created_at, entry_key LIMIT ${nsLive - ns.maxEntries})`
            ownerLive -= nsLive - ns.maxEntries
          }
          if (ownerLive > config.ownerMaxEntries) {
            return yield* new StateStoreError({
              reason: "LimitExceeded",
              operation,
              detail: `owner holds more than ${config.ownerMaxEntries} live entries (other namespaces are never evicted for it)`,
              ...at
            })
          }
          estimates.counted(Math.min(nsLive, ns.maxEntries), ownerLive)
        })

      /**
       * A batch carrying more live rows than an `evict-oldest` namespace holds: its older rows
       * would be evicted by this very batch, so they are deleted instead of written and
       * evicted (the same end state, without the churn). Otherwise `rows` as given.
       */
      const keepNewest = (rows: Array<InsertRow>, deletes: Array<string>, now: number): ReadonlyArray<InsertRow> => {
        if (ns.overflow !== "evict-oldest") return rows
        const liveRows = rows.filter((row) => isLive(row.expires_at, now))
        if (liveRows.length <= ns.maxEntries) return rows
        const newestFirst = liveRows
          .map((row) => ({ row, createdAt: row.created_at, key: row.entry_key }))
          .sort((a, b) => oldestFirst(b, a))
          .map((ranked) => ranked.row)
        const kept = newestFirst.slice(0, ns.maxEntries)
        const keptKeys = new Set(kept.map((row) => row.entry_key))
        for (const row of rows) if (!keptKeys.has(row.entry_key)) deletes.push(row.entry_key)
        return kept
      }

      const lookupEntry = (key: string) =>
        withValidKey("lookup", key, () =>
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const rows = yield* sql<DbRow>`SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
              WHERE ${inNamespace} AND entry_key = ${key} AND ${live(now)}`
            const row = rows[0]
            return row === undefined ? Option.none() : Option.some(yield* toEntry("lookup", row))
          })
        )

      const writing = <R>(operation: string, key: string, value: A, options: WriteOptions | undefined, f: (row: InsertRow, now: number) => Effect.Effect<R, SqlError | StateStoreError>) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Either.match(prepareRow(operation, key, value, options, now), {
            onLeft: Effect.fail,
            onRight: (row) => run(operation, "write", sql.withTransaction(f(row, now)), key)
          })
        )

      return {
        owner,
        namespace,
        register: (key, value, options) =>
          writing("register", key, value, options, (row, now) => Effect.zipRight(upsert([row]), enforceCaps("register", now, 1))),
        registerIfAbsent: (key, value, options) =>
          writing("registerIfAbsent", key, value, options, (row, now) =>
            Effect.gen(function* () {
              const claimed = yield* sql.unsafe(claimStatement, [...rowParams([row]), now])
              if (claimed.length === 0) return false
              yield* enforceCaps("registerIfAbsent", now, 1)
              return true
            })
          ),
        lookupEntry,
        lookup: (key) => Effect.map(lookupEntry(key), Option.map((entry) => entry.value)),
        consume: (key) =>
          withValidKey(
            "consume",
            key,
            () =>
              Effect.gen(function* () {
                const now = yield* Clock.currentTimeMillis
                const rows = yield* sql<DbRow>`DELETE FROM channel_state_entries WHERE ${inNamespace} AND entry_key = ${key}
                  RETURNING entry_key, value_json, created_at, expires_at`
                const row = rows[0]
                if (row === undefined || (row.expires_at !== null && Number(row.expires_at) <= now)) return Option.none()
                return Option.some((yield* toEntry("consume", row)).value)
              }),
            "write"
          ),
        delete: (key) =>
          withValidKey(
            "delete",
            key,
            () =>
              Effect.gen(function* () {
                const now = yield* Clock.currentTimeMillis
                const rows = yield* sql<{ expires_at: number | string | null }>`DELETE FROM channel_state_entries
                  WHERE ${inNamespace} AND entry_key = ${key} RETURNING expires_at`
                const row = rows[0]
                return row !== undefined && (row.expires_at === null || Number(row.expires_at) > now)
              }),
            "write"
          ),
        writeBatch: (ops: ReadonlyArray<BatchOp<A>>) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            const deletes: Array<string> = []
            const rows: Array<InsertRow> = []
            for (const op of lastStepPerKey(ops)) {
              if (op._tag === "Delete") {
                const problem = checkKey(ns, "writeBatch", op.key)
                if (problem) return Effect.fail(problem)
                deletes.push(op.key)
                continue
              }
              const row = prepareRow("writeBatch", op.key, op.value, { createdAt: op.createdAt, expiresAt: op.expiresAt }, now)
              if (Either.isLeft(row)) return Effect.fail(row.left)
              rows.push(row.right)
            }
            const kept = keepNewest(rows, deletes, now)
            if (deletes.length === 0 && kept.length === 0) return Effect.void
            return run(
              "writeBatch",
              "write",
              sql.withTransaction(
                Effect.gen(function* () {
                  for (const keys of Arr.chunksOf(deletes, CHUNK)) {
                    yield* sql`DELETE FROM channel_state_entries WHERE ${inNamespace} AND ${sql.in("entry_key", keys)}`
                  }
                  for (const chunk of Arr.chunksOf(kept, CHUNK)) yield* upsert(chunk)
                  if (kept.length > 0) yield* enforceCaps("writeBatch", now, kept.length)
                })
              )
            )
          }),
        entries: run(
          "entries",
          "read",
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const rows = yield* sql<DbRow>`SELECT entry_key, value_json, created_at, expires_at FROM channel_state_entries
              WHERE ${inNamespace} AND ${live(now)} ORDER BY created_at, entry_key`
            const decoded = yield* Effect.forEach(rows, (row) => Effect.either(toEntry("entries", row)))
            const failed = decoded.find(Either.isLeft)
            return failed ? yield* Effect.fail(failed.left) : decoded.map((d) => (d as Either.Right<never, StoredEntry<A>>).right)
          })
        ),
        size: run(
          "size",
          "read",
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.map(
              sql<{ n: number | string }>`SELECT count(*) AS n FROM channel_state_entries WHERE ${inNamespace} AND ${live(now)}`,
              (rows) => Number(rows[0]?.n ?? 0)
            )
          )
        ),
        clear: run(
          "clear",
          "write",
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            sql.withTransaction(
              Effect.gen(function* () {
                const rows = yield* sql<{ n: number | string }>`SELECT count(*) AS n FROM channel_state_entries WHERE ${inNamespace} AND ${live(now)}`
                yield* sql`DELETE FROM channel_state_entries WHERE ${inNamespace}`
                return Number(rows[0]?.n ?? 0)
              })
            )
          )
        )
      }
    }

    const open = <A, I>(options: NamespaceOptions<A, I>): Effect.Effect<NamespaceHandle<A>, StateStoreError> =>
      Effect.gen(function* () {
        const ns = yield* resolveNamespace(options)
        yield* registerNamespace(ns)
        return makeHandle(ns)
      })

    return KeyedStore.of({ backend, open })
  })

/** The store as a layer over the `SqlClient` in context. */
export const layer = (settings: Partial<StoreSettings> = {}): Layer.Layer<KeyedStore, StateStoreError, SqlClient> =>
  Layer.scoped(KeyedStore, make(settings))
