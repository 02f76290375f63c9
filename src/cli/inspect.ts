/**
 * `channel-state inspect`: what a state database holds, per owner and namespace, and — for
 * one owner — which entries. Opens SQLite read-only; never creates or migrates anything;
 * prints values only when asked.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { type AdminEntry, listEntries, type NamespaceSummary, summary } from "../layers/store/StoreAdmin.js"
import { type Command, storeOptions } from "./command.js"
import { nameFlag } from "./flags.js"
import { backendName, describeTarget, targetOf, withDatabase } from "./openDatabase.js"
import { CliFailure, ExitCode, displayText, isoTime, print, printJson, table } from "./output.js"

/** Entries listed when `--limit` is not given. */
const DEFAULT_LIMIT = 200
/** Characters of a value shown in the text table (`--json` prints values whole). */
const VALUE_WIDTH = 120

const parseLimit = (value: string | boolean | undefined): number | undefined => {
  if (value === undefined) return DEFAULT_LIMIT
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : Number.NaN
  if (!Number.isSafeInteger(n)) throw new CliFailure(`--limit must be a whole number (0 lists every entry), got "${String(value)}"`, ExitCode.usage)
  return n === 0 ? undefined : n
}

const parsedValue = (json: string): unknown => {
  try {
    return JSON.parse(json)
  } catch {
    return json
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

const entryJson = (entry: AdminEntry) => ({
  owner: entry.owner,
  namespace: entry.namespace,
  key: entry.key,
  createdAt: isoTime(entry.createdAt),
  expiresAt: entry.expiresAt === undefined ? null : isoTime(entry.expiresAt),
  expired: entry.expired,
  bytes: entry.bytes,
  ...(entry.valueJson === undefined ? {} : { value: parsedValue(entry.valueJson) })
})

const namespaceJson = (n: NamespaceSummary) => ({ ...n, oldest: isoTime(n.oldest), newest: isoTime(n.newest) })

/** The `inspect` subcommand. */
export const inspectCommand: Command = {
  help: `Usage: channel-state inspect (--db PATH | --pg URL) [--owner ID [--namespace NS] [--values] [--limit N]] [--json]

Prints, per owner (plugin id) and namespace: live rows, expired rows not yet swept, bytes of
stored values, and the oldest and newest creation times. Never changes the database: a SQLite
file is opened read-only, a missing one is never created.
  --db PATH        the SQLite state file
  --pg URL         the PostgreSQL database (postgres://user@host:5432/db)
  --owner ID       only this owner; also lists its entries (key, created, expires)
  --namespace NS   only this namespace
  --values         also print each listed entry's value (values may hold user content)
  --limit N        list at most N entries (default ${DEFAULT_LIMIT}; 0 lists all)
  --json           print JSON instead of tables
Exit code 0 on success, 1 when the database cannot be read, 2 on bad usage.`,
  options: {
    ...storeOptions,
    owner: { type: "string" },
    namespace: { type: "string" },
    values: { type: "boolean" },
    limit: { type: "string" },
    json: { type: "boolean" }
  },
  run: async (values) => {
    const target = targetOf(values, "inspect")
    const owner = nameFlag(values, "owner", "inspect")
    const namespace = nameFlag(values, "namespace", "inspect")
    const withValues = values.values === true
    if (withValues && owner === undefined) {
      throw new CliFailure("--values needs --owner: values are listed only for one owner's entries", ExitCode.usage, "Run `channel-state inspect --help`.")
    }
    const limit = parseLimit(values.limit)
    const report = await withDatabase(target, "read", (schemaVersion) =>
      Effect.gen(function* () {
        const at = yield* Clock.currentTimeMillis
        const namespaces = yield* summary({ owner, namespace })
        const entries =
          owner === undefined ? undefined : yield* listEntries({ owner, namespace, withValues, limit: limit === undefined ? undefined : limit + 1 })
        return { at, schemaVersion, namespaces, entries }
      })
    )
    const totals = report.namespaces.reduce(
      (t, n) => ({ live: t.live + n.live, expired: t.expired + n.expired, bytes: t.bytes + n.bytes }),
      { live: 0, expired: 0, bytes: 0 }
    )
    const truncated = report.entries !== undefined && limit !== undefined && report.entries.length > limit
    const entries = report.entries === undefined ? undefined : truncated ? report.entries.slice(0, limit) : report.entries

    if (values.json === true) {
      printJson({
        database: { backend: target.backend, location: describeTarget(target), schemaVersion: report.schemaVersion },
        at: isoTime(report.at),
        filter: { owner: owner ?? null, namespace: namespace ?? null },
        namespaces: report.namespaces.map(namespaceJson),
        totals,
        ...(entries === undefined ? {} : { entries: entries.map(entryJson), entriesTruncated: truncated })
      })
      return ExitCode.ok
    }

    const scope = [owner === undefined ? undefined : `owner "${displayText(owner)}"`, namespace === undefined ? undefined : `namespace "${displayText(namespace)}"`]
      .filter((s) => s !== undefined)
      .join(", ")
    print(`channel-state inspect — ${describeTarget(target)} (${backendName(target)}, schema ${report.schemaVersion}) at ${isoTime(report.at)}`)
    if (report.namespaces.length === 0) {
      print(scope ? `No rows for ${scope}.` : "No rows: the database is empty.")
      return ExitCode.ok
    }
    print("")
    print(
      table(
        ["owner", "namespace", "live", "expired", "bytes", "oldest", "newest"],
        report.namespaces.map((n) => [displayText(n.owner), displayText(n.namespace), String(n.live), String(n.expired), String(n.bytes), isoTime(n.oldest), isoTime(n.newest)])
      )
    )
    const owners = new Set(report.namespaces.map((n) => n.owner)).size
    print(
      `\n${plural(owners, "owner")}, ${plural(report.namespaces.length, "namespace")}: ${totals.live} live, ${totals.expired} expired, ${totals.bytes} bytes of values.`
    )
    if (entries !== undefined) {
      const total = totals.live + totals.expired
      print(`\nEntries of ${scope}${truncated ? ` (first ${entries.length} of ${total}; --limit 0 lists all)` : ""}:`)
      const header = ["namespace", "key", "bytes", "created", "expires", "state", ...(withValues ? ["value"] : [])]
      print(
        table(
          header,
          entries.map((e) => [
            displayText(e.namespace),
            displayText(e.key, 80),
            String(e.bytes),
            isoTime(e.createdAt),
            e.expiresAt === undefined ? "never" : isoTime(e.expiresAt),
            e.expired ? "expired" : "live",
            ...(withValues ? [displayText(e.valueJson ?? "", VALUE_WIDTH)] : [])
          ])
        )
      )
      if (withValues && entries.some((e) => displayText(e.valueJson ?? "").length > VALUE_WIDTH)) print(`(values cut to ${VALUE_WIDTH} characters; --json prints them whole)`)
    }
    return ExitCode.ok
  }
}
