/**
 * A child process for test/startup.imports.test.ts: starts recording every module it loads
 * (test/support/moduleLogHooks.mjs), then does what its mode says, importing only after the
 * hooks are in place, and prints one JSON line: how it went, every ES module resolved, and
 * every CommonJS module in `require`'s cache (modules a CommonJS package such as `pg` loads
 * itself never pass the ES hooks).
 *
 *   node --import tsx test/support/startupImportsWorker.ts <mode> [location]
 *
 * - `sqlite FILE` / `pg URL`: imports the package (src/index.ts) and effect module by module,
 *   as a plugin does, builds the store with `PluginRuntime.storeLayer` (`sqlitePath` or
 *   `pgUrl`), writes one entry and looks it up;
 * - `pg-unloadable URL`: `@effect/sql-pg` cannot be resolved; builds `PgStore.layer` (no
 *   `retryOpen`);
 * - `cli-help`: runs the CLI's `main(["--help"])`;
 * - `cli-pg-unloadable URL`: `@effect/sql-pg` cannot be resolved; runs `main(["inspect", "--pg", URL])`.
 */
import * as fs from "node:fs"
import { createRequire, register } from "node:module"
import * as os from "node:os"
import * as path from "node:path"

/** What the worker prints. */
export interface ImportsReport {
  /** The lookup's answer, the typed failure, or the defect. */
  readonly outcome:
    | { readonly ok: unknown }
    | { readonly failed: { readonly tag: string; readonly reason: string; readonly detail: string } }
    | { readonly died: string }
  readonly esm: ReadonlyArray<string>
  readonly cjs: ReadonlyArray<string>
}

const [mode = "", location = ""] = process.argv.slice(2)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-imports-"))
const logFile = path.join(dir, "modules.log")
const unloadable = mode === "pg-unloadable" || mode === "cli-pg-unloadable"
register(new URL("./moduleLogHooks.mjs", import.meta.url), { data: { logFile, refuse: unloadable ? "@effect/sql-pg" : undefined } })

const run = async (): Promise<ImportsReport["outcome"]> => {
  if (mode === "cli-help" || mode === "cli-pg-unloadable") {
    const { main } = await import("../../src/cli/main.js")
    return { ok: await main(mode === "cli-help" ? ["--help"] : ["inspect", "--pg", location]) }
  }
  const Effect = await import("effect/Effect")
  const Cause = await import("effect/Cause")
  const Exit = await import("effect/Exit")
  const Option = await import("effect/Option")
  const Schema = await import("effect/Schema")
  const { KeyedStore, PgStore, PluginRuntime } = await import("../../src/index.js")
  const layer =
    mode === "pg-unloadable"
      ? PgStore.layer({ url: location })
      : PluginRuntime.storeLayer(mode === "pg" ? { pgUrl: location } : { sqlitePath: location })
  const exit = await Effect.runPromiseExit(
    Effect.gen(function* () {
      const store = yield* KeyedStore
      const handle = yield* store.open({ owner: "startup-imports", namespace: "probe", schema: Schema.Struct({ n: Schema.Number }), maxEntries: 10 })
      yield* handle.register("k", { n: 42 })
      return Option.getOrNull(yield* handle.lookup("k"))
    }).pipe(Effect.scoped, Effect.provide(layer))
  )
  if (Exit.isSuccess(exit)) return { ok: exit.value }
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure)
    ? { failed: { tag: failure.value._tag, reason: failure.value.reason, detail: failure.value.detail } }
    : { died: Cause.pretty(exit.cause) }
}

const outcome = await run()
const report: ImportsReport = {
  outcome,
  esm: [...new Set(fs.readFileSync(logFile, "utf8").split("\n").filter((line) => line !== ""))],
  cjs: Object.keys(createRequire(import.meta.url).cache)
}
fs.rmSync(dir, { recursive: true, force: true })
process.stdout.write(`${JSON.stringify(report)}\n`)
