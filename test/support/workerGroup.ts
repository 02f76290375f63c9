/**
 * Several worker processes (test/support/*Worker.ts) started behind one start barrier: each
 * says `{"type":"ready"}` when it is set up, and only once all have does the test create the
 * go file they poll for — so they begin within a millisecond or two of each other, however
 * slowly each started. Every worker is killed with the scope if it is still running.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { tempDir } from "./backends.js"
import { type ChildExit, type LineProcess, resultLineOf, spawnLineProcess } from "./lineProcess.js"

export interface Member<L> {
  readonly name: string
  readonly process: LineProcess<L>
}

export interface WorkerGroup<L> {
  readonly members: ReadonlyArray<Member<L>>
  /** The file the workers wait for (pass it on their command line). */
  readonly goFile: string
  /** Waits until every worker is ready (fails if one exits first, or after 90 s). */
  readonly ready: Effect.Effect<void>
  /** Creates the go file: the workers begin. */
  readonly go: Effect.Effect<void>
  /** `ready`, then `go`. */
  readonly start: Effect.Effect<void>
  /** Each worker's first line matching `isLine`, in member order (fails after `timeoutMs`). */
  readonly lineOfEach: <M extends L>(isLine: (line: L) => line is M, timeoutMs: number) => Effect.Effect<ReadonlyArray<M>>
  /** Sends one stdin line to every worker. */
  readonly sendAll: (text: string) => void
  /** Waits for every worker to exit (fails after `timeoutMs`). */
  readonly exits: (timeoutMs: number) => Effect.Effect<ReadonlyArray<ChildExit<L>>>
}

/** A go-file path in a fresh temp directory (removed with the scope). */
export const goFilePath = Effect.map(tempDir, (dir) => path.join(dir, "go"))

/**
 * Spawns `script` once per member, with the arguments `argsOf(goFile, name)`; nothing starts
 * working before `start`.
 */
export const spawnGroup = <L extends { readonly type: string }>(
  script: string,
  names: ReadonlyArray<string>,
  argsOf: (goFile: string, name: string, index: number) => ReadonlyArray<string>
): Effect.Effect<WorkerGroup<L>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const goFile = yield* goFilePath
    const members = yield* Effect.forEach(names, (name, i) => Effect.map(spawnLineProcess<L>(script, argsOf(goFile, name, i)), (process) => ({ name, process })))
    const ready = Effect.forEach(members, (m) => m.process.ready((line) => line.type === "ready", `worker ${m.name}`), { concurrency: "unbounded", discard: true }).pipe(
      Effect.timeout("90 seconds"),
      Effect.orDie
    )
    const go = Effect.sync(() => fs.writeFileSync(goFile, "go"))
    return {
      members,
      goFile,
      ready,
      go,
      start: Effect.zipRight(ready, go),
      lineOfEach: <M extends L>(isLine: (line: L) => line is M, timeoutMs: number) =>
        Effect.forEach(members, (m) => Effect.map(m.process.waitFor(isLine, timeoutMs), (received) => received.line), { concurrency: "unbounded" }),
      sendAll: (text) => {
        for (const m of members) m.process.send(text)
      },
      exits: (timeoutMs) =>
        Effect.forEach(members, (m) => m.process.exit, { concurrency: "unbounded" }).pipe(Effect.timeout(`${timeoutMs} millis`), Effect.orDie)
    }
  })

/** Each member's `result` line; throws (with every line and stderr) for a member that did not exit 0 with one. */
export const resultsOf = <L extends { readonly type: string }, R extends L>(
  group: WorkerGroup<L>,
  exits: ReadonlyArray<ChildExit<L>>,
  isResult: (line: L) => line is R
): ReadonlyArray<R> => exits.map((exit, i) => resultLineOf(`worker ${group.members[i]!.name}`, exit, isResult))
