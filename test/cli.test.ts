/**
 * The `channel-state` command as operators and newcomers run it: spawned processes against
 * real SQLite files (and PostgreSQL when CHANNEL_STATE_TEST_PG_URL is set), asserting on
 * output, exit codes, and the files left behind. Every run is checked for stack traces.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { SqlClient } from "@effect/sql/SqlClient"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { pgUrl } from "./support/backends.js"
import { SCHEMA_VERSION } from "../src/layers/store/migrations.js"
import {
  closeResources,
  expectedSummary,
  fixtureRows,
  freshDir,
  pgExec,
  pgFixture,
  removeTempDirs,
  sqliteExec,
  sqliteFixture
} from "./support/cliFixture.js"
import { buildCli, hasScript, runCli, runCliInTerminal } from "./support/cliProcess.js"

beforeAll(() => buildCli(), 120_000)

afterAll(async () => {
  removeTempDirs()
  await closeResources()
})

const modeOf = (file: string) => fs.statSync(file).mode & 0o777

/** `inspect` and `doctor` on `target` (e.g. `["--db", file]`) both say it is not a channel-state database, and exit 1. */
const expectNotChannelState = async (target: ReadonlyArray<string>) => {
  const r = await runCli(["inspect", ...target])
  expect(r.code).toBe(1)
  expect(r.stderr).toContain("not a channel-state database")
  const doctor = await runCli(["doctor", ...target])
  expect(doctor.code).toBe(1)
  expect(doctor.stdout).toMatch(/^FAIL +schema +not a channel-state database/m)
}

interface NamespaceJson {
  readonly owner: string
  readonly namespace: string
  readonly live: number
  readonly expired: number
  readonly bytes: number
  readonly oldest: string
  readonly newest: string
}
interface EntryJson {
  readonly owner: string
  readonly namespace: string
  readonly key: string
  readonly createdAt: string
  readonly expiresAt: string | null
  readonly expired: boolean
  readonly bytes: number
  readonly value?: unknown
}
interface InspectJson {
  readonly database: { readonly backend: string; readonly location: string; readonly schemaVersion: number }
  readonly namespaces: ReadonlyArray<NamespaceJson>
  readonly entries?: ReadonlyArray<EntryJson>
  readonly entriesTruncated?: boolean
}
interface DoctorJson {
  readonly ok: boolean
  readonly checks: ReadonlyArray<{ readonly name: string; readonly status: string; readonly detail: string; readonly fix?: string }>
}
const parse = <T>(stdout: string): T => JSON.parse(stdout) as T

/** A database with the fixture: the CLI flags that reach it, and a way to stamp its schema. */
interface Fixture {
  readonly flags: ReadonlyArray<string>
  readonly stampSchema: (version: number) => Promise<void>
}

interface Backend {
  readonly name: "sqlite" | "pg"
  readonly fixture: () => Promise<Fixture>
}

const stamp = (version: number) => (sql: SqlClient) =>
  sql`INSERT INTO channel_state_migrations (migration_id, name) VALUES (${version}, ${"from_the_future"})`

const sqliteBackend: Backend = {
  name: "sqlite",
  fixture: async () => {
    const file = await sqliteFixture()
    return { flags: ["--db", file], stampSchema: (v) => sqliteExec(file, stamp(v)) }
  }
}

const backends: ReadonlyArray<Backend> = pgUrl
  ? [
      sqliteBackend,
      {
        name: "pg",
        fixture: async () => {
          const url = await pgFixture(pgUrl as string)
          return { flags: ["--pg", url], stampSchema: (v) => pgExec(url, stamp(v)) }
        }
      }
    ]
  : [sqliteBackend]

const summaryOf = async (flags: ReadonlyArray<string>, ...more: Array<string>) => {
  const r = await runCli(["inspect", ...flags, "--json", ...more])
  expect(r.code, r.stderr).toBe(0)
  return parse<InspectJson>(r.stdout)
}

const counts = (report: InspectJson) => report.namespaces.map((n) => `${n.owner}/${n.namespace}: ${n.live} live, ${n.expired} expired`)
const keysOf = (report: InspectJson) => (report.entries ?? []).map((e) => `${e.namespace}/${e.key}`).sort()

