/**
 * Tries to break ReopeningStore's fast path (`ready()`): after the SQLite file is removed or
 * replaced, the next operation — whatever it is, and however many run at once — reopens; no
 * write lands in the removed inode; after close, every operation fails Unavailable.
 */
import * as fs from "node:fs"
import Database from "better-sqlite3"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { sqliteBackend } from "./support/backends.js"

const rowsIn = (filename: string) => {
  const db = new Database(filename, { readonly: true })
  try {
    return (db.prepare("SELECT entry_key FROM channel_state_entries ORDER BY entry_key").all() as Array<{ entry_key: string }>).map((r) => r.entry_key)
  } finally {
    db.close()
  }
}

describe("the reopening store's fast path", () => {
  it.scopedLive("file removed (then replaced) between bursts of mixed operations: each burst after lands in the file now at the path; after close all fail Unavailable", () =>
    Effect.gen(function* () {
      const db = yield* sqliteBackend.fresh
      const file = db.location!
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(db.store(), scope)
      const store = Effect.runSync(Effect.provide(KeyedStore, context))
      const a = yield* store.open({ owner: "p", namespace: "a", schema: Schema.String, maxEntries: 100, overflow: "reject-new" })
      const b = yield* store.open({ owner: "p", namespace: "b", schema: Schema.String, maxEntries: 100 })
      const burst = (tag: string) =>
        Effect.all(
          [
            a.registerIfAbsent(`${tag}-claim`, "x"),
            b.register(`${tag}-reg`, "x"),
            a.writeBatch([{ _tag: "Register", key: `${tag}-batch`, value: "x", createdAt: Date.now(), expiresAt: undefined }]),
            b.lookup(`${tag}-none`),
            a.registerIfAbsent(`${tag}-claim2`, "x")
          ],
          { concurrency: "unbounded" }
        )
      yield* burst("one")
      const mismatches: Array<unknown> = []
      for (let round = 0; round < 6; round++) {
        for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(`${file}${suffix}`, { force: true })
        if (round % 2 === 1) {
          // Replaced: a fresh, empty database file where the old one was.
          const fresh = new Database(file)
          fresh.close()
        }
        yield* burst(`r${round}`)
        const seen = rowsIn(file)
        const expected = [`r${round}-batch`, `r${round}-claim`, `r${round}-claim2`, `r${round}-reg`]
        if (JSON.stringify(seen) !== JSON.stringify(expected)) mismatches.push({ round, seen })
      }
      expect(mismatches).toEqual([])
      yield* Scope.close(scope, Exit.void)
      const after = yield* Effect.all([Effect.either(a.lookup("x")), Effect.either(a.registerIfAbsent("y", "y")), Effect.either(b.register("z", "z"))])
      expect(after.map((e) => e._tag === "Left" && e.left.reason)).toEqual(["Unavailable", "Unavailable", "Unavailable"])
    }),
    120_000
  )
})
