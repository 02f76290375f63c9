/**
 * Claims under a cap decide from the trigger-kept counts. On SQLite a batch of claims that all
 * fit by the counts read inside its transaction skips the check of which keys are live and the
 * cap check after the write (the file's write lock keeps the counts still until it commits).
 * These tests try to break that at its edges: exactly full, one over, counts inflated by
 * expired rows, live keys among the claims, and two store instances (two connections, as two
 * processes) racing for the last places — on every backend, with memory as the reference.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { backends, type BackendFactory, storeOf } from "./support/backends.js"

const tally = (answers: ReadonlyArray<Either.Either<boolean, { readonly reason: string }>>) => ({
  won: answers.filter((a) => Either.isRight(a) && a.right).length,
  lost: answers.filter((a) => Either.isRight(a) && !a.right).length,
  refused: answers.filter((a) => Either.isLeft(a) && a.left.reason === "LimitExceeded").length,
  other: answers.filter((a) => Either.isLeft(a) && a.left.reason !== "LimitExceeded").map((a) => Either.isLeft(a) && a.left.reason)
})

const claimAll = (ns: { registerIfAbsent: (k: string, v: string) => Effect.Effect<boolean, { readonly reason: string }> }, keys: ReadonlyArray<string>) =>
  Effect.forEach(keys, (k) => Effect.either(ns.registerIfAbsent(k, k)), { concurrency: "unbounded" })

const range = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

const suite = (backend: BackendFactory) =>
  describe(`claims at the edge of a cap: ${backend.name}`, () => {
    it.scopedLive("reject-new of 5 holding 2: 3 new claims all win (exactly full), then 1 more is refused; 2 live keys among 3 new ones in a namespace with room: the live ones lose", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* storeOf(db.store())
        const ns = yield* store.open({ owner: "p", namespace: "full", schema: Schema.String, maxEntries: 5, overflow: "reject-new" })
        yield* ns.register("a", "a")
        yield* ns.register("b", "b")
        expect(tally(yield* claimAll(ns, ["c", "d", "e"]))).toEqual({ won: 3, lost: 0, refused: 0, other: [] })
        expect(tally(yield* claimAll(ns, ["f"]))).toEqual({ won: 0, lost: 0, refused: 1, other: [] })
        expect(yield* ns.size).toBe(5)
        const roomy = yield* store.open({ owner: "p", namespace: "roomy", schema: Schema.String, maxEntries: 10, overflow: "reject-new" })
        yield* roomy.register("x", "x")
        yield* roomy.register("y", "y")
        expect(tally(yield* claimAll(roomy, ["x", "y", "n1", "n2", "n3"]))).toEqual({ won: 3, lost: 2, refused: 0, other: [] })
        expect(yield* roomy.size).toBe(5)
      }),
      60_000
    )

    it.scopedLive("owner cap 8, a sibling namespace holding 3: 10 concurrent claims win exactly 5 and are refused 5; one over the edge (4 + 2 with room for 1) takes exactly 1", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* storeOf(db.store({ ownerMaxEntries: 8 }))
        const sibling = yield* store.open({ owner: "p", namespace: "sibling", schema: Schema.String, maxEntries: 100 })
        for (const k of ["s1", "s2", "s3"]) yield* sibling.register(k, k)
        const ns = yield* store.open({ owner: "p", namespace: "claims", schema: Schema.String, maxEntries: 100 })
        expect(tally(yield* claimAll(ns, range("k", 10)))).toEqual({ won: 5, lost: 0, refused: 5, other: [] })
        yield* sibling.delete("s1")
        expect(tally(yield* claimAll(ns, ["m1", "m2"]))).toEqual({ won: 1, lost: 0, refused: 1, other: [] })
        expect((yield* ns.size) + (yield* sibling.size)).toBe(8)
      }),
      60_000
    )

    it.scopedLive("a namespace of 5 whose 5 rows have expired (the counts still hold them): 5 claims all win, the expired rows making room", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const store = yield* storeOf(db.store())
        const ns = yield* store.open({ owner: "p", namespace: "expired", schema: Schema.String, maxEntries: 5, overflow: "reject-new" })
        const past = Date.now() - 60_000
        for (const k of range("old", 5)) yield* ns.register(k, k, { createdAt: past - 1000, expiresAt: past })
        expect(tally(yield* claimAll(ns, range("new", 5)))).toEqual({ won: 5, lost: 0, refused: 0, other: [] })
        expect(tally(yield* claimAll(ns, ["late"]))).toEqual({ won: 0, lost: 0, refused: 1, other: [] })
        expect(yield* ns.size).toBe(5)
      }),
      60_000
    )

    if (backend.name !== "memory") {
      it.scopedLive("two store instances (two connections) race 40 claims each of distinct keys for a reject-new namespace of 7 holding 3, 20 rounds: exactly 4 win every round", () =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          const one = yield* storeOf(db.store())
          const two = yield* storeOf(db.store())
          for (let round = 0; round < 20; round++) {
            const options = { owner: "p", namespace: `race${round}`, schema: Schema.String, maxEntries: 7, overflow: "reject-new" as const }
            const a = yield* one.open(options)
            const b = yield* two.open(options)
            for (const k of ["h1", "h2", "h3"]) yield* a.register(k, k)
            const [fromA, fromB] = yield* Effect.all([claimAll(a, range("a", 40)), claimAll(b, range("b", 40))], { concurrency: 2 })
            expect({ round, ...tally([...fromA, ...fromB]) }).toEqual({ round, won: 4, lost: 0, refused: 76, other: [] })
            expect(yield* a.size).toBe(7)
          }
        }),
        120_000
      )
    }
  })

for (const backend of backends) suite(backend)