describe.concurrent("channel-state demo (npm start)", () => {
  const cacheRows = [
    /Slack thread participation .*dropped \(no mention\) +answered +ok/,
    /Discord components \+ modals .*This component has expired\. +handled +ok/,
    /MS Teams sent messages .*dropped \(no mention\) +answered \(implicit mention\) +ok/,
    /Matrix approval reactions .*ignored \(approval hangs\) +approved \(allow-once\) +ok/,
    /BlueBubbles inbound dedupe .*answered twice +deduped +ok/,
    /Feishu message dedupe .*answered twice +deduped +ok/
  ]

  it("prints the six caches, off vs on, and exits 0", async () => {
    const r = await runCli(["demo"])
    expect(r.code, r.stderr).toBe(0)
    for (const row of cacheRows) expect(r.stdout).toMatch(row)
    expect(r.stdout).toContain("All six caches behave as they should")
  })

  it("--stats also prints the cache counters", async () => {
    const r = await runCli(["demo", "--stats"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain("Counters")
    expect(r.stdout).toMatch(/plugin +namespace +memory_hits +store_hits/)
    expect(r.stdout).toMatch(/slack +slack\.thread-participation/)
  })

  it("--db keeps the state file, which inspect and doctor then accept", async () => {
    const file = path.join(freshDir(), "kept", "state.sqlite")
    const r = await runCli(["demo", "--db", file])
    expect(r.code, r.stderr).toBe(0)
    expect(fs.existsSync(file)).toBe(true)
    expect((await runCli(["inspect", "--db", file])).stdout).toMatch(/slack +slack\.thread-participation +1 +0/)
    expect((await runCli(["doctor", "--db", file])).code).toBe(0)
  })

  if (pgUrl) {
    const baseUrl = pgUrl
    it("--pg runs the same demo on PostgreSQL", async () => {
      const url = await pgFixture(baseUrl, [])
      const r = await runCli(["demo", "--pg", url])
      expect(r.code, r.stderr).toBe(0)
      for (const row of cacheRows) expect(r.stdout).toMatch(row)
    })
  }
})

describe.concurrent("usage", () => {
  it("--help on the CLI and on every command exits 0", async () => {
    const top = await runCli(["--help"])
    expect(top.code).toBe(0)
    for (const name of ["demo", "inspect", "purge", "doctor"]) expect(top.stdout).toMatch(new RegExp(`^  ${name} `, "m"))
    for (const name of ["demo", "inspect", "purge", "doctor"]) {
      const r = await runCli([name, "--help"])
      expect(r.code, name).toBe(0)
      expect(r.stdout).toContain(`Usage: channel-state ${name}`)
    }
  })

  it.each([
    [[], "Usage: channel-state"],
    [["frobnicate"], 'unknown command "frobnicate"'],
    [["inspect", "--db", "x.sqlite", "--bogus"], "Unknown option '--bogus'"],
    [["doctor", "--db"], "--db"],
    [["inspect"], "Give --db PATH"],
    [["doctor", "--db", "a.sqlite", "--pg", "postgres://localhost/x"], "not both"],
    [["purge", "--db", "a.sqlite"], "--owner is required"],
    [["purge", "--db", "a.sqlite", "--owner", ""], "--owner needs a value"],
    [["inspect", "--db", "a.sqlite", "--values"], "--values needs --owner"],
    [["inspect", "--db", "a.sqlite", "--owner", "alpha", "--limit", "lots"], "--limit must be a whole number"],
    [["inspect", "--pg", "mysql://localhost/x"], "--pg needs a PostgreSQL URL"]
  ])("%j is a usage error (exit 2)", async (args, message) => {
    const r = await runCli(args)
    expect(r.code).toBe(2)
    expect(r.stdout + r.stderr).toContain(message)
  })
})

for (const backend of backends) {
  describe.concurrent(`inspect (${backend.name})`, () => {
    it("prints live, expired, bytes, oldest and newest per owner and namespace — no values", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["inspect", ...flags])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/owner +namespace +live +expired +bytes +oldest +newest/)
      const iso = "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"
      for (const g of expectedSummary(fixtureRows)) {
        expect(r.stdout).toMatch(new RegExp(`^${g.owner} +${g.namespace} +${g.live} +${g.expired} +${g.bytes} +${iso} +${iso}$`, "m"))
      }
      expect(r.stdout).toContain("2 owners, 3 namespaces: 7 live, 4 expired")
      expect(r.stdout).not.toContain("secret-")
    })

    it("--json reports the same numbers (bytes in UTF-8, not characters)", async () => {
      const { flags } = await backend.fixture()
      const report = await summaryOf(flags)
      expect(report.database).toMatchObject({ backend: backend.name, schemaVersion: SCHEMA_VERSION })
      expect(report.namespaces.map((n) => ({ owner: n.owner, namespace: n.namespace, live: n.live, expired: n.expired, bytes: n.bytes }))).toEqual(
        expectedSummary(fixtureRows)
      )
      for (const n of report.namespaces) expect(Date.parse(n.oldest)).toBeLessThanOrEqual(Date.parse(n.newest))
      expect(report.entries).toBeUndefined()
      expect(JSON.stringify(report)).not.toContain("secret-")
    })

    it("--owner narrows and lists its entries; values only with --values", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["inspect", ...flags, "--owner", "beta"])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^beta +threads +2 +1 /m)
      expect(r.stdout).not.toMatch(/^alpha /m)
      expect(r.stdout).toMatch(/namespace +key +bytes +created +expires +state$/m)
      expect(r.stdout).toMatch(/^threads +threads-live-0 +\d+ +\S+ +\S+ +live$/m)
      expect(r.stdout).toMatch(/^threads +threads-old-0 +\d+ +\S+ +\S+ +expired$/m)
      expect(r.stdout).not.toContain("secret-")

      const withValues = await runCli(["inspect", ...flags, "--owner", "beta", "--values"])
      expect(withValues.code).toBe(0)
      expect(withValues.stdout).toContain("secret-beta-threads-0 café ✅")
      expect(withValues.stdout).not.toContain("secret-alpha")

      const report = await summaryOf(flags, "--owner", "beta")
      expect(keysOf(report)).toEqual(["threads/threads-live-0", "threads/threads-live-1", "threads/threads-old-0"])
      for (const e of report.entries ?? []) expect(e).not.toHaveProperty("value")
      const valued = await summaryOf(flags, "--owner", "beta", "--values")
      const live0 = valued.entries?.find((e) => e.key === "threads-live-0")
      expect(live0?.value).toEqual({ text: "secret-beta-threads-0 café ✅", n: 0 })
      expect(live0).toMatchObject({ owner: "beta", namespace: "threads", expired: false })
    })

    it("--namespace narrows across owners; with --owner it narrows the entries too; --limit caps them", async () => {
      const { flags } = await backend.fixture()
      expect(counts(await summaryOf(flags, "--namespace", "threads"))).toEqual(["alpha/threads: 3 live, 1 expired", "beta/threads: 2 live, 1 expired"])
      const both = await summaryOf(flags, "--owner", "alpha", "--namespace", "buttons")
      expect(counts(both)).toEqual(["alpha/buttons: 2 live, 2 expired"])
      expect(keysOf(both)).toEqual([
        "buttons/buttons-live-0",
        "buttons/buttons-live-1",
        "buttons/buttons-old-0",
        "buttons/buttons-old-1"
      ])
      const limited = await summaryOf(flags, "--owner", "alpha", "--limit", "2")
      expect(limited.entries).toHaveLength(2)
      expect(limited.entriesTruncated).toBe(true)
      const none = await runCli(["inspect", ...flags, "--owner", "gamma"])
      expect(none.code).toBe(0)
      expect(none.stdout).toContain('No rows for owner "gamma"')
    })

    it("refuses a database written by a newer channel-state", async () => {
      const fixture = await backend.fixture()
      await fixture.stampSchema(99)
      for (const args of [["inspect"], ["purge", "--owner", "alpha", "--yes"]]) {
        const r = await runCli([...args, ...fixture.flags])
        expect(r.code, args[0]).toBe(1)
        expect(r.stderr).toContain(`written by a newer channel-state (schema 99, this knows ${SCHEMA_VERSION})`)
      }
      const doctor = await runCli(["doctor", ...fixture.flags])
      expect(doctor.code).toBe(1)
      expect(doctor.stdout).toMatch(new RegExp(`^FAIL +schema +written by a newer channel-state \\(schema 99, this knows ${SCHEMA_VERSION}\\)`, "m"))
      expect(doctor.stdout).toMatch(/^skip +probe/m)
    })
  })

  describe.concurrent(`purge (${backend.name})`, () => {
    it("--owner --namespace --yes deletes only that owner's namespace", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["purge", ...flags, "--owner", "alpha", "--namespace", "threads", "--yes"])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain('Will delete 4 rows of owner "alpha", namespace "threads"')
      expect(r.stdout).toMatch(/^threads +4$/m)
      expect(r.stdout).toContain("Deleted 4 rows.")
      expect(counts(await summaryOf(flags))).toEqual(["alpha/buttons: 2 live, 2 expired", "beta/threads: 2 live, 1 expired"])
    })

    it("--owner --yes deletes every row of that owner and no other", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["purge", ...flags, "--owner", "alpha", "--yes", "--json"])
      expect(r.code, r.stderr).toBe(0)
      expect(parse<Record<string, unknown>>(r.stdout)).toMatchObject({
        owner: "alpha",
        namespace: null,
        expiredOnly: false,
        deleted: 8,
        byNamespace: [
          { namespace: "buttons", rows: 4 },
          { namespace: "threads", rows: 4 }
        ]
      })
      expect(r.stderr).toContain("Will delete 8 rows")
      expect(counts(await summaryOf(flags))).toEqual(["beta/threads: 2 live, 1 expired"])
    })

    it("--expired-only deletes only the owner's expired rows", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["purge", ...flags, "--owner", "alpha", "--expired-only", "--yes"])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain('Will delete 3 expired rows of owner "alpha"')
      expect(counts(await summaryOf(flags))).toEqual([
        "alpha/buttons: 2 live, 0 expired",
        "alpha/threads: 3 live, 0 expired",
        "beta/threads: 2 live, 1 expired"
      ])
    })

    it("without --yes and without a terminal it refuses and deletes nothing", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["purge", ...flags, "--owner", "beta"])
      expect(r.code).toBe(1)
      expect(r.stdout).toContain('Will delete 3 rows of owner "beta"')
      expect(r.stderr).toContain("refusing to delete without confirmation")
      expect(r.stderr).toContain("--yes")
      expect(counts(await summaryOf(flags))).toHaveLength(3)
    })

    it("an owner with no rows: nothing to delete, exit 0", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["purge", ...flags, "--owner", "gamma"])
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('Nothing to delete: no rows of owner "gamma"')
    })
  })

  describe.concurrent(`doctor (${backend.name})`, () => {
    it("passes every check on a healthy database and leaves no probe rows", async () => {
      const { flags } = await backend.fixture()
      const r = await runCli(["doctor", ...flags])
      expect(r.code, r.stdout).toBe(0)
      expect(r.stdout).not.toContain("FAIL")
      expect(r.stdout).toMatch(new RegExp(`^ok +schema +version ${SCHEMA_VERSION}`, "m"))
      expect(r.stdout).toMatch(/^ok +probe +wrote, read back and deleted a row as owner "channel-state\.doctor"/m)
      if (backend.name === "sqlite") {
        for (const check of ["file", "permissions", "integrity", "journal mode"]) expect(r.stdout).toMatch(new RegExp(`^ok +${check} `, "m"))
      }
      expect(r.stdout).toContain("All checks passed.")
      const report = parse<DoctorJson>((await runCli(["doctor", ...flags, "--json"])).stdout)
      expect(report.ok).toBe(true)
      expect(report.checks.every((c) => c.status === "ok")).toBe(true)
      expect(counts(await summaryOf(flags))).toHaveLength(3)
    })
  })
}

