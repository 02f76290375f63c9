/**
 * `channel-state purge`: deletes one owner's rows (optionally one namespace, optionally only
 * expired rows) after saying what it will delete and asking — never another owner's rows.
 *
 * @internal
 */
import * as readline from "node:readline"
import * as Effect from "effect/Effect"
import { type PurgeCounts, purge, purgePreview } from "../layers/store/StoreAdmin.js"
import { type Command, storeOptions } from "./command.js"
import { nameFlag } from "./flags.js"
import { backendName, describeTarget, targetOf, withDatabase } from "./openDatabase.js"
import { CliFailure, ExitCode, displayText, print, printJson, printNote, table } from "./output.js"

/** Asks on the terminal; resolves to the answer ("" when stdin closes first). */
const ask = (question: string, output: NodeJS.WritableStream): Promise<string> =>
  new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output })
    let answered = false
    rl.on("close", () => {
      if (!answered) resolve("")
    })
    // Ctrl-C at the question is a "no".
    rl.on("SIGINT", () => {
      output.write("\n")
      rl.close()
    })
    rl.question(question, (answer) => {
      answered = true
      rl.close()
      resolve(answer)
    })
  })

const countsTable = (counts: PurgeCounts) =>
  table(
    ["namespace", "rows"],
    counts.byNamespace.map((n) => [displayText(n.namespace), String(n.rows)])
  )

/** The `purge` subcommand. */
export const purgeCommand: Command = {
  help: `Usage: channel-state purge (--db PATH | --pg URL) --owner ID [--namespace NS] [--expired-only] [--yes] [--json]

Deletes rows of one owner (plugin id) — never another owner's. First prints how many rows it
will delete per namespace and asks "Proceed? [y/N]"; without a terminal to ask on, it refuses
unless --yes is given. Stop the gateway first: running plugins keep what they hold in memory
and may write it back.
  --db PATH        the SQLite state file (never created)
  --pg URL         the PostgreSQL database (postgres://user@host:5432/db)
  --owner ID       required: the owner whose rows are deleted
  --namespace NS   only this namespace of the owner
  --expired-only   only rows past their expiry (what the background sweeper would delete)
  --yes, -y        do not ask
  --json           print the result as JSON (the plan and the question go to stderr)
Exit code 0 when done (or nothing matched), 1 when refused, declined or failed, 2 on bad usage.`,
  options: {
    ...storeOptions,
    owner: { type: "string" },
    namespace: { type: "string" },
    "expired-only": { type: "boolean" },
    yes: { type: "boolean", short: "y" },
    json: { type: "boolean" }
  },
  run: async (values) => {
    const target = targetOf(values, "purge")
    const owner = nameFlag(values, "owner", "purge")
    if (owner === undefined) {
      throw new CliFailure("--owner is required: purge deletes one owner's rows", ExitCode.usage, "See the owners with `channel-state inspect`, then run `channel-state purge --owner ID`.")
    }
    const namespace = nameFlag(values, "namespace", "purge")
    const expiredOnly = values["expired-only"] === true
    const json = values.json === true
    const say = json ? printNote : print
    const scope = { owner, namespace, expiredOnly }
    const what = (n: number) => `${expiredOnly ? "expired " : ""}${n === 1 ? "row" : "rows"} of owner "${displayText(owner)}"${namespace === undefined ? "" : `, namespace "${displayText(namespace)}"`}`

    const result = await withDatabase(target, "write", () =>
      Effect.gen(function* () {
        const plan = yield* purgePreview(scope)
        say(`channel-state purge — ${describeTarget(target)} (${backendName(target)})`)
        if (plan.total === 0) {
          say(`Nothing to delete: no ${what(0)}.`)
          return { deleted: plan, declined: false }
        }
        say(`Will delete ${plan.total} ${what(plan.total)}:\n${countsTable(plan)}`)
        if (values.yes !== true) {
          if (!process.stdin.isTTY) {
            return yield* Effect.fail(
              new CliFailure("refusing to delete without confirmation: stdin is not a terminal", ExitCode.failed, "Pass --yes to delete without asking.")
            )
          }
          const answer = yield* Effect.promise(() => ask("Proceed? [y/N] ", json ? process.stderr : process.stdout))
          if (!/^y(es)?$/i.test(answer.trim())) {
            say("Nothing deleted.")
            return { deleted: { total: 0, byNamespace: [] }, declined: true }
          }
        }
        const deleted = yield* purge(scope)
        say(`Deleted ${deleted.total} ${deleted.total === 1 ? "row" : "rows"}.`)
        return { deleted, declined: false }
      })
    )
    if (json) {
      printJson({
        database: { backend: target.backend, location: describeTarget(target) },
        owner,
        namespace: namespace ?? null,
        expiredOnly,
        declined: result.declined,
        deleted: result.deleted.total,
        byNamespace: result.deleted.byNamespace
      })
    }
    return result.declined ? ExitCode.failed : ExitCode.ok
  }
}
