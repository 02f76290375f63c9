/**
 * Attacks on "it installs and compiles as the README says": the packed tarball is installed
 * into two fresh projects with exactly the README's install lines (the tarball standing in for
 * `channel-state`) — an Effect 3 plugin, and a Promise host with no Effect code of its own —
 * every `ts` block of the README is typechecked there **without** `skipLibCheck` and with
 * declarations emitted (a type in a public signature that is not exported fails), and the
 * Promise example's state is checked across two processes.
 *
 * The host's own values the examples name (`gatewayConfig`, `accountId`, …) are declared in a
 * prelude. A block that needs packages a plugin would add for it says so in a comment line
 * before it (`<!-- needs: … -->`) and is not compiled there; the test pins which blocks those
 * are. The Chat SDK block (`needs: chat`) is compiled in a third project, a Chat SDK bot
 * installed with the README's own install line, whose `channel-state/chat-sdk` state is then
 * checked across two processes.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const readme = fs.readFileSync(path.join(repoRoot, "README.md"), "utf8")
const work = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-install-"))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** The README's install lines (the ```sh block after each heading line). */
const installLines = (after: string): ReadonlyArray<string> => {
  const rest = readme.split(after)[1]
  const block = rest?.split("```sh\n")[1]?.split("\n```")[0]
  if (block === undefined) throw new Error(`no install block after "${after}" in the README`)
  return block.split("\n").filter((line) => line.startsWith("npm "))
}

/** Every ```ts block of the README, with the comment line before it. */
const tsBlocks = (): ReadonlyArray<{ readonly index: number; readonly code: string; readonly needs: string | undefined }> => {
  const blocks: Array<{ index: number; code: string; needs: string | undefined }> = []
  const pattern = /(?:<!-- needs: ([^>]*) -->\n)?```ts\n([\s\S]*?)\n```/g
  for (const match of readme.matchAll(pattern)) blocks.push({ index: blocks.length, code: match[2]!, needs: match[1] })
  return blocks
}

/** What a host has in scope where the README's examples run. */
const PRELUDE = `
declare const gatewayConfig: unknown
declare const accountId: string
declare const channelId: string
declare const threadTs: string
declare const agentId: string
declare const messageId: string
declare const customId: string
declare const message: { readonly guid: string }
declare const reply: (text: string) => Promise<void>
declare const handle: (message: { readonly guid: string }) => Promise<void>
`

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    declaration: true,
    outDir: "dist",
    skipLibCheck: false,
    types: ["node"]
  },
  include: ["src"]
}

/**
 * The headers of the Node running this test, for native modules built in the fresh projects
 * (npm may be set to build against another Node's headers: on Node 24 that module would not load).
 */
const nodeHome = path.resolve(path.dirname(process.execPath), "..")
const nodedir = fs.existsSync(path.join(nodeHome, "include", "node", "node_version.h")) ? { npm_config_nodedir: nodeHome } : {}

/** Runs `command` (without blocking this process: installs take minutes) and collects its output. */
const run = (cwd: string, command: string, args: ReadonlyArray<string>): Promise<{ readonly code: number | null; readonly output: string; readonly stdout: string }> =>
  new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, npm_config_fund: "false", npm_config_audit: "false", ...nodedir } })
    let stdout = ""
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk
      output += chunk
    })
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk
    })
    child.on("error", (error) => resolve({ code: -1, output: `${output}${error.message}`, stdout }))
    child.on("close", (code) => resolve({ code, output, stdout }))
  })

/** A fresh project with `lines` run in it (the tarball for `channel-state`), plus TypeScript. */
const project = async (name: string, lines: ReadonlyArray<string>, tarball: string) => {
  const dir = path.join(work, name)
  fs.mkdirSync(path.join(dir, "src"), { recursive: true })
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true, type: "module" }, null, 2))
  fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2))
  const log: Array<string> = []
  for (const line of [...lines, "npm install -D typescript@~5.9 @types/node@^20"]) {
    const args = line
      .split(/\s+/)
      .slice(1)
      .map((arg) => (arg === "channel-state" ? tarball : arg))
    const result = await run(dir, "npm", [...args, "--prefer-offline", "--no-audit", "--no-fund"])
    log.push(`$ ${line}\n${result.output}`)
    if (result.code !== 0) throw new Error(`${name}: "${line}" failed:\n${log.join("\n")}`)
  }
  return dir
}

const typecheck = (dir: string) => run(dir, path.join(dir, "node_modules", ".bin", "tsc"), ["-p", "."])

