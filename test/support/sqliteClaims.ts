/**
 * A SQLite store for the claim suites, with what they check it by: every namespace whose
 * trigger-kept count differs from its rows, and a second connection to the file that holds its
 * write lock the way another process would.
 */
import Database from "better-sqlite3"
import { SqlClient } from "@effect/sql/SqlClient"
import { Effect, type Scope } from "effect"
import type { NamespaceHandle, NamespaceOptions } from "../../src/KeyedStore.js"
import { memoryBackend, sqliteBackend, storeOf } from "./backends.js"

/** A second connection to a store's file, holding its write lock the way another process would. */
export interface LockHolder {
  readonly take: () => void
  readonly release: () => void
  /** Writes a live row of `key` and commits, then takes the lock again, all in one step (no fiber of the store runs between). */
  readonly writeLiveAndRetake: (owner: string, namespace: string, key: string) => void
}

/** A fresh file and the store on it (sweeper idle), built in the test's scope. */
export const sqliteClaimFixture = (settings: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const db = yield* sqliteBackend.fresh
    const store = yield* storeOf(db.store({ sweepInterval: "1 hour", ...settings }))
    const raw = <R extends object>(q: string) => Effect.provide(Effect.flatMap(SqlClient, (sql) => sql.unsafe<R>(q)), db.sql!)
    /** Every namespace whose counter differs from its real row count. */
    const countMismatches = raw<{ namespace: string }>(
      `SELECT c.namespace FROM channel_state_counts c WHERE c.row_count <> (SELECT count(*) FROM channel_state_entries e WHERE e.owner = c.owner AND e.namespace = c.namespace)
       UNION SELECT e.namespace FROM channel_state_entries e WHERE NOT EXISTS (SELECT 1 FROM channel_state_counts c WHERE c.owner = e.owner AND c.namespace = e.namespace)`
    )
    /** A second connection to the file (closed with the scope) that takes and releases its write lock. */
    const lockHolder: Effect.Effect<LockHolder, never, Scope.Scope> = Effect.gen(function* () {
      const holder = new Database(db.location!)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.close()))
      return {
        take: () => holder.exec("BEGIN IMMEDIATE"),
        release: () => {
          if (holder.inTransaction) holder.exec("COMMIT")
        },
        writeLiveAndRetake: (owner: string, namespace: string, key: string) => {
          holder
            .prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES (?, ?, ?, ?, ?, NULL)")
            .run(owner, namespace, key, JSON.stringify("theirs"), Date.now())
          holder.exec("COMMIT")
          holder.exec("BEGIN IMMEDIATE")
        }
      }
    })
    return { store, countMismatches, lockHolder }
  })

/**
 * The same two namespaces (`options` and a `sibling`) on a fresh SQLite store and on a memory
 * store of the same settings, the reference semantics: the claim suites run one sequence on
 * both sides and compare every answer.
 */
export const againstMemory = <A, I>(settings: Record<string, unknown>, options: NamespaceOptions<A, I>, sibling: NamespaceOptions<A, I>) =>
  Effect.gen(function* () {
    const sqlite = yield* sqliteClaimFixture(settings)
    const memory = yield* storeOf((yield* memoryBackend.fresh).store(settings))
    const sides: ReadonlyArray<{ readonly ns: NamespaceHandle<A>; readonly other: NamespaceHandle<A> }> = [
      { ns: yield* sqlite.store.open(options), other: yield* sqlite.store.open(sibling) },
      { ns: yield* memory.open(options), other: yield* memory.open(sibling) }
    ]
    return { sqlite, sides }
  })
