/**
 * The shape of a CLI subcommand, and the options every store-reading command shares.
 *
 * @internal
 */
import type { parseArgs } from "node:util"

/** A subcommand: its help text, its flags, and how it runs (its one-line summary is in main.ts, which loads it on demand). */
export interface Command {
  readonly help: string
  readonly options: NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>
  /** Runs with the parsed flags; resolves to the exit code. May throw a `CliFailure`. */
  readonly run: (values: Record<string, string | boolean | undefined>) => Promise<number>
}

/** `--db PATH` (SQLite file) or `--pg URL` (PostgreSQL). */
export const storeOptions = {
  db: { type: "string" },
  pg: { type: "string" }
} as const
