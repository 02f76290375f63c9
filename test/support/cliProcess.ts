/**
 * Runs the `channel-state` command as a user does: `node bin/channel-state.js …` in a child
 * process (stdin closed, so not a terminal), or inside a pseudo-terminal through `script(1)`
 * to answer a question. Every run is checked for stack traces.
 */
import { execFileSync, execSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { expect } from "@effect/vitest"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const BIN = path.join(ROOT, "bin", "channel-state.js")

/**
 * Compiles src/ to dist/ (what bin/channel-state.js imports). tsc emits even when some file
 * has a type error; that error is reported by `npm run typecheck`, not here.
 */
export const buildCli = (): void => {
  try {
    execSync("npx tsc -p tsconfig.build.json", { cwd: ROOT, stdio: "pipe" })
  } catch (error) {
    if (!fs.existsSync(path.join(ROOT, "dist", "cli", "main.js"))) throw error
  }
}

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const STACK_LINE = /^ {4}at /m

const checked = (result: CliResult): CliResult => {
  expect(result.stdout, "stdout holds a stack trace").not.toMatch(STACK_LINE)
  expect(result.stderr, "stderr holds a stack trace").not.toMatch(STACK_LINE)
  return result
}

/** Runs the CLI with `args`; stdin is closed at once (no terminal). */
export const runCli = (args: ReadonlyArray<string>, options: { readonly timeoutMs?: number; readonly env?: Readonly<Record<string, string>> } = {}): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", ...options.env } })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d
    })
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d
    })
    child.stdin.end()
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`channel-state ${args.join(" ")} did not finish in time\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, options.timeoutMs ?? 30_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve(checked({ code, stdout, stderr }))
    })
  })

/** Whether `script(1)` (util-linux) is there to give the CLI a terminal. */
export const hasScript = (() => {
  try {
    execFileSync("script", ["--version"], { stdio: "pipe" })
    return true
  } catch {
    return false
  }
})()

const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`

/**
 * Runs the CLI in a pseudo-terminal and types `answer` + Enter once `prompt` appears on its
 * output. Output is the terminal's (stdout and stderr together).
 */
export const runCliInTerminal = (args: ReadonlyArray<string>, prompt: string, answer: string): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const command = [process.execPath, BIN, ...args].map(shellQuote).join(" ")
    const child = spawn("script", ["-qefc", command, "/dev/null"], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] })
    let output = ""
    let answered = false
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      output += d
      if (!answered && output.includes(prompt)) {
        answered = true
        child.stdin.write(`${answer}\r`)
      }
    })
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      output += d
    })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`channel-state ${args.join(" ")} (in a terminal) did not finish in time\noutput: ${output}`))
    }, 30_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      child.stdin.destroy()
      resolve(checked({ code, stdout: output, stderr: "" }))
    })
  })
