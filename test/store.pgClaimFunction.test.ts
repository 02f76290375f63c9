/**
 * Tries to break PostgreSQL's one-call claim under an owner cap (the claim function, see
 * migrations' `CREATE_CLAIM_FUNCTION`). What a single statement could not do, and why such
 * claims were a transaction: see what the lock's previous holder committed while the claim
 * waited for the owner's lock. So a second connection holds that lock (as another process's
 * write transaction does), changes rows — another namespace's first rows (a counter row the
 * claim's snapshot could not have), the claimed key itself, rows deleted to make room — and
 * commits only once the claim is seen waiting for the lock in `pg_locks`. Each on the database's
 * clock (the production default) and on the application's.
 *
 * Then: a role that may not create the function still opens the store, and its claims still
 * hold the cap (the transaction decides them); the function does not change the schema version
 * (older channel-states open the database).
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Schema } from "effect"
import type { NamespaceHandle } from "../src/KeyedStore.js"
import * as PgStore from "../src/layers/store/PgStore.js"
import { SCHEMA_VERSION, storedSchemaVersion } from "../src/layers/store/migrations.js"
import { CLAIM_FUNCTION } from "../src/layers/store/sqlStatements.js"
import { freshPgDatabase, pgClientLayer, pgUrl, storeOf } from "./support/backends.js"
import { dropClaimFunction, hasClaimFunction, insertEntry, query, rawClient, roleWithoutCreate, whileLockHeld } from "./support/pgSessions.js"
import { describePg } from "./support/describePg.js"

const OWNER = "o"
const TTL = 600_000

const insertRow = (client: Connection, namespace: string, key: string, value: number, expiresAt = Date.now() + TTL) =>
  insertEntry(client, { owner: OWNER, namespace, key, json: JSON.stringify(value), createdAt: Date.now(), expiresAt })

/** The owner's live rows, as the table holds them. */
const liveRows = (client: Connection) =>
  Effect.map(
    query(client, "SELECT namespace, entry_key, value_json FROM channel_state_entries WHERE owner = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY 1, 2", [
      OWNER,
      Date.now()
    ]),
    (result) => result.rows.map((row) => `${row.namespace}/${row.entry_key}=${row.value_json}`).sort()
  )

type Clock = "database" | "application"

/** A store over a fresh database with an owner cap, its namespaces `a` and `b`, a holder connection and a watcher. */
const fixture = (clock: Clock, ownerMaxEntries: number) =>
  Effect.gen(function* () {
    const { url } = yield* freshPgDatabase(pgUrl!)
    const store = yield* storeOf(PgStore.layer({ url, clock, ownerMaxEntries }))
    const open = (namespace: string) => store.open({ owner: OWNER, namespace, schema: Schema.Number, maxEntries: 100, ttl: TTL })
    const a: NamespaceHandle<number> = yield* open("a")
    const b: NamespaceHandle<number> = yield* open("b")
    const holder = yield* rawClient(url)
    const watcher = yield* rawClient(url)
    /** Runs `claim` while `holder` holds the owner's lock (under an owner cap, every namespace's) and does `meanwhile`, committing once the claim waits for the lock. */
    const whileHeld = <A, E>(meanwhile: Effect.Effect<unknown>, claim: Effect.Effect<A, E>) => whileLockHeld(holder, watcher, OWNER, meanwhile, claim)
    return { url, a, b, holder, watcher, whileHeld }
  })

