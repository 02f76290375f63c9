/**
 * Attack 3 (CLI on read-only media): inspect and doctor read a database that is read-only,
 * immutable, or has a live/left -wal; leave nothing behind; diagnose locks as locks and
 * permissions as permissions, never as damage.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { closeResources, freshDir, removeTempDirs, sqliteFixture } from "./support/cliFixture.js"
import { BIN, buildCli, ROOT, runCli } from "./support/cliProcess.js"
import { chattrWorks } from "./support/outages.js"

beforeAll(() => buildCli(), 120_000)
afterAll(async () => {
  removeTempDirs()
  await closeResources()
})

const MOVE_ASIDE = /move the file|is damaged|damaged/i
const listing = (dir: string) => fs.readdirSync(dir).sort()

/** A gateway in a child process: WAL, no autocheckpoint, 5 uncheckpointed rows of owner "gamma"; `crash` SIGKILLs itself after writing. */
const GATEWAY = `
const Database = require(${JSON.stringify(path.join(ROOT, "node_modules", "better-sqlite3"))})
const [file, mode] = process.argv.slice(1)
const db = new Database(file)
db.pragma("journal_mode = WAL")
db.pragma("wal_autocheckpoint = 0")
if (mode === "exclusive") db.pragma("locking_mode = EXCLUSIVE")
const now = Date.now()
const ins = db.prepare("INSERT INTO channel_state_entries VALUES (?,?,?,?,?,?)")
for (let i = 0; i < 5; i++) ins.run("gamma", "live", "k" + i, JSON.stringify({ text: "x", n: i }), now, now + 3600000)
process.stdout.write("ready\\n")
if (mode === "crash") process.kill(process.pid, "SIGKILL")
setInterval(() => {}, 1000)
`

const gateways: Array<ChildProcess> = []
afterAll(() => {
  for (const g of gateways) g.kill("SIGKILL")
})

/** Starts the gateway on `file`; resolves once it wrote (and, for `crash`, once it died). */
const gateway = (file: string, mode: "live" | "exclusive" | "crash") =>
  new Promise<ChildProcess>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", GATEWAY, file, mode], { stdio: ["ignore", "pipe", "inherit"] })
    gateways.push(child)
    let out = ""
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d
      if (out.includes("ready") && mode !== "crash") resolve(child)
    })
    child.on("exit", () => (mode === "crash" ? resolve(child) : reject(new Error(`gateway exited: ${out}`))))
  })

/** Runs the CLI with a private TMPDIR, so its temp dirs can be counted without other runs' noise. */
const cli = (args: ReadonlyArray<string>, tmp: string) => runCli(args, { env: { TMPDIR: tmp }, timeoutMs: 60_000 })

const gammaLive = (inspectJson: string) => {
  try {
    const namespaces = JSON.parse(inspectJson).namespaces as ReadonlyArray<{ owner: string; live: number }>
    return namespaces.find((n) => n.owner === "gamma")?.live ?? 0
  } catch {
    return `not JSON: ${inspectJson.slice(0, 200)}`
  }
}

