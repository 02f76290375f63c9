/**
 * A child process (`node --import tsx <script>`) that speaks one JSON object per stdout line,
 * owned by an Effect scope (SIGKILLed when the scope closes, if still running). Used by the
 * crash and several-instances tests.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, type Scope } from "effect"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** A line and when (performance.now() in the parent) it was read. */
export interface Received<L> {
  readonly line: L
  readonly at: number
}

export interface LineProcess<L> {
  readonly child: ChildProcess
  /** performance.now() just before `spawn`. */
  readonly spawnedAt: number
  /** Every complete line so far, in order. */
  readonly lines: ReadonlyArray<Received<L>>
  /** The first line (already read or still to come) matching `predicate`; fails after `timeoutMs` or when the process ends first. */
  readonly waitFor: <M extends L>(predicate: (line: L) => line is M, timeoutMs: number) => Effect.Effect<Received<M>>
  /** Writes one line to the child's stdin. */
  readonly send: (text: string) => void
  /** SIGKILL, then wait until stdout is drained and the process is gone. */
  readonly kill: Effect.Effect<void>
  /** Resolves when the process has exited and its output is drained. */
  readonly closed: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly stderr: () => string
}

/** Spawns `script` (relative to the repo root) with `args`, killed with the scope. */
export const spawnLineProcess = <L>(script: string, args: ReadonlyArray<string>): Effect.Effect<LineProcess<L>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => start<L>(script, args)),
    (proc) => proc.kill
  )

const start = <L>(script: string, args: ReadonlyArray<string>): LineProcess<L> => {
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] })
  const lines: Array<Received<L>> = []
  const waiters = new Set<() => void>()
  let stdout = ""
  let stderr = ""
  let ended: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const wake = () => {
    for (const waiter of [...waiters]) waiter()
  }
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-20_000)
  })
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    let newline = stdout.indexOf("\n")
    while (newline >= 0) {
      const text = stdout.slice(0, newline)
      stdout = stdout.slice(newline + 1)
      newline = stdout.indexOf("\n")
      try {
        lines.push({ line: JSON.parse(text) as L, at: performance.now() })
      } catch {
        // not a protocol line (or cut short by a kill)
      }
    }
    wake()
  })
  child.stdin!.on("error", () => {})
  const closedPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => {
      ended = { code, signal }
      resolve(ended)
      wake()
    })
  )
  const closed = Effect.promise(() => closedPromise)

  const waitFor = <M extends L>(predicate: (line: L) => line is M, timeoutMs: number): Effect.Effect<Received<M>> =>
    Effect.async<Received<M>, Error>((resume) => {
      let from = 0
      const check = () => {
        for (; from < lines.length; from++) {
          const received = lines[from]!
          if (predicate(received.line)) {
            done()
            resume(Effect.succeed(received as Received<M>))
            return
          }
        }
        if (ended !== undefined) {
          done()
          resume(Effect.fail(new Error(`process ended (${JSON.stringify(ended)}) before the awaited line; stderr:\n${stderr}`)))
        }
      }
      const timer = setTimeout(() => {
        done()
        resume(Effect.fail(new Error(`no awaited line within ${timeoutMs} ms; last lines: ${JSON.stringify(lines.slice(-3))}; stderr:\n${stderr}`)))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
      return Effect.sync(done)
    }).pipe(Effect.orDie)

  return {
    child,
    spawnedAt,
    lines,
    waitFor,
    send: (text) => {
      if (ended === undefined && child.stdin?.writable) child.stdin.write(`${text}\n`)
    },
    kill: Effect.suspend(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      return Effect.asVoid(closed)
    }),
    closed,
    stderr: () => stderr
  }
}
