/**
 * Claims under lock contention, across OS processes: three gateway instances
 * (test/support/claimUntilDecidedWorker.ts) on one SQLite file or one PostgreSQL database
 * handle the same 1 000 message ids on BlueBubbles and on Feishu — claim, finalize what they
 * win, retry what is in flight — while a fourth process (test/support/lockDisturber.ts)
 * takes the store's write lock away over and over, with 100–300 ms gaps: the SQLite write
 * lock (`BEGIN IMMEDIATE` / `BEGIN EXCLUSIVE`) for 1 s at a time, or on PostgreSQL the
 * advisory locks the store takes in every write transaction of the two namespaces for 300 ms
 * at a time (a PostgreSQL write transaction costs several round trips, so a lock held 80 % of
 * the time leaves the three processes too little to finish on a busy machine; what is tested
 * — that a claim waits the lock out, or answers InFlight, and is never decided twice — is the
 * same).
 *
 * Expected: every id is `Claimed` by exactly one process in total (none twice, none never),
 * each finalize lands (`done`, or `queued` while the store is busy — never `stale`), and
 * afterwards every process answers `Duplicate` for every id. Claims that wait out a hold are
 * fine (the store's lockWait is 5 s); claims the store could not decide are counted and printed,
 * and must be put down to contention — the database is reachable throughout, and an
 * "unreachable" answer on SQLite would be decided from memory (claim-locally). The disturber
 * stops once every id is decided, before the processes verify.
 */
import * as path from "node:path"
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Layer, Logger } from "effect"
import { lockKeyOf } from "../src/layers/store/sqlHandleCore.js"
import { defaultStoreSettings } from "../src/layers/store/storeRules.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { type BackendFactory, pgClientLayer, sqlBackends, type TestDatabase } from "./support/backends.js"
import {
  CONTENTION_CHANNELS,
  CONTENTION_PLUGIN,
  type ContentionChannel,
  type ContentionWorkerLine,
  contentionId
} from "./support/claimUntilDecidedWorker.js"
import type { DisturberLine } from "./support/lockDisturber.js"
import { spawnLineProcess } from "./support/lineProcess.js"
import { persistenceOn } from "./support/workerIo.js"
import { spawnGroup } from "./support/workerGroup.js"

const IDS = 1000
const WORKERS = ["worker-a", "worker-b", "worker-c"]
const HOLD_MS = { sqlite: 1000, pg: 300 } as const
const GAP_MS = [100, 300] as const

type ResultLine = Extract<ContentionWorkerLine, { type: "result" }>
type VerifiedLine = Extract<ContentionWorkerLine, { type: "verified" }>

const storeOf = (db: TestDatabase): PluginRuntime.StoreLocation => (db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location })

/** The advisory locks the store takes for the two namespaces (PostgreSQL): as the store computes them, and as `<owner>/<namespace>`. */
const advisoryKeys = [
  ...new Set(
    Object.values(CONTENTION_CHANNELS).flatMap((namespace) => [
      lockKeyOf(CONTENTION_PLUGIN, namespace, defaultStoreSettings.ownerMaxEntries),
      `${CONTENTION_PLUGIN}/${namespace}`
    ])
  )
]

/** The runtime the workers run, opened once so the schema exists before they start. */
const createSchema = (db: TestDatabase) =>
  Effect.scoped(
    Layer.build(
      PluginRuntime.layer({ pluginId: CONTENTION_PLUGIN, config: persistenceOn(CONTENTION_PLUGIN), store: storeOf(db), channels: ["bluebubbles", "feishu"] }).pipe(
        Layer.provide(Logger.remove(Logger.defaultLogger))
      )
    )
  )

/**
 * Whether the disturber's hold really keeps the store's writers out: another connection
 * trying to take the same lock without waiting must fail. SQLite: `BEGIN IMMEDIATE` with no
 * busy timeout gets SQLITE_BUSY. PostgreSQL: `pg_try_advisory_xact_lock` answers false.
 */
const lockIsHeldElsewhere = (db: TestDatabase): Effect.Effect<boolean> => {
  if (db.backend === "sqlite") {
    return Effect.sync(() => {
      const probe = new Database(db.location!, { timeout: 0, fileMustExist: true })
      try {
        probe.exec("BEGIN IMMEDIATE")
        probe.exec("ROLLBACK")
        return false
      } catch (error) {
        return String((error as { code?: unknown }).code).startsWith("SQLITE_BUSY")
      } finally {
        probe.close()
      }
    })
  }
  return Effect.gen(function* () {
    const sql = yield* SqlClient
    return yield* sql.withTransaction(
      Effect.forEach(advisoryKeys, (key) =>
        Effect.map(sql<{ got: boolean }>`SELECT pg_try_advisory_xact_lock(hashtextextended(${key}, 0)) AS got`, (rows) => rows[0]?.got === true)
      )
    )
  }).pipe(
    Effect.map((got) => got.every((g) => !g)),
    Effect.provide(pgClientLayer(db.location!)),
    Effect.orDie
  )
}