describe("CLI with a -wal beside the database", () => {
  it("a live gateway (WAL, uncheckpointed writes): inspect sees them, doctor is content, nothing is left (control)", async () => {
    const file = await sqliteFixture()
    const tmp = freshDir()
    const gw = await gateway(file, "live")
    const before = listing(path.dirname(file))
    const inspect = await cli(["inspect", "--db", file, "--json"], tmp)
    const doctor = await cli(["doctor", "--db", file], tmp)
    gw.kill("SIGKILL")
    expect(gammaLive(inspect.stdout), inspect.stderr).toBe(5)
    expect(doctor.stdout).not.toMatch(MOVE_ASIDE)
    expect(listing(path.dirname(file))).toEqual(before)
    expect(listing(tmp)).toEqual([])
  })

  it("a live gateway holding the file in exclusive locking mode: inspect reads a private copy, doctor calls the lock a lock, never damage", async () => {
    const file = await sqliteFixture()
    const tmp = freshDir()
    const gw = await gateway(file, "exclusive")
    const doctor = await cli(["doctor", "--db", file], tmp)
    const inspect = await cli(["inspect", "--db", file], tmp)
    gw.kill("SIGKILL")
    expect(doctor.stdout).toMatch(/lock/i)
    expect(doctor.stdout).not.toMatch(MOVE_ASIDE)
    expect(inspect.code, inspect.stderr).toBe(0)
  })

  if (chattrWorks) {
    it("a -wal without -shm (copied from a crashed gateway) on immutable media: inspect reads it, doctor says read-only, not damaged", async () => {
      const file = await sqliteFixture()
      const tmp = freshDir()
      await gateway(file, "crash")
      fs.rmSync(`${file}-shm`, { force: true })
      const dir = path.dirname(file)
      const before = listing(dir)
      execFileSync("chattr", ["+i", file, `${file}-wal`, dir])
      try {
        const inspect = await cli(["inspect", "--db", file, "--json"], tmp)
        const doctor = await cli(["doctor", "--db", file], tmp)
        expect({ code: inspect.code, gamma: gammaLive(inspect.stdout) }, inspect.stderr).toEqual({ code: 0, gamma: 5 })
        expect(doctor.stdout).not.toMatch(MOVE_ASIDE)
        expect(listing(dir)).toEqual(before)
        expect(listing(tmp)).toEqual([])
      } finally {
        execFileSync("chattr", ["-i", file, `${file}-wal`, dir])
      }
    })
  }

  it("a -wal without -shm on a writable directory: inspect sees the -wal's rows and creates no -shm beside the file", async () => {
    const file = await sqliteFixture()
    const tmp = freshDir()
    await gateway(file, "crash")
    fs.rmSync(`${file}-shm`, { force: true })
    const dir = path.dirname(file)
    const before = listing(dir)
    const inspect = await cli(["inspect", "--db", file, "--json"], tmp)
    expect(gammaLive(inspect.stdout), inspect.stderr).toBe(5)
    expect(listing(dir)).toEqual(before)
    expect(listing(tmp)).toEqual([])
  })
})

describe("CLI temp copies", () => {
  it("doctor interrupted (Ctrl-C) while reading its private copy leaves no channel-state-read-* dir (a copy of user state) in TMPDIR", async () => {
    const file = await sqliteFixture()
    // A large state file, so the copy and the integrity check take a while.
    execFileSync(process.execPath, [
      "-e",
      `const D = require(${JSON.stringify(path.join(ROOT, "node_modules", "better-sqlite3"))}); const db = new D(process.argv[1]); db.exec("CREATE TABLE pad(b BLOB); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000) INSERT INTO pad SELECT randomblob(100000) FROM c;"); db.close()`,
      file
    ])
    const tmp = freshDir()
    const child = spawn(process.execPath, [BIN, "doctor", "--db", file], { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"], env: { ...process.env, TMPDIR: tmp } })
    const exited = new Promise<void>((resolve) => child.on("close", () => resolve()))
    let interrupted = false
    while (!interrupted && child.exitCode === null) {
      if (listing(tmp).some((name) => name.startsWith("channel-state-read-"))) {
        child.kill("SIGINT")
        interrupted = true
      } else await new Promise((r) => setTimeout(r, 5))
    }
    await exited
    expect(interrupted, "the copy was seen").toBe(true)
    expect(listing(tmp)).toEqual([])
  }, 60_000)

  it("doctor sent SIGINT the instant its private copy's directory exists (before it runs another instruction) leaves no copy behind", async () => {
    const file = await sqliteFixture()
    const tmp = freshDir()
    const marker = path.join(freshDir(), "interrupted")
    const child = spawn(process.execPath, ["--import", path.join(ROOT, "test", "support", "interruptAfterMkdtemp.mjs"), BIN, "doctor", "--db", file], {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "ignore"],
      env: { ...process.env, TMPDIR: tmp, INTERRUPTED_AFTER_MKDTEMP: marker }
    })
    await new Promise<void>((resolve) => child.on("close", () => resolve()))
    // The signal came at that moment (whether the process then ended by it or had already
    // finished its read-only work), and nothing of the copy is left.
    expect(fs.readFileSync(marker, "utf8")).toMatch(/channel-state-read-/)
    expect(listing(tmp)).toEqual([])
  }, 60_000)
})
