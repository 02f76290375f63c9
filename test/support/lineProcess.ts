/**
 * A child process (`node --import tsx <script>`) that speaks one JSON object per stdout line
 * (the cross-process workers in test/support), owned by an Effect scope (SIGKILLed when the
 * scope closes, if still running): its protocol lines collected as they come, lines awaited,
 * commands sent to its stdin, its stderr kept for failure messages. Used by the crash,
 * several-instances and cross-process claim tests.
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

/** How a process ended: its exit code and signal. */
export interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** How a child ended: its exit code, every JSON line it printed, and its stderr. */
export interface ChildExit<L> {
  readonly code: number | null
  readonly lines: ReadonlyArray<L>
  readonly stderr: string
}

export interface LineProcess<L> {
  readonly child: ChildProcess
  /** performance.now() just before `spawn`. */
  readonly spawnedAt: number
  /** Every complete line so far, in order. */
  readonly lines: ReadonlyArray<Received<L>>
  /** The first line (already read or still to come) matching `predicate`; fails after `timeoutMs` or when the process ends first. */
  readonly waitFor: <M extends L>(predicate: (line: L) => line is M, timeoutMs: number) => Effect.Effect<Received<M>>
  /**
   * Succeeds once a line matching `isReady` was read (no time bound of its own); fails with
   * `<label> exited (code …) before it was ready` (every line, stderr) if the process ends first.
   */
  readonly ready: (isReady: (line: L) => boolean, label: string) => Effect.Effect<void>
  /** Writes one line to the child's stdin. */
  readonly send: (text: string) => void
  /** SIGKILL, then wait until stdout is drained and the process is gone. */
  readonly kill: Effect.Effect<void>
  /** Resolves when the process has exited and its output is drained. */
  readonly closed: Effect.Effect<Ended>
  /** Like `closed`, with every line and the stderr. */
  readonly exit: Effect.Effect<ChildExit<L>>
  readonly stderr: () => string
}

/** Spawns `script` (relative to the repo root) with `args`, killed with the scope. */
export const spawnLineProcess = <L>(script: string, args: ReadonlyArray<string>): Effect.Effect<LineProcess<L>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => start<L>(script, args)),
    (proc) => proc.kill
  )

/** The child's result line; throws (with every line and stderr) unless it exited 0 having printed one. */
export const resultLineOf = <L, Result extends L>(label: string, exit: ChildExit<L>, isResult: (line: L) => line is Result): Result => {
  const result = exit.lines.find(isResult)
  if (exit.code !== 0 || result === undefined) {
    throw new Error(`${label} failed (exit ${exit.code}):\n${exit.lines.map((l) => JSON.stringify(l)).join("\n")}\n${exit.stderr}`)
  }
  return result
}

const start = <L>(script: string, args: ReadonlyArray<string>): LineProcess<L> => {
  const spawnedAt = performance.now()
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] })
  const lines: Array<Received<L>> = []
  const waiters = new Set<() => void>()
  let stdout = ""
  let stderr = ""
  let ended: Ended | undefined
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
        // not a protocol line (a log line, or one cut short by a kill)
      }
    }
    wake()
  })
  child.stdin!.on("error", () => {})
  const closedPromise = new Promise<Ended>((resolve) =>
    child.on("close", (code, signal) => {
      ended = { code, signal }
      resolve(ended)
      wake()
    })
  )
  const closed = Effect.promise(() => closedPromise)

  /** The first line matching `predicate`; fails with `endedError` if the process ends first, and after `timeoutMs` if given. */
  const firstLine = (predicate: (line: L) => boolean, timeoutMs: number | undefined, endedError: (ended: Ended) => Error): Effect.Effect<Received<L>> =>
    Effect.async<Received<L>, Error>((resume) => {
      let from = 0
      const check = () => {
        for (; from < lines.length; from++) {
          const received = lines[from]!
          if (predicate(received.line)) {
            done()
            resume(Effect.succeed(received))
            return
          }
        }
        if (ended !== undefined) {
          done()
          resume(Effect.fail(endedError(ended)))
        }
      }
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
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

  const protocolLines = () => lines.map((received) => received.line)

  return {
    child,
    spawnedAt,
    lines,
    waitFor: <M extends L>(predicate: (line: L) => line is M, timeoutMs: number) =>
      firstLine(predicate, timeoutMs, (end) => new Error(`process ended (${JSON.stringify(end)}) before the awaited line; stderr:\n${stderr}`)) as Effect.Effect<
        Received<M>
      >,
    ready: (isReady, label) =>
      Effect.asVoid(
        firstLine(
          isReady,
          undefined,
          (end) => new Error(`${label} exited (code ${end.code}) before it was ready:\n${JSON.stringify(protocolLines())}\n${stderr}`)
        )
      ),
    send: (text) => {
      if (ended === undefined && child.stdin?.writable) child.stdin.write(`${text}\n`)
    },
    kill: Effect.suspend(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      return Effect.asVoid(closed)
    }),
    closed,
    exit: Effect.map(closed, ({ code }) => ({ code, lines: protocolLines(), stderr })),
    stderr: () => stderr
  }
}
