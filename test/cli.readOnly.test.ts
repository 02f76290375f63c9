/**
 * Attacks on "the CLI reads what it is given without changing it, and diagnoses permissions as
 * permissions": `inspect` and `doctor` on a database whose file and directory are made
 * immutable (`chattr +i`, root-proof) or read-only, on a directory, on an empty file; and
 * `--version` on every command. Nothing may be left beside the database, and doctor must
 * never tell an operator to move a healthy file aside.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { closeResources, expectedSummary, fixtureRows, freshDir, removeTempDirs, sqliteFixture } from "./support/cliFixture.js"
import { buildCli, runCli } from "./support/cliProcess.js"
import { chattrWorks } from "./support/outages.js"

beforeAll(() => buildCli(), 120_000)
afterAll(async () => {
  removeTempDirs()
  await closeResources()
})

const listing = (dir: string) => fs.readdirSync(dir).sort()
const MOVE_ASIDE = /move the file|is damaged/i

/** Runs inspect (JSON) and doctor on `file`; returns what they said and the directory after. */
const readBoth = async (file: string) => {
  const inspect = await runCli(["inspect", "--db", file, "--json"])
  const doctor = await runCli(["doctor", "--db", file])
  return { inspect, doctor, after: listing(path.dirname(file)) }
}

describe("the CLI on read-only media", () => {
  if (chattrWorks) {
    it("file and directory immutable (chattr +i): inspect reads every namespace, doctor says read-only (not damaged), nothing is left beside the file", async () => {
      const file = await sqliteFixture()
      const dir = path.dirname(file)
      const before = listing(dir)
      execFileSync("chattr", ["+i", file, dir])
      try {
        const { inspect, doctor, after } = await readBoth(file)
        expect(inspect.code, inspect.stderr).toBe(0)
        const namespaces = JSON.parse(inspect.stdout).namespaces as ReadonlyArray<{ readonly owner: string; readonly namespace: string; readonly live: number }>
        expect(namespaces.map((n) => ({ owner: n.owner, namespace: n.namespace, live: n.live }))).toEqual(
          expectedSummary(fixtureRows).map((g) => ({ owner: g.owner, namespace: g.namespace, live: g.live }))
        )
        expect(doctor.stdout).toMatch(/^ok +integrity/m)
        expect(doctor.stdout).toMatch(/^FAIL +writable +read-only/m)
        expect(doctor.stdout).not.toMatch(MOVE_ASIDE)
        expect(after).toEqual(before)
      } finally {
        execFileSync("chattr", ["-i", file, dir])
      }
    })
  }

  it("a database no process has open (no -wal beside it): inspect and doctor leave no -wal or -shm behind", async () => {
    const file = await sqliteFixture()
    const before = listing(path.dirname(file))
    expect(before.some((name) => name.endsWith("-wal") || name.endsWith("-shm"))).toBe(false)
    const { inspect, doctor, after } = await readBoth(file)
    expect(inspect.code, inspect.stderr).toBe(0)
    expect(doctor.stdout).toMatch(/^ok +integrity/m)
    expect(after).toEqual(before)
  })

  it("--db naming a directory: doctor says to give the file inside it, never chmod 600 on the directory or move it aside", async () => {
    const dir = freshDir()
    const doctor = await runCli(["doctor", "--db", dir])
    expect(doctor.code).toBe(1)
    expect(doctor.stdout).toContain("give the state file, not its directory")
    expect(doctor.stdout).not.toMatch(/chmod 600/)
    expect(doctor.stdout).not.toMatch(MOVE_ASIDE)
  })

  it("an empty file is called empty, not a file that starts with the SQLite header", async () => {
    const file = path.join(freshDir(), "empty.sqlite")
    fs.writeFileSync(file, "")
    const doctor = await runCli(["doctor", "--db", file])
    expect(doctor.stdout).toMatch(/^ok +file +empty \(0 bytes\)/m)
    expect(doctor.stdout).not.toContain("starts with the SQLite header")
    expect(fs.statSync(file).size).toBe(0)
  })
})

describe("--version", () => {
  const version = JSON.parse(fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), "..", "package.json"), "utf8")).version as string
  for (const args of [["--version"], ["-v"], ["demo", "--version"], ["inspect", "--version"], ["purge", "--version"], ["doctor", "--version"]]) {
    it(`channel-state ${args.join(" ")} prints the version and exits 0`, async () => {
      const result = await runCli(args)
      expect({ code: result.code, stdout: result.stdout.trim() }).toEqual({ code: 0, stdout: `channel-state ${version}` })
    })
  }
})
