/**
 * Attribution only: wraps better-sqlite3's statement methods (`run`, `get`, `all`) in this
 * process to count `SQLITE_BUSY` answers and, with `timing`, the time spent inside SQLite per
 * statement text. Every connection of the process goes through them (the store's, via
 * `@effect/sql-sqlite-node`, and raw ones alike), so a side measured with the probe on pays
 * the same small wrapper cost as the other.
 */
import Database from "better-sqlite3"

/** Calls and time inside SQLite of one statement text. */
export interface StatementCost {
  calls: number
  ns: number
}

export interface SqliteProbe {
  /** `SQLITE_BUSY*` errors thrown by statements since the last reset. */
  readonly busy: () => number
  /** Per statement label (see {@link statementLabel}): calls and ns inside SQLite (with `timing`). */
  readonly costs: () => ReadonlyMap<string, StatementCost>
  readonly reset: () => void
}

/** A short label for a statement text: its first words, and how many rows a multi-row insert carries. */
export const statementLabel = (text: string): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  const tuples = flat.match(/\(\?(, ?\?)*\)/g)?.length ?? 0
  const head = flat.startsWith("INSERT") ? `${flat.slice(0, 40)}… ${tuples} row${tuples === 1 ? "" : "s"}${flat.includes("RETURNING") ? " RETURNING" : ""}` : flat.slice(0, 70)
  return head
}

type Method = "run" | "get" | "all"

let installed: SqliteProbe | undefined

/** Installs the probe (once per process; later calls answer the same probe). */
export const instrumentSqlite = (options: { readonly timing: boolean }): SqliteProbe => {
  if (installed) return installed
  const probe = new Database(":memory:")
  const proto = Object.getPrototypeOf(probe.prepare("SELECT 1")) as Record<Method, (...args: Array<unknown>) => unknown>
  probe.close()
  let busy = 0
  const costs = new Map<string, StatementCost>()
  const labels = new Map<string, string>()
  const costOf = (source: string) => {
    let label = labels.get(source)
    if (label === undefined) {
      label = statementLabel(source)
      labels.set(source, label)
    }
    let cost = costs.get(label)
    if (cost === undefined) {
      cost = { calls: 0, ns: 0 }
      costs.set(label, cost)
    }
    return cost
  }
  for (const method of ["run", "get", "all"] as const) {
    const original = proto[method]
    proto[method] = options.timing
      ? function (this: { source: string }, ...args: Array<unknown>) {
          const start = process.hrtime.bigint()
          try {
            return original.apply(this, args)
          } catch (error) {
            if (String((error as { code?: unknown }).code).startsWith("SQLITE_BUSY")) busy++
            throw error
          } finally {
            const cost = costOf(this.source)
            cost.calls++
            cost.ns += Number(process.hrtime.bigint() - start)
          }
        }
      : function (this: { source: string }, ...args: Array<unknown>) {
          try {
            return original.apply(this, args)
          } catch (error) {
            if (String((error as { code?: unknown }).code).startsWith("SQLITE_BUSY")) busy++
            throw error
          }
        }
  }
  installed = {
    busy: () => busy,
    costs: () => costs,
    reset: () => {
      busy = 0
      costs.clear()
    }
  }
  return installed
}
