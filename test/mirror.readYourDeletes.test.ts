/**
 * Tried to break (read-your-writes for queued deletes; "unregistered entries never come
 * back"): a store read that was answered before an `unregister` was flushed, but whose answer
 * reaches the cache after the flush committed, is put back into memory — the unregistered
 * approval answers again, from memory, for the rest of its TTL (24 h).
 *
 * The store is a real SQLite file; the only addition is latency on the way back of one read
 * (what a PostgreSQL round trip under load looks like): the row is read, then the answer waits.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Logger, Option } from "effect"
import * as Matrix from "../src/channels/MatrixApprovalReactions.js"
import { KeyedStore, type NamespaceHandle } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"
import { sqliteRowsNow } from "./support/storedRows.js"

interface Arm {
  /** Set: the next lookupEntry's answer waits for it. */
  gate: Deferred.Deferred<void> | undefined
  /** Completed once the delayed read has read its row. */
  readonly reading: Deferred.Deferred<void>
}

/** A real SQLite store whose next `lookupEntry`, once armed, reads at once but answers only when the gate opens. */
const slowAnswers = (filename: string, arm: Arm) =>
  Layer.effect(
    KeyedStore,
    Effect.map(KeyedStore, (inner) =>
      KeyedStore.of({
        backend: inner.backend,
        open: (options) =>
          Effect.map(inner.open(options), <A>(h: NamespaceHandle<A>) => {
            const wrapped: NamespaceHandle<A> = {
              ...h,
              lookupEntry: (key) =>
                Effect.flatMap(h.lookupEntry(key), (answer) => {
                  const gate = arm.gate
                  if (gate === undefined) return Effect.succeed(answer)
                  arm.gate = undefined
                  return Effect.as(Effect.zipRight(Deferred.succeed(arm.reading, undefined), Deferred.await(gate)), answer)
                })
            }
            return wrapped
          })
      })
    )
  ).pipe(Layer.provide(SqliteStore.layer({ filename })))

const ref = { roomId: "!room:example.org", eventId: "$prompt" }
const reaction = { ...ref, reactionKey: "\u2705" }
const quiet = Logger.remove(Logger.defaultLogger)
const matrixOn = (store: Layer.Layer<KeyedStore, unknown>) =>
  Layer.provide(Matrix.layerPersistent({ pluginId: "matrix", mirror: { flushInterval: "5 millis" } }), Layer.merge(store, quiet))

describe("read-your-deletes: a late store answer never brings back what this process deleted", () => {
  it.scopedLive("after unregister (flushed), resolve never answers the approval again", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "state.sqlite")

      // Instance 1 registers the prompt and shuts down (dispose flushes): the row is stored.
      yield* Effect.scoped(
        Effect.flatMap(Matrix.MatrixApprovalReactions, (matrix) =>
          Effect.sync(() => matrix.register({ ...ref, approvalId: "approval-1", allowedDecisions: ["allow-once", "deny"] }))
        ).pipe(Effect.provide(matrixOn(SqliteStore.layer({ filename }))))
      )
      expect(sqliteRowsNow(filename, "matrix").length).toBe(1)

      // Instance 2 (after a restart: empty memory). A reaction arrives; its store read is slow to answer.
      const arm: Arm = { gate: yield* Deferred.make<void>(), reading: yield* Deferred.make<void>() }
      const gate = arm.gate!
      const answers = yield* Effect.scoped(
        Effect.gen(function* () {
          const matrix = yield* Matrix.MatrixApprovalReactions
          const first = yield* Effect.fork(matrix.resolve(reaction))
          yield* Deferred.await(arm.reading)
          // Meanwhile the approval is withdrawn; its delete is flushed and committed.
          matrix.unregister(ref)
          while (sqliteRowsNow(filename, "matrix").length > 0) yield* Effect.sleep("5 millis")
          yield* Deferred.succeed(gate, undefined)
          const racing = yield* Fiber.join(first)
          // Well after the unregister landed: nobody holds this prompt any more.
          const later = yield* matrix.resolve(reaction)
          return { racing: Option.isSome(racing), later: Option.getOrUndefined(later) }
        }).pipe(Effect.provide(matrixOn(slowAnswers(filename, arm))))
      )
      expect({ storedRows: sqliteRowsNow(filename, "matrix").length, resolveAfterUnregister: answers.later }).toEqual({
        storedRows: 0,
        resolveAfterUnregister: undefined
      })
    })
  )
})
