/**
 * What a process loads (issue 12): a real Node process (test/support/startupImportsWorker.ts)
 * records every module it resolves and every CommonJS module it requires, and the test reads
 * the list. Building a SQLite store and answering a lookup loads no `@effect/sql-pg` and no
 * `pg`; a PostgreSQL store loads them (from src/layers/store/pgDriver.ts, on demand), also when
 * its server is down; a driver that cannot be imported is a typed `OpenFailed`, not a defect
 * (and the CLI says to reinstall); `channel-state --help` loads no Effect module. No timing here: start-up times are bench rows
 * (bench/startup.ts).
 */
import { execFile } from "node:child_process"
import * as path from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { sqlBackends } from "./support/backends.js"
import { repoRoot } from "./support/lineProcess.js"
import type { ImportsReport } from "./support/startupImportsWorker.js"

const WORKER = path.join("test", "support", "startupImportsWorker.ts")
/** A PostgreSQL port nothing listens on. */
const DOWN_URL = "postgres://postgres@127.0.0.1:1/none"

const report = (mode: string, location?: string) =>
  Effect.promise(async () => {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", WORKER, mode, ...(location === undefined ? [] : [location])], {
      cwd: repoRoot,
      timeout: 60_000
    })
    const line = stdout.split("\n").find((text) => text.startsWith("{"))
    if (line === undefined) throw new Error(`the worker printed no report: ${stdout}${stderr}`)
    return { ...(JSON.parse(line) as ImportsReport), stderr }
  })

/** The PostgreSQL driver's modules (`@effect/sql-pg`, `pg`, `pg-*`, `pgpass`, `postgres-*`) among those loaded. */
const pgModules = (loaded: ImportsReport) =>
  [...loaded.esm, ...loaded.cjs].filter((module) => /\/node_modules\/(@effect\/sql-pg|pg[a-z-]*|postgres-[a-z]+)\//.test(module))

const logged = (backend: string, loaded: ImportsReport) =>
  console.info(`[channel-state imports] ${backend}: ${loaded.esm.length} ES modules, ${loaded.cjs.length} CommonJS, ${pgModules(loaded).length} of the PostgreSQL driver`)

describe("start-up loads what is used", () => {
  for (const backend of sqlBackends) {
    const title = backend.name === "pg" ? "a PostgreSQL store answers a lookup, and loads the driver" : "a SQLite store answers a lookup without loading the PostgreSQL driver"
    it.scopedLive(title, () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const loaded = yield* report(backend.name, db.location)
        logged(backend.name, loaded)
        expect(loaded.outcome).toEqual({ ok: { n: 42 } })
        expect(loaded.esm.some((module) => module.includes("/node_modules/@effect/sql-sqlite-node/")), "the SQLite client is loaded (and so seen by the hooks)").toBe(true)
        if (backend.name === "pg") {
          expect(loaded.esm.some((module) => module.includes("/node_modules/@effect/sql-pg/"))).toBe(true)
          expect(loaded.cjs.some((module) => module.includes("/node_modules/pg/lib/"))).toBe(true)
        } else {
          expect(pgModules(loaded)).toEqual([])
        }
      })
    )
  }

  it.scopedLive("a PostgreSQL store whose server is down loads the driver (ES and CommonJS modules) and answers Unavailable", () =>
    Effect.gen(function* () {
      const loaded = yield* report("pg", DOWN_URL)
      logged("pg, server down", loaded)
      expect(loaded.outcome).toMatchObject({ failed: { tag: "StateStoreError", reason: "Unavailable" } })
      expect(loaded.esm.some((module) => module.includes("/node_modules/@effect/sql-pg/"))).toBe(true)
      expect(loaded.esm.some((module) => module.includes("/node_modules/pg/"))).toBe(true)
      expect(loaded.cjs.some((module) => module.includes("/node_modules/pg/lib/"))).toBe(true)
    })
  )

  it.scopedLive("a PostgreSQL driver that cannot be imported fails building the store with OpenFailed (a typed error, not a defect)", () =>
    Effect.gen(function* () {
      const loaded = yield* report("pg-unloadable", DOWN_URL)
      expect(loaded.outcome).toMatchObject({ failed: { tag: "StateStoreError", reason: "OpenFailed" } })
      expect((loaded.outcome as { failed: { detail: string } }).failed.detail).toMatch(/^cannot load the PostgreSQL driver \(@effect\/sql-pg\): Cannot find package '@effect\/sql-pg\/PgClient'/)
      expect(pgModules(loaded)).toEqual([])
    })
  )

  it.scopedLive("the CLI on a PostgreSQL driver that cannot be imported says so in one line and says to reinstall (exit 1)", () =>
    Effect.gen(function* () {
      const loaded = yield* report("cli-pg-unloadable", DOWN_URL)
      expect(loaded.outcome).toEqual({ ok: 1 })
      expect(loaded.stderr).toContain("cannot load the PostgreSQL driver (@effect/sql-pg)")
      expect(loaded.stderr).toContain("Reinstall channel-state")
      expect(loaded.stderr).not.toMatch(/\n\s+at /)
    })
  )

  it.scopedLive("channel-state --help loads no Effect module and no store code", () =>
    Effect.gen(function* () {
      const loaded = yield* report("cli-help")
      expect(loaded.outcome).toEqual({ ok: 0 })
      expect(loaded.esm.some((module) => module.endsWith("/src/cli/main.ts"))).toBe(true)
      expect(loaded.esm.filter((module) => module.includes("/node_modules/") || module.includes("/src/layers/"))).toEqual([])
    })
  )
})