describe.concurrent("bad files (SQLite)", () => {
  it("a missing file: inspect, purge and doctor exit 1 and never create it", async () => {
    const dir = freshDir()
    const file = path.join(dir, "missing", "state.sqlite")
    for (const args of [["inspect"], ["purge", "--owner", "alpha", "--yes"], ["doctor"], ["doctor", "--json"]]) {
      const r = await runCli([...args, "--db", file])
      expect(r.code, args.join(" ")).toBe(1)
      expect(r.stdout + r.stderr).toContain(`no database at ${file}`)
    }
    expect(fs.existsSync(path.dirname(file))).toBe(false)
    expect(fs.readdirSync(dir)).toEqual([])
  })

  const garbage: ReadonlyArray<[string, Buffer]> = [
    ["a text file", Buffer.from("definitely not a database\n")],
    ["the SQLite header followed by noise", Buffer.concat([Buffer.from("SQLite format 3\u0000"), Buffer.alloc(8176, 0xa5)])]
  ]
  it.each(garbage)("%s: doctor reports it, every command exits 1, the file is left byte for byte", async (_, bytes) => {
    const dir = freshDir()
    const file = path.join(dir, "state.sqlite")
    fs.writeFileSync(file, bytes, { mode: 0o600 })
    const doctor = await runCli(["doctor", "--db", file])
    expect(doctor.code).toBe(1)
    expect(doctor.stdout).toMatch(/^FAIL +(file|integrity) .*not a SQLite database/m)
    expect(doctor.stdout).toContain("The file was not changed.")
    expect(doctor.stdout).not.toMatch(/^ok +probe/m)
    const report = parse<DoctorJson>((await runCli(["doctor", "--db", file, "--json"])).stdout)
    expect(report.ok).toBe(false)
    for (const args of [["inspect"], ["purge", "--owner", "alpha", "--yes"]]) {
      const r = await runCli([...args, "--db", file])
      expect(r.code, args[0]).toBe(1)
      expect(r.stderr).toContain("not a SQLite database")
    }
    expect(fs.readFileSync(file).equals(bytes)).toBe(true)
    expect(fs.readdirSync(dir)).toEqual(["state.sqlite"])
  })

  it("an empty SQLite file is not a channel-state database (and is not turned into one)", async () => {
    const file = path.join(freshDir(), "empty.sqlite")
    fs.writeFileSync(file, "", { mode: 0o600 })
    await expectNotChannelState(["--db", file])
    expect(fs.statSync(file).size).toBe(0)
  })

  it("doctor fails on group/other-readable file or directory permissions and says how to fix them", async () => {
    const file = await sqliteFixture()
    fs.chmodSync(file, 0o644)
    const r = await runCli(["doctor", "--db", file])
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/^FAIL +permissions +file is 0644/m)
    expect(r.stdout).toContain(`chmod 600 '${file}'`)
    fs.chmodSync(file, 0o600)
    fs.chmodSync(path.dirname(file), 0o755)
    const dir = await runCli(["doctor", "--db", file, "--json"])
    expect(dir.code).toBe(1)
    expect(parse<DoctorJson>(dir.stdout).checks.find((c) => c.name === "permissions")).toMatchObject({ status: "fail", fix: expect.stringContaining("chmod 700") })
    fs.chmodSync(path.dirname(file), 0o700)
    expect((await runCli(["doctor", "--db", file])).code).toBe(0)
    expect(modeOf(file)).toBe(0o600)
  })

  it("inspect opens read-only: the file's content is unchanged", async () => {
    const file = await sqliteFixture()
    const before = fs.readFileSync(file)
    expect((await runCli(["inspect", "--db", file, "--owner", "alpha", "--values"])).code).toBe(0)
    expect(fs.readFileSync(file).equals(before)).toBe(true)
  })
})

