/**
 * Attacks on the SQLite reader (reads made outside a transaction run on a connection of their
 * own): while a second connection holds the write lock with changes it has not committed,
 * reads answer at once from what is committed — never from the uncommitted changes — and a
 * claim or a consume is not decided on that answer: it waits the lock out and fails `Busy`.
 * Once the holder commits (or rolls back), the very next read sees it.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"

const openNamespace = (file: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(SqliteStore.layer({ filename: file, lockWait: "300 millis" }))
    const store = yield* Effect.provide(KeyedStore, context)
    return yield* store.open({ owner: "p", namespace: "n", schema: Schema.Number, maxEntries: 100 })
  })

/** A second connection that holds the write lock: "k" changed to 2 and "fresh" added, neither committed. */
const holdUncommitted = (file: string) => {
  const holder = new Database(file)
  holder.exec("BEGIN IMMEDIATE")
  holder.prepare("UPDATE channel_state_entries SET value_json = '2' WHERE owner = 'p' AND namespace = 'n' AND entry_key = 'k'").run()
  holder
    .prepare("INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at) VALUES ('p', 'n', 'fresh', '7', ?, NULL)")
    .run(Date.now())
  return holder
}

describe("reads on the SQLite reader connection while another connection holds uncommitted writes", () => {
  it.scopedLive("every read answers from what is committed; claim and consume fail Busy instead of deciding; after COMMIT the next read sees the change", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const ns = yield* openNamespace(file)
      yield* ns.register("k", 1)
      const holder = holdUncommitted(file)
      try {
        expect(yield* ns.lookup("k")).toEqual(Option.some(1))
        expect(yield* ns.lookup("fresh")).toEqual(Option.none())
        const many = yield* ns.lookupMany(["k", "fresh"])
        expect(many.map((r) => (Either.isRight(r) ? r.right : "failed"))).toEqual([Option.some(1), Option.none()])
        expect((yield* ns.observe("k")).entry.pipe(Option.map((e) => e.value))).toEqual(Option.some(1))
        expect(yield* ns.size).toBe(1)
        expect((yield* ns.entriesInRange({ limit: 10 })).entries.map((e) => [e.key, e.value])).toEqual([["k", 1]])

        const claim = yield* Effect.either(ns.registerIfAbsent("fresh", 5))
        expect(Either.isLeft(claim) ? claim.left.reason : claim.right).toBe("Busy")
        const consumed = yield* Effect.either(ns.consume("k"))
        expect(Either.isLeft(consumed) ? consumed.left.reason : consumed.right).toBe("Busy")
        holder.exec("COMMIT")
      } finally {
        if (holder.inTransaction) holder.exec("ROLLBACK")
        holder.close()
      }
      expect(yield* ns.lookup("k")).toEqual(Option.some(2))
      expect(yield* ns.lookup("fresh")).toEqual(Option.some(7))
      expect(yield* ns.registerIfAbsent("fresh", 5)).toBe(false)
      expect(yield* ns.consume("k")).toEqual(Option.some(2))
    })
  )

  it.scopedLive("after the holder rolls back, reads still show the committed state and a claim of the key it had added wins", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const ns = yield* openNamespace(file)
      yield* ns.register("k", 1)
      const holder = holdUncommitted(file)
      expect(yield* ns.lookup("fresh")).toEqual(Option.none())
      holder.exec("ROLLBACK")
      holder.close()
      expect(yield* ns.lookup("k")).toEqual(Option.some(1))
      expect(yield* ns.registerIfAbsent("fresh", 5)).toBe(true)
      expect(yield* ns.lookup("fresh")).toEqual(Option.some(5))
    })
  )
})