describePg("PostgreSQL's claim under an owner cap, in one call", () => {
  for (const clock of ["database", "application"] as const) {
    it.scopedLive(`${clock} clock: another namespace's first rows, committed while the claim waits for the owner's lock, count against the cap`, () =>
      Effect.gen(function* () {
        const { a, holder, watcher, whileHeld } = yield* fixture(clock, 3)
        expect(yield* a.registerIfAbsent("a1", 1)).toBe(true)
        // Namespace b has no counter row yet: it appears in the holder's transaction.
        const claimed = yield* whileHeld(Effect.zipRight(insertRow(holder, "b", "b1", 1), insertRow(holder, "b", "b2", 2)), Effect.either(a.registerIfAbsent("a2", 2)))
        expect(Either.isLeft(claimed) ? claimed.left.reason : claimed.right).toBe("LimitExceeded")
        expect(yield* liveRows(watcher)).toEqual(["a/a1=1", "b/b1=1", "b/b2=2"])
      })
    )

    it.scopedLive(`${clock} clock: the claimed key, committed by the holder while the claim waits, makes the claim lose`, () =>
      Effect.gen(function* () {
        const { a, holder, watcher, whileHeld } = yield* fixture(clock, 10)
        const claimed = yield* whileHeld(insertRow(holder, "a", "k", 7), a.registerIfAbsent("k", 8))
        expect(claimed).toBe(false)
        expect(yield* liveRows(watcher)).toEqual(["a/k=7"])
      })
    )

    it.scopedLive(`${clock} clock: room made by the holder while the claim waits is room the claim gets`, () =>
      Effect.gen(function* () {
        const { a, b, holder, watcher, whileHeld } = yield* fixture(clock, 2)
        expect(yield* a.registerIfAbsent("a1", 1)).toBe(true)
        expect(yield* b.registerIfAbsent("b1", 1)).toBe(true)
        // Full: a third key is refused.
        const refused = yield* Effect.either(a.registerIfAbsent("a2", 2))
        expect(Either.isLeft(refused) ? refused.left.reason : refused.right).toBe("LimitExceeded")
        const claimed = yield* whileHeld(query(holder, "DELETE FROM channel_state_entries WHERE owner = $1 AND namespace = 'b'", [OWNER]), a.registerIfAbsent("a2", 2))
        expect(claimed).toBe(true)
        expect(yield* liveRows(watcher)).toEqual(["a/a1=1", "a/a2=2"])
      })
    )

    it.scopedLive(`${clock} clock: 40 claims of 20 keys (each twice) beside an expired row of one of them, with room for 12: each key won at most once, the cap holds`, () =>
      Effect.gen(function* () {
        const { a, b, holder, watcher } = yield* fixture(clock, 12)
        yield* insertRow(holder, "a", "k3", 99, Date.now() - 1_000)
        expect(yield* b.registerIfAbsent("b1", 1)).toBe(true)
        const keys = Array.from({ length: 40 }, (_, i) => `k${i % 20}`)
        const answers = yield* Effect.forEach(keys, (key, i) => Effect.either(a.registerIfAbsent(key, i)), { concurrency: "unbounded" })
        /** Each key won, with the value of the claim that won it. */
        const winners = new Map<string, number>()
        for (const [i, answer] of answers.entries()) {
          if (Either.isRight(answer) && answer.right) {
            expect(winners.has(keys[i]!), `${keys[i]} won twice`).toBe(false)
            winners.set(keys[i]!, i)
          }
        }
        const failures = new Set(answers.flatMap((answer) => (Either.isLeft(answer) ? [answer.left.reason] : [])))
        expect([...failures]).toEqual(["LimitExceeded"])
        // The owner's cap is exact: b1 and 11 of the 20 keys (k3's expired row written over if won).
        const rows = yield* liveRows(watcher)
        expect(rows.length).toBe(12)
        expect(rows.filter((row) => row.startsWith("a/"))).toEqual([...winners].map(([key, i]) => `a/${key}=${i}`).sort())
        expect(winners.size).toBe(11)
      })
    )
  }

  it.scopedLive("a role that may not create the function opens the store, and its claims still hold the owner cap", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      // The schema, made by a role that may (the function with it), then the function dropped.
      yield* Effect.scoped(Layer.build(PgStore.layer({ url })))
      const admin = yield* rawClient(url)
      yield* dropClaimFunction(admin)
      const asRole = yield* roleWithoutCreate(admin, url)
      const store = yield* storeOf(PgStore.layer({ url: asRole, ownerMaxEntries: 2 }))
      const h = yield* store.open({ owner: OWNER, namespace: "a", schema: Schema.Number, maxEntries: 100, ttl: TTL })
      const answers = yield* Effect.forEach(["x", "y", "x", "z"], (key) => Effect.either(h.registerIfAbsent(key, 1)), { concurrency: "unbounded" })
      const [x, y, xAgain, z] = answers.map((answer) => (Either.isLeft(answer) ? answer.left.reason : answer.right))
      expect([x, xAgain]).toEqual([true, false])
      // Room for one more: one of y and z, the other refused.
      expect([y, z].sort()).toEqual(["LimitExceeded", true].sort())
      expect(yield* hasClaimFunction(admin)).toBe(false)
    })
  )

  it.scopedLive("the function leaves the schema version as it was: a channel-state that knows version 2 still opens the database", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      yield* Effect.scoped(Layer.build(PgStore.layer({ url })))
      const version = yield* Effect.provide(storedSchemaVersion, pgClientLayer(url))
      expect(version).toBe(SCHEMA_VERSION)
      expect(SCHEMA_VERSION).toBe(2)
      const found = yield* Effect.provide(
        Effect.flatMap(SqlClient, (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_proc WHERE proname = ${CLAIM_FUNCTION}`),
        pgClientLayer(url)
      )
      expect(found[0]?.n).toBe(1)
    })
  )
})
