/**
 * SQLite claims land in one autocommit statement while the trigger-kept counts leave room for
 * every key of the batch (`claimIfCountsAllow`); when it writes nothing, the transaction
 * decides. The store relies on that statement being all or nothing: had it written some of
 * the rows and not others for want of room, the keys left out would be answered "lost" though
 * nobody holds them. These tests run the statement itself on a real file at the edges (exactly
 * full, one over, an owner cap across namespaces, live and expired keys among the claims),
 * then check that the store's answers around it stay exact.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import { makeStatements, type RowToWrite } from "../src/layers/store/sqlStatements.js"
import { sqliteBackend } from "./support/backends.js"

const OWNER = "p"
const row = (key: string, expiresAt: number | null = null): RowToWrite => ({ key, json: JSON.stringify(key), times: { _tag: "At", createdAt: 1, expiresAt } })

/** A fresh SQLite store and raw SQL on the same file. */
const fixture = (ownerMaxEntries?: number) =>
  Effect.gen(function* () {
    const db = yield* sqliteBackend.fresh
    const store = yield* Effect.map(Layer.build(db.store(ownerMaxEntries === undefined ? {} : { ownerMaxEntries })), (context) =>
      Effect.runSync(Effect.provide(KeyedStore, context))
    )
    const sql = yield* Effect.map(Layer.build(db.sql!), (context) => Effect.runSync(Effect.provide(SqlClient, context)))
    /** Runs the claim statement for `rows` in `namespace`; the keys it wrote. */
    const claimStatement = (namespace: string, rows: ReadonlyArray<RowToWrite>, maxEntries: number) => {
      const statement = makeStatements({ backend: "sqlite", databaseClock: false }, OWNER, namespace).claimIfCountsAllow(Date.now(), rows, maxEntries, ownerMaxEntries)
      return Effect.map(sql.unsafe<{ entry_key: string }>(statement.text, statement.params), (written) => written.map((r) => r.entry_key).sort())
    }
    const counted = (namespace: string) =>
      Effect.map(sql<{ n: number }>`SELECT coalesce((SELECT row_count FROM channel_state_counts WHERE owner = ${OWNER} AND namespace = ${namespace}), 0) AS n`, (rows) => rows[0]!.n)
    const rows = (namespace: string) =>
      Effect.map(sql<{ entry_key: string }>`SELECT entry_key FROM channel_state_entries WHERE owner = ${OWNER} AND namespace = ${namespace} ORDER BY entry_key`, (found) =>
        found.map((r) => r.entry_key)
      )
    return { store, claimStatement, counted, rows }
  })

describe("the SQLite claim statement: all or nothing by the counts", () => {
  it.scopedLive("a namespace of 5 holding 2 takes 3 new keys at once (exactly full); holding 3, it takes none of 3, not 2", () =>
    Effect.gen(function* () {
      const { store, claimStatement, counted, rows } = yield* fixture()
      const ns = yield* store.open({ owner: OWNER, namespace: "n", schema: Schema.String, maxEntries: 5, overflow: "reject-new" })
      yield* ns.register("a", "a")
      yield* ns.register("b", "b")
      expect(yield* claimStatement("n", [row("c"), row("d"), row("e")], 5)).toEqual(["c", "d", "e"])
      expect(yield* counted("n")).toBe(5)
      yield* ns.delete("a")
      yield* ns.delete("b")
      // 3 rows held, 3 claimed: room for 2 only, so nothing is written.
      expect(yield* claimStatement("n", [row("f"), row("g"), row("h")], 5)).toEqual([])
      expect(yield* rows("n")).toEqual(["c", "d", "e"])
      expect(yield* counted("n")).toBe(3)
      // The store decides those in its transaction: two fit, the third is refused.
      const answers = yield* Effect.forEach(["f", "g", "h"], (k) => Effect.either(ns.registerIfAbsent(k, k)))
      expect(answers.map((a) => (a._tag === "Right" ? a.right : a.left.reason))).toEqual([true, true, "LimitExceeded"])
      expect(yield* counted("n")).toBe(5)
    })
  )

  it.scopedLive("an owner cap of 6 across two namespaces: 2 new keys fit beside a sibling's 3 and 1 of its own; then 1 more does not", () =>
    Effect.gen(function* () {
      const { store, claimStatement, counted } = yield* fixture(6)
      const sibling = yield* store.open({ owner: OWNER, namespace: "sibling", schema: Schema.String, maxEntries: 100 })
      for (const k of ["s1", "s2", "s3"]) yield* sibling.register(k, k)
      const ns = yield* store.open({ owner: OWNER, namespace: "claims", schema: Schema.String, maxEntries: 100 })
      yield* ns.register("c0", "c0")
      expect(yield* claimStatement("claims", [row("c1"), row("c2")], 100)).toEqual(["c1", "c2"])
      expect(yield* claimStatement("claims", [row("c3")], 100)).toEqual([])
      expect((yield* counted("claims")) + (yield* counted("sibling"))).toBe(6)
      // Through the store the owner is full: refused, nothing changed.
      const refused = yield* Effect.either(ns.registerIfAbsent("c3", "c3"))
      expect(refused._tag === "Left" && refused.left.reason).toBe("LimitExceeded")
      expect((yield* ns.size) + (yield* sibling.size)).toBe(6)
    })
  )

  it.scopedLive("with room, a live key among new ones is left alone and the new ones are written; an expired row in the way counts as a new row and the transaction decides", () =>
    Effect.gen(function* () {
      const { store, claimStatement, counted, rows } = yield* fixture()
      const ns = yield* store.open({ owner: OWNER, namespace: "n", schema: Schema.String, maxEntries: 3 })
      yield* ns.register("live", "held")
      expect(yield* claimStatement("n", [row("live"), row("new")], 3)).toEqual(["new"])
      expect(yield* ns.lookup("live")).toEqual(Option.some("held"))
      // An expired row: the counts still include it, so 3 held + 1 leaves no room by them.
      yield* ns.register("old", "old", { createdAt: 1, expiresAt: 2 })
      expect(yield* counted("n")).toBe(3)
      expect(yield* claimStatement("n", [row("old")], 3)).toEqual([])
      // The store's claim of it wins (the expired row is replaced): its transaction decides.
      expect(yield* ns.registerIfAbsent("old", "mine")).toBe(true)
      expect(yield* ns.lookup("old")).toEqual(Option.some("mine"))
      expect(yield* rows("n")).toEqual(["live", "new", "old"])
      expect(yield* counted("n")).toBe(3)
    })
  )
})
