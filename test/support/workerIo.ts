/**
 * What every cross-process worker in test/support shares: one JSON object per stdout line,
 * the start signal (a file appearing, so workers begin within a millisecond or two of each
 * other), stdin commands, where a backend name and location point the store, and a logger
 * that keeps the runtime's warning and error lines for the result line.
 */
import * as fs from "node:fs"
import { Effect, HashMap, Logger, Metric, MetricState } from "effect"
import type * as PluginRuntime from "../../src/PluginRuntime.js"

/**
 * The lines every worker prints: `ready` once it can start, one `result` (its timing plus
 * what `Result` holds), or `fatal`; `Extra` adds a worker's own further lines.
 */
export type WorkerLine<Result extends object, Extra extends object = never> =
  | { readonly type: "ready"; readonly worker: string }
  | ({
      readonly type: "result"
      readonly worker: string
      /** `Date.now()` when the start signal was seen and when the worker's last operation answered. */
      readonly startedAt: number
      readonly finishedAt: number
    } & Result)
  | Extra
  | { readonly type: "fatal"; readonly worker: string; readonly message: string }

/** Prints one protocol line. */
export const say = (line: object): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

/**
 * Polls for the start file (1 ms steps); fails after `timeoutMs` without it. The default is a
 * hang bound only (the parent bounds how long it waits for its workers, and kills them with
 * its scope): a busy machine may take well over a minute to start every worker of a group.
 */
export const waitForGo = (goFile: string, timeoutMs = 600_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!fs.existsSync(goFile)) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`no start signal (${goFile}) within ${timeoutMs} ms`))
      yield* Effect.sleep("1 millis")
    }
  })

/** The store location a worker's `<sqlite|pg> <file or url>` arguments name. */
export const storeLocationOf = (backend: string | undefined, location: string | undefined): PluginRuntime.StoreLocation => {
  if (backend === "pg") return { pgUrl: location }
  if (backend === "sqlite") return { sqlitePath: location }
  throw new Error(`unknown backend ${String(backend)}`)
}

/** The gateway config that turns persistence on for `pluginId`. */
export const persistenceOn = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

/** A logger that keeps every WARN/ERROR/FATAL line (message and annotations, cut at 500 characters) in `problems`. */
export const problemLogger = () => {
  const problems: Array<string> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    if (logLevel.label !== "WARN" && logLevel.label !== "ERROR" && logLevel.label !== "FATAL") return
    const parts = Array.isArray(message) ? message : [message]
    const notes = JSON.stringify(Object.fromEntries(HashMap.toEntries(annotations)))
    problems.push(`${logLevel.label} ${parts.map(String).join(" ")} ${notes}`.slice(0, 500))
  })
  return { problems, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** Calls `onLine` for every line on stdin (the process stays alive while stdin is open). */
export const onStdinLine = (onLine: (line: string) => void): void => {
  let buffered = ""
  process.stdin.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk
    let newline = buffered.indexOf("\n")
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim()
      buffered = buffered.slice(newline + 1)
      newline = buffered.indexOf("\n")
      if (line.length > 0) onLine(line)
    }
  })
}

/**
 * This process's `channel_state_undecided_claims` so far (claims and one-shots the store
 * could not decide), by `namespace/reason/answer`.
 */
export const undecidedClaims = Effect.map(Metric.snapshot, (pairs) => {
  const counts: Record<string, number> = {}
  for (const pair of pairs) {
    if (pair.metricKey.name !== "channel_state_undecided_claims") continue
    const tags = Object.fromEntries(pair.metricKey.tags.map((tag) => [tag.key, tag.value]))
    if (!MetricState.isCounterState(pair.metricState)) continue
    const count = Number(pair.metricState.count)
    if (count > 0) counts[`${tags.namespace}/${tags.reason}/${tags.answer}`] = count
  }
  return counts
})