const contention = (backend: BackendFactory) =>
  it.scopedLive(
    `${WORKERS.length} processes claim the same ${IDS} ids on BlueBubbles and Feishu while another process holds the write lock for ${HOLD_MS[backend.name as "sqlite" | "pg"]} ms at a time: each id Claimed exactly once, then Duplicate everywhere`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* createSchema(db)

        const group = yield* spawnGroup<ContentionWorkerLine>(path.join("test", "support", "claimUntilDecidedWorker.ts"), WORKERS, (goFile, name, i) => [
          backend.name,
          db.location!,
          goFile,
          name,
          String(IDS),
          String(Math.floor((i * IDS) / WORKERS.length))
        ])
        // Every store is open (its migrations ran under the write lock) before the lock is taken away.
        yield* group.ready

        const disturber = yield* spawnLineProcess<DisturberLine>(path.join("test", "support", "lockDisturber.ts"), [
          backend.name,
          db.location!,
          String(HOLD_MS[backend.name as "sqlite" | "pg"]),
          String(GAP_MS[0]),
          String(GAP_MS[1]),
          ...advisoryKeys
        ])
        yield* disturber.waitFor((line): line is Extract<DisturberLine, { type: "held" }> => line.type === "held", 60_000)
        // The first hold lasts until told to continue: the workers start against a locked store.
        expect(yield* lockIsHeldElsewhere(db), "the disturber's hold does not keep another writer out").toBe(true)
        yield* group.go
        // PostgreSQL: the first hold ends only once a store transaction waits for it — sent at
        // once, `continue` could end it before any worker's claim got there, and on a busy machine
        // the workers could then do all their writes in the gaps between holds.
        if (db.backend === "pg") yield* disturber.waitFor((line): line is Extract<DisturberLine, { type: "waited" }> => line.type === "waited" && line.n === 0, 120_000)
        disturber.send("continue")

        const results = yield* group.lineOfEach((line): line is ResultLine => line.type === "result", 240_000)
        disturber.send("stop")
        const disturbed = (yield* disturber.waitFor((line): line is Extract<DisturberLine, { type: "result" }> => line.type === "result", 30_000)).line
        // Afterwards: every process, every id, both channels.
        group.sendAll("verify")
        const verified = yield* group.lineOfEach((line): line is VerifiedLine => line.type === "verified", 90_000)

        const channels = Object.keys(CONTENTION_CHANNELS) as Array<ContentionChannel>
        const report = channels.map((channel) => {
          const perWorker = results.map((r) => `${r.worker} won ${r.channels[channel].won.length} ${JSON.stringify(r.channels[channel].answers)} finalize ${JSON.stringify(r.channels[channel].finalized)} max attempts ${r.channels[channel].maxAttempts}`)
          return `${channel}: ${perWorker.join("; ")}`
        })
        console.info(
          `[channel-state contention] ${backend.name}: ${report.join(" | ")} | undecided ${JSON.stringify(results.map((r) => r.undecided))} then ${JSON.stringify(verified.map((v) => v.undecided))}` +
            ` | problem lines ${results.map((r) => r.problems.length).join("/")} then ${verified.map((v) => v.problems.length).join("/")}` +
            ` | disturber ${disturbed.holds} holds, ${disturbed.holdsWithWaiters} with waiters (max ${disturbed.maxWaiters}) | runs ${results.map((r) => r.finishedAt - r.startedAt).join("/")} ms`
        )
        const problems = [...results, ...verified].flatMap((r) => r.problems)
        if (problems.length > 0) console.info(`[channel-state contention] ${backend.name}: first problem lines:\n${[...new Set(problems)].slice(0, 5).join("\n")}`)

        // The runs really overlapped in time.
        expect(Math.max(...results.map((r) => r.startedAt))).toBeLessThan(Math.min(...results.map((r) => r.finishedAt)))
        // PostgreSQL: the holds had the store's transactions waiting on the advisory locks.
        if (db.backend === "pg") expect(disturbed.holdsWithWaiters, "holds during which a store transaction waited for the lock").toBeGreaterThan(0)
        // The database was reachable all along: a claim it did not decide was contended, never
        // "unreachable" (which on SQLite would be decided from memory: claim-locally).
        for (const r of [...results, ...verified]) {
          const notContended = Object.keys(r.undecided).filter((tags) => !tags.endsWith("/contended/in-flight"))
          expect.soft(notContended.map((tags) => `${tags}: ${r.undecided[tags]}`), `${r.worker}: undecided claims not put down to contention`).toEqual([])
        }

        const allIds = Array.from({ length: IDS }, (_, i) => contentionId(i))
        for (const channel of channels) {
          const winners = new Map<string, Array<string>>()
          for (const r of results) for (const id of r.channels[channel].won) winners.set(id, [...(winners.get(id) ?? []), r.worker])
          const twice = allIds.filter((id) => (winners.get(id)?.length ?? 0) > 1)
          const never = allIds.filter((id) => !winners.has(id))
          expect.soft(twice.map((id) => `${id}: ${winners.get(id)!.join(", ")}`), `${channel}: ids Claimed by more than one process`).toEqual([])
          expect.soft(never, `${channel}: ids nobody Claimed`).toEqual([])
          for (const r of results) {
            const tally = r.channels[channel]
            expect.soft(tally.unresolved, `${channel}: ids ${r.worker} still found in flight at its deadline`).toEqual([])
            const badSettles = Object.keys(tally.finalized).filter((outcome) => outcome !== "done" && outcome !== "queued")
            expect.soft(badSettles, `${channel}: finalize answers of ${r.worker} other than done/queued: ${JSON.stringify(tally.finalized)}`).toEqual([])
          }
          for (const v of verified) {
            // A won id that can be claimed again lost its row (never-claimed ids show up under "nobody Claimed").
            const lost = v.channels[channel].claimedAgain.filter((id) => winners.has(id))
            expect.soft(lost, `${channel}: ids Claimed earlier that ${v.worker} could claim again afterwards`).toEqual([])
            expect.soft(v.channels[channel].notDuplicate, `${channel}: ids ${v.worker} did not see as Duplicate afterwards`).toEqual([])
          }
        }
        yield* group.exits(30_000)
      }),
    360_000
  )

for (const backend of sqlBackends) {
  describe(`claims under lock contention: ${backend.name}`, () => {
    contention(backend)
  })
}