let tarball = ""
beforeAll(async () => {
  const packed = await run(repoRoot, "npm", ["pack", "--pack-destination", work, "--silent"])
  if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.output}`)
  tarball = path.join(work, packed.stdout.trim().split("\n").pop()!)
}, 300_000)

// The two projects install side by side.
describe.concurrent("the packed package, installed as the README says", () => {
  it("an Effect 3 plugin: the install lines work, one copy of effect, every README block typechecks without skipLibCheck", { timeout: 600_000 }, async () => {
    const dir = await project("effect-plugin", installLines("An Effect 3 plugin"), tarball)
    const copies = (await run(dir, "npm", ["ls", "effect", "--all", "--parseable"])).stdout.split("\n").filter((line) => line.endsWith(`${path.sep}effect`))
    expect(new Set(copies).size).toBe(1)
    const blocks = tsBlocks()
    // Only the exporter example (OpenTelemetry) and the Chat SDK wiring (`chat`, compiled in the bot project below) need packages of their own; every other block is compiled.
    expect(blocks.filter((block) => block.needs !== undefined).map((block) => block.needs)).toEqual(["@effect/opentelemetry and OpenTelemetry exporters", "chat"])
    for (const block of blocks.filter((b) => b.needs === undefined)) {
      fs.writeFileSync(path.join(dir, "src", `block${block.index}.ts`), `${PRELUDE}\n${block.code}\nexport {}\n`)
    }
    expect(blocks.length).toBeGreaterThanOrEqual(5)
    // What a plugin package exports from its entrypoint: every type in these must be nameable (no TS2742).
    fs.writeFileSync(
      path.join(dir, "src", "entrypoint.ts"),
      `import { createPluginState, PluginRuntime } from "channel-state"
import { createOpenClawState } from "channel-state/openclaw"
declare const gatewayConfig: unknown
export const state = await createPluginState({ pluginId: "slack", config: gatewayConfig })
export const runtime = PluginRuntime.makeRuntime({ pluginId: "slack", config: gatewayConfig, store: { pgUrl: "postgres://localhost/db" } })
export const layer = PluginRuntime.layer({ pluginId: "slack", config: gatewayConfig })
export const openclaw = createOpenClawState({ pluginId: "slack", pgUrl: "postgres://localhost/db" })
export const openclawStore = openclaw.openKeyedStore<{ n: number }>({ namespace: "jobs", retention: "retained" })
`
    )
    const checked = await typecheck(dir)
    expect(checked.output).toBe("")
    expect(checked.code).toBe(0)
  })

  it("a Promise host without Effect code: the one install line works, the Promise example typechecks, and its state survives into a second process", { timeout: 600_000 }, async () => {
    const dir = await project("promise-host", installLines("A Promise host with no Effect code"), tarball)
    const example = tsBlocks().find((block) => block.code.includes("createPluginState"))
    expect(example).toBeDefined()
    fs.writeFileSync(path.join(dir, "src", "example.ts"), `${PRELUDE}\n${example!.code}\nexport {}\n`)
    // The example's own calls, run twice against one file: the second process sees the first's state.
    fs.writeFileSync(
      path.join(dir, "src", "restart.ts"),
      `import { createPluginState } from "channel-state"
const file = process.argv[2]!
const gatewayConfig = { plugins: { entries: { discord: { config: { experimentalPersistentState: true } } } } }
const state = await createPluginState({ pluginId: "discord", config: gatewayConfig, store: { sqlitePath: file } })
const claim = await state.bluebubbles.claim({ accountId: "acc", guid: "g-1" })
if (claim.status === "claimed") await claim.finalize()
const first = process.argv[3] === "first"
if (first) state.discord.register({ entries: [{ id: "approve-42", kind: "button", label: "Approve" }], messageId: "m-1" })
const entry = first ? undefined : await state.discord.resolveComponent({ id: "approve-42" })
console.log(JSON.stringify({ claim: claim.status, persistent: state.persistent, health: (await state.health()).status, component: entry === undefined ? null : entry.id }))
await state.dispose()
`
    )
    const checked = await typecheck(dir)
    expect(checked.output).toBe("")
    expect(checked.code).toBe(0)
    const file = path.join(dir, "state.sqlite")
    const runOnce = async (which: string) => {
      const result = await run(dir, process.execPath, [path.join(dir, "dist", "restart.js"), file, which])
      if (result.code !== 0) throw new Error(`the ${which} process failed:\n${result.output}`)
      // The example's answer is its last line; anything before it is the runtime's own log.
      const lines = result.stdout.trim().split("\n")
      expect(lines.slice(0, -1).filter((line) => /level=(WARN|ERROR|FATAL)/.test(line)), `the ${which} process logged problems`).toEqual([])
      return JSON.parse(lines.at(-1) ?? "")
    }
    expect(await runOnce("first")).toEqual({ claim: "claimed", persistent: true, health: "ok", component: null })
    expect(await runOnce("second")).toEqual({ claim: "duplicate", persistent: true, health: "ok", component: "approve-42" })
  })
  it("a Chat SDK bot: the install line works, the Chat SDK wiring typechecks without skipLibCheck, and channel-state/chat-sdk keeps its state into a second process", { timeout: 600_000 }, async () => {
    const dir = await project("chat-bot", installLines("A Chat SDK bot"), tarball)
    const wiring = tsBlocks().filter((block) => block.needs === "chat")
    expect(wiring).toHaveLength(1)
    // The bot's own platform adapter, which the wiring names.
    fs.writeFileSync(path.join(dir, "src", "wiring.ts"), `import type { Adapter } from "chat"\ndeclare const slack: Adapter\n${wiring[0]!.code}\nexport { bot }\n`)
    fs.writeFileSync(
      path.join(dir, "src", "restart.ts"),
      `import { ChatStateError, createChatState } from "channel-state/chat-sdk"
const state = createChatState({ sqlitePath: process.argv[2]! })
await state.connect()
const first = await state.setIfNotExists("dedupe:slack:E1", true, 600_000)
const subscribed = await state.isSubscribed("slack:C1:1.1")
await state.subscribe("slack:C1:1.1")
const refused = await state.acquireLock("slack:C1:1.1", -1).catch((error: unknown) => (error instanceof ChatStateError ? error.reason : "other"))
await state.disconnect()
console.log(JSON.stringify({ first, subscribed, refused }))
`
    )
    const checked = await typecheck(dir)
    expect(checked.output).toBe("")
    expect(checked.code).toBe(0)
    const file = path.join(dir, "state.sqlite")
    const runOnce = async () => {
      const result = await run(dir, process.execPath, [path.join(dir, "dist", "restart.js"), file])
      if (result.code !== 0) throw new Error(`the bot process failed:\n${result.output}`)
      return JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "")
    }
    expect(await runOnce()).toEqual({ first: true, subscribed: false, refused: "InvalidArgument" })
    expect(await runOnce()).toEqual({ first: false, subscribed: true, refused: "InvalidArgument" })
  })
})
