/**
 * Cold start of several instances at once: five OS processes (test/support/channelClaimWorker.ts
 * with `--open-after-go`) are started, load everything, and only on one start signal open ONE
 * fresh database — a PostgreSQL database with no tables yet, or a SQLite file (and directory)
 * that does not exist yet — so their schema checks and migrations race. Then each claims the
 * same guids through the production BlueBubbles runtime.
 *
 * Every process must open the store: no memory fallback, no warning or error line, no
 * unique-violation (`23505`) or other error on its stderr; every claim decided by the store
 * (none undecided); every guid claimed exactly once in total; the schema at the current version.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SCHEMA_VERSION } from "../src/layers/store/migrations.js"
import { type BackendFactory, sqlBackends } from "./support/backends.js"
import { type ChannelWorkerLine, workerGuid } from "./support/channelClaimWorker.js"
import { entryRows } from "./support/entryRows.js"
import { resultsOf, spawnGroup } from "./support/workerGroup.js"

const PROCESSES = 5
const GUIDS = 200

type ResultLine = Extract<ChannelWorkerLine, { type: "result" }>

const coldStart = (backend: BackendFactory) =>
  it.scopedLive(
    `${PROCESSES} processes open one fresh ${backend.name === "pg" ? "PostgreSQL database" : "SQLite file"} at the same moment: all open it, none logs a warning, each of ${GUIDS} guids claimed exactly once`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        if (db.backend === "sqlite") expect(fs.existsSync(path.dirname(db.location!)), "the SQLite directory exists before the start").toBe(false)
        const names = Array.from({ length: PROCESSES }, (_, i) => `instance-${i}`)
        const group = yield* spawnGroup<ChannelWorkerLine>(path.join("test", "support", "channelClaimWorker.ts"), names, (goFile, name, i) => [
          backend.name,
          db.location!,
          goFile,
          name,
          String(GUIDS),
          i % 2 === 0 ? "ascending" : "descending",
          "--open-after-go"
        ])
        yield* group.start
        const exits = yield* group.exits(150_000)
        const results = resultsOf(group, exits, (line): line is ResultLine => line.type === "result")

        const winners = new Map<string, Array<string>>()
        for (const r of results) for (const guid of r.won) winners.set(guid, [...(winners.get(guid) ?? []), r.worker])
        const notOnce = Array.from({ length: GUIDS }, (_, i) => workerGuid(i)).filter((guid) => winners.get(guid)?.length !== 1)
        const rows = yield* entryRows(db)
        const version = yield* Effect.orDie(Effect.map(rows.sql<{ v: number | string | null }>`SELECT max(migration_id) AS v FROM channel_state_migrations`, (r) => Number(r[0]?.v)))
        const stored = yield* rows.count("bluebubbles", "bluebubbles.inbound-dedupe")
        console.info(
          `[channel-state cold start] ${backend.name}: ${results.map((r) => `${r.worker} ${JSON.stringify(r.outcomes)}`).join(", ")}; ` +
            `undecided ${results.filter((r) => Object.keys(r.undecided).length > 0).length} processes; problem lines ${results.map((r) => r.problems.length).join("/")}; ` +
            `stderr bytes ${exits.map((e) => e.stderr.length).join("/")}; not exactly once ${notOnce.length}; schema version ${version}; rows ${stored}`
        )

        for (const [i, r] of results.entries()) {
          expect(r.problems, `${r.worker}: warning and error lines`).toEqual([])
          expect(exits[i]!.stderr, `${r.worker}: stderr`).not.toMatch(/23505|duplicate key|error/i)
          expect(r.undecided, `${r.worker}: claims the store did not decide`).toEqual({})
          expect((r.outcomes.Claimed ?? 0) + (r.outcomes.InFlight ?? 0), `${r.worker}: outcomes ${JSON.stringify(r.outcomes)}`).toBe(GUIDS)
        }
        expect(notOnce.map((guid) => `${guid}: ${winners.get(guid)?.join(", ") ?? "nobody"}`), "guids not claimed exactly once").toEqual([])
        expect(version, "schema version").toBe(SCHEMA_VERSION)
        expect(stored, "claim rows").toBe(GUIDS)
        if (db.backend === "sqlite") {
          const checks = yield* Effect.orDie(rows.sql<{ integrity_check: string }>`PRAGMA integrity_check`)
          expect(checks.map((c) => c.integrity_check)).toEqual(["ok"])
        }
      }),
    180_000
  )

for (const backend of sqlBackends) {
  describe(`cold start of ${PROCESSES} instances: ${backend.name}`, () => {
    coldStart(backend)
  })
}
