/**
 * Child processes of the benchmarks: a bench module doubles as the script its children run
 * (`node --import tsx bench/<module>.ts <args>`), and parent and child talk in JSON lines —
 * commands on the child's stdin, replies on its stdout.
 *
 * Parent side: {@link spawnChild}. Child side: {@link isMain} (is this module the script
 * being run?), {@link say}, {@link commands}, {@link runChild}.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

/** The repository root (tsx and the packages resolve from there). */
export const REPO_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))

/** A line every child may print instead of its reply: it failed. */
export interface FatalLine {
  readonly type: "fatal"
  readonly message: string
}

/** A running child process speaking JSON lines. */
export interface Child<L extends { readonly type: string }> {
  readonly process: ChildProcess
  /** The next line of type `type` not yet taken (lines of other types are kept for later calls). */
  readonly next: <T extends L["type"]>(type: T, timeoutMs?: number) => Promise<Extract<L, { readonly type: T }>>
  /** Writes one command line to the child's stdin. */
  readonly send: (command: object) => void
  /** Closes its stdin (the child's {@link commands} end) and waits for it to exit; kills it after `graceMs`. */
  readonly close: (graceMs?: number) => Promise<void>
}

const DEFAULT_TIMEOUT_MS = 120_000

/**
 * Starts `node --import tsx <script> <args>` (the script is a bench module's file path, e.g.
 * `fileURLToPath(import.meta.url)`) in the repository root. A `fatal` line, or an exit
 * before the awaited line, rejects `next` with the child's stderr.
 */
export const spawnChild = <L extends { readonly type: string }>(script: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Child<L> => {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: REPO_ROOT, env, stdio: ["pipe", "pipe", "pipe"] })
  const lines: Array<L> = []
  let stderr = ""
  let ended: Error | undefined
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const waiter of [...waiters]) waiter()
  }
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000)
  })
  readline.createInterface({ input: child.stdout! }).on("line", (text) => {
    if (!text.startsWith("{")) return
    const line = JSON.parse(text) as L | FatalLine
    if (line.type === "fatal") ended = new Error(`child ${path.basename(script)} ${args.join(" ")} failed: ${(line as FatalLine).message}\n${stderr}`)
    else lines.push(line as L)
    wake()
  })
  const exited = new Promise<void>((resolve) => {
    child.on("close", (code, signal) => {
      ended ??= new Error(`child ${path.basename(script)} ${args.join(" ")} exited (code ${code}, signal ${signal}):\n${stderr}`)
      wake()
      resolve()
    })
  })
  const next = <T extends L["type"]>(type: T, timeoutMs = DEFAULT_TIMEOUT_MS) =>
    new Promise<Extract<L, { readonly type: T }>>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`child ${path.basename(script)} ${args.join(" ")}: no "${type}" line within ${timeoutMs} ms:\n${stderr}`))
      }, timeoutMs)
      const check = () => {
        const at = lines.findIndex((line) => line.type === type)
        if (at < 0 && ended === undefined) return
        waiters.delete(check)
        clearTimeout(timer)
        if (at >= 0) resolve(lines.splice(at, 1)[0] as Extract<L, { readonly type: T }>)
        else reject(ended)
      }
      waiters.add(check)
      check()
    })
  return {
    process: child,
    next,
    send: (command) => void child.stdin!.write(`${JSON.stringify(command)}\n`),
    close: async (graceMs = 20_000) => {
      child.stdin!.end()
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
      await exited
      clearTimeout(timer)
    }
  }
}

/** Whether the module at `moduleUrl` (its `import.meta.url`) is the script this process runs. */
export const isMain = (moduleUrl: string): boolean => process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(moduleUrl)

/** Child side: prints one reply line (synchronously, so nothing is lost at exit). */
export const say = (line: object): void => {
  fs.writeSync(1, `${JSON.stringify(line)}\n`)
}

/** Child side: the command lines on stdin, parsed, until the parent closes it. */
export async function* commands<C>(): AsyncGenerator<C> {
  for await (const text of readline.createInterface({ input: process.stdin })) {
    if (text.trim() !== "") yield JSON.parse(text) as C
  }
}

/** Child side: runs `main`, reporting a failure as a `fatal` line and a non-zero exit code. */
export const runChild = (main: () => Promise<void>): void => {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      say({ type: "fatal", message: error instanceof Error ? (error.stack ?? error.message) : String(error) })
      process.exit(1)
    }
  )
}
