/**
 * A database that cannot be opened when the plugin starts: the plugin starts anyway, serves
 * from memory, and once the database is reachable the queued writes land — on SQLite (the
 * state path is blocked by a regular file, then freed) and on PostgreSQL (the server's port is
 * reached through a local TCP proxy that is down at start, then comes up).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Layer } from "effect"
import { BlueBubblesInboundDedupe } from "../src/channels/BlueBubblesInboundDedupe.js"
import { SlackThreadParticipation } from "../src/channels/SlackThreadParticipation.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { freshPgDatabase, pgClientLayer, pgUrl, tempDir } from "./support/backends.js"
import { eventually } from "./support/eventually.js"
import { tcpProxy } from "./support/outages.js"

const PLUGIN = "gateway"
const config = { plugins: { entries: { [PLUGIN]: { config: { experimentalPersistentState: true } } } } }
const mirror = { flushInterval: "20 millis", backoffBase: "50 millis", backoffMax: "200 millis" } as const

const services = Effect.all({ slack: SlackThreadParticipation, bluebubbles: BlueBubblesInboundDedupe })

/**
 * Plugin traffic while the database is down or up; answers how many answers were wrong. A
 * claim is right when it is `claimWant` (`Claimed`, then finalized; or `InFlight`).
 */
const traffic = (s: Effect.Effect.Success<typeof services>, tag: string, count: number, claimWant: "Claimed" | "InFlight" = "Claimed") =>
  Effect.gen(function* () {
    let wrong = 0
    for (let i = 0; i < count; i++) {
      s.slack.record("T", "C", `${tag}.${i}`)
      if (!(yield* s.slack.check("T", "C", `${tag}.${i}`))) wrong++
      const claim = yield* s.bluebubbles.claim({ accountId: "acc", guid: `${tag}-${i}` })
      if (claim._tag !== claimWant) wrong++
      if (claim._tag === "Claimed") yield* claim.finalize
    }
    return wrong
  })

const keysIn = (rows: ReadonlyArray<{ entry_key: string }>) => new Set(rows.map((r) => r.entry_key))
const expected = (tag: string, count: number) =>
  Array.from({ length: count }, (_, i) => [`T:C:${tag}.${i}`, `acc:${tag}-${i}`]).flat()

const runtimeLayer = (store: PluginRuntime.StoreLocation) =>
  PluginRuntime.layer({ pluginId: PLUGIN, config, store, channels: ["slack", "bluebubbles"], mirror })

describe("a database that is down when the plugin starts", () => {
  it.scopedLive("SQLite: the state path is blocked at start, then freed: served from memory, then every write lands", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const blocker = path.join(dir, "state")
      fs.writeFileSync(blocker, "not a directory")
      const file = path.join(blocker, "channel-state.sqlite")
      const s = yield* Effect.provide(services, yield* Layer.build(runtimeLayer({ sqlitePath: file })))
      expect(yield* traffic(s, "down", 20)).toBe(0)

      fs.rmSync(blocker)
      expect(yield* traffic(s, "up", 20)).toBe(0)
      // The file may exist before the reopened store has created its table: no rows yet.
      const rowsOf = Effect.sync(() => {
        if (!fs.existsSync(file)) return new Set<string>()
        const db = new Database(file, { readonly: true, fileMustExist: true })
        try {
          const created = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'channel_state_entries'").get() !== undefined
          return created ? keysIn(db.prepare("SELECT entry_key FROM channel_state_entries").all() as Array<{ entry_key: string }>) : new Set<string>()
        } finally {
          db.close()
        }
      })
      const want = [...expected("down", 20), ...expected("up", 20)]
      const stored = yield* eventually(rowsOf, (keys) => want.every((k) => keys.has(k)))
      expect(want.filter((k) => !stored.has(k))).toEqual([])
    })
  )

  if (pgUrl) {
    const baseUrl = pgUrl
    it.scopedLive("PostgreSQL: unreachable at start, then up: served from memory, claims answer in flight (the PostgreSQL default), then every write lands", () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(baseUrl)
        // The server's port refuses connections until the proxy listens again.
        const proxy = yield* tcpProxy(url)
        yield* proxy.down
        const s = yield* Effect.provide(services, yield* Layer.build(runtimeLayer({ pgUrl: proxy.url })))
        // Several instances may share this database: a claim nobody could decide is not handled here.
        expect(yield* traffic(s, "down", 20, "InFlight")).toBe(0)
        yield* proxy.up
        // Reopening is tried at most once a second, and the mirror backs off after outages:
        // until the store answers again, claims keep answering InFlight.
        let probe = 0
        yield* eventually(
          Effect.flatMap(
            Effect.suspend(() => s.bluebubbles.claim({ accountId: "probe", guid: `p${probe++}` })),
            (outcome) => Effect.as(outcome._tag === "Claimed" ? outcome.finalize : Effect.void, outcome._tag)
          ),
          (tag) => tag === "Claimed"
        )
        expect(yield* traffic(s, "up", 20)).toBe(0)
        const rowsOf = Effect.provide(
          Effect.flatMap(SqlClient, (sql) =>
            sql<{ entry_key: string }>`SELECT entry_key FROM channel_state_entries`.pipe(
              Effect.map(keysIn),
              Effect.catchAll(() => Effect.succeed(new Set<string>()))
            )
          ),
          pgClientLayer(url)
        )
        // The threads recorded while down land; the claims answered in flight were never made.
        const want = [...expected("down", 20).filter((k) => k.startsWith("T:")), ...expected("up", 20)]
        const stored = yield* eventually(rowsOf, (keys) => want.every((k) => keys.has(k)))
        expect(want.filter((k) => !stored.has(k))).toEqual([])
        expect(expected("down", 20).filter((k) => k.startsWith("acc:") && stored.has(k))).toEqual([])
      })
    )
  }
})