describe.concurrent("PostgreSQL errors", () => {
  it("an unreachable server: exit 1 with one clear line", async () => {
    const url = "postgres://postgres@127.0.0.1:1/nowhere"
    for (const args of [["inspect"], ["purge", "--owner", "alpha", "--yes"]]) {
      const r = await runCli([...args, "--pg", url])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/nowhere")
    }
    const doctor = await runCli(["doctor", "--pg", url])
    expect(doctor.code).toBe(1)
    expect(doctor.stdout).toMatch(/^FAIL +connection +cannot connect to PostgreSQL/m)
  })

  if (pgUrl) {
    const baseUrl = pgUrl
    it("a database without channel-state tables is reported, not migrated", async () => {
      const url = await pgFixture(baseUrl, [])
      await expectNotChannelState(["--pg", url])
      expect((await runCli(["inspect", "--pg", url])).stderr).toContain("not a channel-state database")
    })
  }

  it("a password in the URL is never printed", async () => {
    const r = await runCli(["inspect", "--pg", "postgres://postgres:hunter2@127.0.0.1:1/nowhere"])
    expect(r.code).toBe(1)
    expect(r.stdout + r.stderr).not.toContain("hunter2")
    expect(r.stderr).toContain("postgres://postgres:***@127.0.0.1:1/nowhere")
  })
})

// script(1) (util-linux) gives the CLI a terminal to ask on.
if (hasScript) {
  describe.concurrent("purge in a terminal", () => {
    it("asks, and an answer other than y deletes nothing (exit 1)", async () => {
      const file = await sqliteFixture()
      const r = await runCliInTerminal(["purge", "--db", file, "--owner", "alpha"], "Proceed? [y/N]", "n")
      expect(r.code).toBe(1)
      expect(r.stdout).toContain("Nothing deleted.")
      expect(counts(await summaryOf(["--db", file]))).toHaveLength(3)
    })

    it("asks, and y deletes (exit 0)", async () => {
      const file = await sqliteFixture()
      const r = await runCliInTerminal(["purge", "--db", file, "--owner", "alpha", "--namespace", "buttons"], "Proceed? [y/N]", "y")
      expect(r.code).toBe(0)
      expect(r.stdout).toContain("Deleted 4 rows.")
      expect(counts(await summaryOf(["--db", file]))).toEqual(["alpha/threads: 3 live, 1 expired", "beta/threads: 2 live, 1 expired"])
    })
  })
}
