/**
 * A child process that speaks one JSON object per stdout line (the cross-process workers in
 * test/support): spawned with the scope (killed when it closes, if still running), its
 * protocol lines collected, its "ready" line awaited, its stderr kept for failure messages.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** How a child ended: its exit code, every JSON line it printed, and its stderr. */
export interface ChildExit<Line> {
  readonly code: number | null
  readonly lines: ReadonlyArray<Line>
  readonly stderr: string
}

export interface JsonLinesChild<Line> {
  /** Resolves when the child printed a ready line; rejects if it exits first. */
  readonly ready: Promise<void>
  /** Resolves with every JSON line, the exit code and stderr once the child exits. */
  readonly done: Promise<ChildExit<Line>>
}

export interface WatchOptions<Line> {
  /** Which line says the child is ready. */
  readonly isReady: (line: Line) => boolean
  /** Names the child in error messages (e.g. "worker", "worker worker-a"). */
  readonly label: string
}

/** Watches `child`'s stdout for JSON lines (other lines are skipped: logs, not protocol) and its stderr. */
export const watchJsonLines = <Line>(child: ChildProcess, options: WatchOptions<Line>): JsonLinesChild<Line> => {
  const lines: Array<Line> = []
  let stdout = ""
  let stderr = ""
  let onReady: () => void = () => {}
  let onNotReady: (error: Error) => void = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve
    onNotReady = reject
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    let newline = stdout.indexOf("\n")
    while (newline >= 0) {
      const text = stdout.slice(0, newline)
      stdout = stdout.slice(newline + 1)
      newline = stdout.indexOf("\n")
      let line: Line
      try {
        line = JSON.parse(text) as Line
      } catch {
        continue // a log line, not part of the protocol
      }
      lines.push(line)
      if (options.isReady(line)) onReady()
    }
  })
  const done = new Promise<ChildExit<Line>>((resolve) =>
    child.on("close", (code) => {
      onNotReady(new Error(`${options.label} exited (code ${code}) before it was ready:\n${JSON.stringify(lines)}\n${stderr}`))
      resolve({ code, lines, stderr })
    })
  )
  return { ready, done }
}

/**
 * Runs `node --import tsx <script> ...args` from the repository root and watches it; the
 * child is killed with the scope if it is still running then.
 */
export const spawnJsonLinesChild = <Line>(script: string, args: ReadonlyArray<string>, options: WatchOptions<Line>) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })),
      (child) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
    ),
    (child) => watchJsonLines(child, options)
  )

/** The child's result line; throws (with every line and stderr) unless it exited 0 having printed one. */
export const resultLineOf = <Line, Result extends Line>(label: string, exit: ChildExit<Line>, isResult: (line: Line) => line is Result): Result => {
  const result = exit.lines.find(isResult)
  if (exit.code !== 0 || result === undefined) {
    throw new Error(`${label} failed (exit ${exit.code}):\n${exit.lines.map((l) => JSON.stringify(l)).join("\n")}\n${exit.stderr}`)
  }
  return result
}
