/**
 * The raw `pg` driver for baselines. `pg` is installed as a dependency of `@effect/sql-pg`
 * (the project does not depend on it directly and has no `@types/pg`), so it is loaded with
 * `require` and given the few types the benchmarks use. Loaded when this module is imported,
 * so a child process that imports it has paid for the load before it starts timing.
 */
import { createRequire } from "node:module"

/** The part of `pg.Client` the baselines use. */
export interface RawPgClient {
  connect(): Promise<void>
  query<R = Record<string, unknown>>(text: string, values?: ReadonlyArray<unknown>): Promise<{ readonly rows: Array<R>; readonly rowCount: number | null }>
  end(): Promise<void>
}

const pg = createRequire(import.meta.url)("pg") as { Client: new (config: { connectionString: string }) => RawPgClient }

/** A new, unconnected `pg.Client` for `url`. */
export const rawPgClient = (url: string): RawPgClient => new pg.Client({ connectionString: url })

/** A statement written with `?` placeholders (as for SQLite), with PostgreSQL's `$1, $2, …` instead. */
export const pgPlaceholders = (text: string): string => {
  let i = 0
  return text.replace(/\?/g, () => `$${++i}`)
}
