/**
 * Tried to break ("a host that forgets dispose still exits with its writes stored";
 * lost only when the store is backing off after outages; back-off only on outages): the host
 * (test/support/lifetimeWorker.ts, `no-dispose`) starts while another process holds the
 * SQLite file's write lock, records 20 Slack threads, 20 Matrix prompts and 20 Discord
 * components, and lets its event loop run dry. The lock is released 2 s after the host said
 * it recorded them. Contention is not an outage: the host should wait it out and store them
 * (or at the very least count and log them as lost — it does neither).
 */
import * as path from "node:path"
import Database from "better-sqlite3"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { tempDir } from "./support/backends.js"
import { spawnLineProcess } from "./support/lineProcess.js"
import { LIFETIME_OWNER, type LifetimeLine } from "./support/lifetimeWorker.js"
import { sqliteRowsNow } from "./support/storedRows.js"

describe("a host that forgets dispose, while another process briefly holds the SQLite lock", () => {
  it.scopedLive(
    "exits with its writes stored once the lock is released",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const file = path.join(dir, "state", "state.sqlite")
        // The database exists and is migrated.
        yield* Effect.scoped(
          Effect.flatMap(Layer.build(SqliteStore.layer({ filename: file })), (ctx) =>
            Effect.flatMap(Effect.provide(KeyedStore, ctx), (store) => store.open({ owner: "x", namespace: "y", schema: Schema.Number, maxEntries: 1 }))
          )
        )
        // Another process (here: this one, on its own connection) holds the write lock.
        const holder = new Database(file, { timeout: 0 })
        holder.exec("BEGIN IMMEDIATE")
        let locked = true
        const release = () => {
          if (locked) holder.exec("ROLLBACK")
          locked = false
        }
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            release()
            holder.close()
          })
        )

        // The host may stay alive up to 60 s waiting out the contention (not the default 5 s): far
        // longer than this test holds the lock, however late a busy machine runs the release —
        // so a host that exits without waiting is told apart from one that waited and gave up.
        const child = yield* spawnLineProcess<LifetimeLine>(path.join("test", "support", "lifetimeWorker.ts"), ["sqlite", file, "no-dispose", "20", "60 seconds"])
        yield* child.waitFor((line): line is LifetimeLine => line.type === "recorded", 60_000)
        yield* Effect.sleep("2 seconds")
        const exitedWhileLocked = child.child.exitCode !== null
        release()
        const ended = yield* Effect.timeout(child.closed, "60 seconds").pipe(Effect.option)
        const stored = sqliteRowsNow(file, LIFETIME_OWNER)
        const byNamespace: Record<string, number> = {}
        for (const row of stored) byNamespace[row.namespace] = (byNamespace[row.namespace] ?? 0) + 1
        expect({ exited: ended._tag === "Some", exitedWhileLocked, byNamespace }).toEqual({
          exited: true,
          exitedWhileLocked: false,
          byNamespace: { "discord.components": 20, "matrix.approval-reactions": 20, "slack.thread-participation": 20 }
        })
      }),
    120_000
  )
})
