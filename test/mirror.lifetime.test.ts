/**
 * Process lifetime: the write-behind mirror never keeps a process alive, and never loses what
 * was queued when the process ends the ordinary ways. A child process
 * (test/support/lifetimeWorker.ts) opens the Promise facade with persistence on, on a SQLite
 * file or a PostgreSQL database, with a write-behind interval of 1 minute (so no timer writes
 * anything while the test runs) and records Slack threads, Matrix prompts and Discord
 * components:
 *
 * - one that never calls `dispose()` and has nothing else to do exits by itself (code 0,
 *   within a generous 60 s: on PostgreSQL the pool's idle connections close after their
 *   10 s idle timeout first), and what it recorded is in the database — written when its
 *   event loop ran dry (`beforeExit`);
 * - one opened with `disposeOnSignals: true` that keeps running like a server is sent
 *   SIGTERM: it writes what it queued (dispose), then ends by SIGTERM itself — the library
 *   removes its listener and raises the signal again, so the process dies "killed by
 *   SIGTERM" (exit code null, signal SIGTERM) as it would have without the library.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import { type BackendFactory, sqlBackends } from "./support/backends.js"
import { spawnLineProcess } from "./support/lineProcess.js"
import { LIFETIME_OWNER, type LifetimeLine, lifetimeKeys } from "./support/lifetimeWorker.js"
import { rowReader } from "./support/storedRows.js"

const workerScript = path.join("test", "support", "lifetimeWorker.ts")
const COUNT = 200
/** Generous: a bound against hanging forever, not a speed target. */
const EXIT_BOUND = Duration.seconds(60)

const isRecorded = (line: LifetimeLine): line is LifetimeLine => line.type === "recorded"

/** Spawns the worker, waits for its `recorded` line, optionally signals it, and waits (bounded) for it to end. */
const runWorker = (backend: BackendFactory, location: string, mode: "no-dispose" | "sigterm") =>
  Effect.gen(function* () {
    const proc = yield* spawnLineProcess<LifetimeLine>(workerScript, [backend.name, location, mode, String(COUNT)])
    yield* proc.waitFor(isRecorded, 60_000)
    const recordedAt = performance.now()
    if (mode === "sigterm") proc.child.kill("SIGTERM")
    const ended = yield* Effect.timeoutOption(proc.closed, EXIT_BOUND)
    if (Option.isNone(ended)) {
      throw new Error(`the ${mode} worker was still running ${Duration.format(EXIT_BOUND)} after recording; stderr:\n${proc.stderr()}`)
    }
    return { ...ended.value, exitMs: Math.round(performance.now() - recordedAt), stderr: proc.stderr() }
  })

/** Which of the worker's writes are missing from the database, per namespace. */
const missingWrites = (backend: BackendFactory, location: string) =>
  Effect.gen(function* () {
    const reader = yield* rowReader(backend.name as "sqlite" | "pg", location)
    const rows = yield* reader.rows(LIFETIME_OWNER)
    const stored = new Set(rows.map((row) => `${row.namespace}|${row.key}`))
    const missing: Record<string, number> = {}
    for (const [namespace, keys] of Object.entries(lifetimeKeys(COUNT))) missing[namespace] = keys.filter((key) => !stored.has(`${namespace}|${key}`)).length
    return missing
  })
const nothingMissing = Object.fromEntries(Object.keys(lifetimeKeys(COUNT)).map((namespace) => [namespace, 0]))

const lifetime = (backend: BackendFactory) => {
  it.scopedLive(
    `${backend.name}: a host that never calls dispose() exits by itself with code 0 (bound: 60 s) and its ${COUNT} queued writes per cache are in the database`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const ended = yield* runWorker(backend, db.location!, "no-dispose")
        const missing = yield* missingWrites(backend, db.location!)
        console.log(`[mirror.lifetime] ${backend.name} no-dispose: ended ${JSON.stringify({ code: ended.code, signal: ended.signal })} ${ended.exitMs} ms after recording; missing ${JSON.stringify(missing)}`)
        expect({ code: ended.code, signal: ended.signal }, `how the process ended; stderr:\n${ended.stderr}`).toEqual({ code: 0, signal: null })
        expect(missing, "writes missing from the database").toEqual(nothingMissing)
      }),
    120_000
  )

  it.scopedLive(
    `${backend.name}: a host with disposeOnSignals: true sent SIGTERM writes what it queued, then ends by SIGTERM re-raised (exit code null, signal SIGTERM)`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const ended = yield* runWorker(backend, db.location!, "sigterm")
        const missing = yield* missingWrites(backend, db.location!)
        console.log(`[mirror.lifetime] ${backend.name} sigterm: ended ${JSON.stringify({ code: ended.code, signal: ended.signal })} ${ended.exitMs} ms after the signal; missing ${JSON.stringify(missing)}`)
        expect({ code: ended.code, signal: ended.signal }, `how the process ended; stderr:\n${ended.stderr}`).toEqual({ code: null, signal: "SIGTERM" })
        expect(missing, "writes missing from the database").toEqual(nothingMissing)
      }),
    120_000
  )
}

describe("process lifetime: the mirror never keeps a process alive, and writes what was queued on the way out", () => {
  for (const backend of sqlBackends) lifetime(backend)
})
