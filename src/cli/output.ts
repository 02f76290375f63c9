/**
 * How the CLI talks to people and machines: aligned tables, JSON, and errors that say what
 * is wrong and what to do — never a stack trace.
 *
 * @internal
 */

/** Exit codes, as documented in `channel-state --help`. */
export const ExitCode = { ok: 0, failed: 1, usage: 2 } as const

/** A failure the CLI reports in one line (plus an optional hint) and exits with. */
export class CliFailure {
  readonly _tag = "CliFailure"
  constructor(
    readonly message: string,
    readonly exitCode: number = ExitCode.failed,
    readonly hint?: string
  ) {}
}

/** Renders rows as an aligned text table with a header line. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")
}

/** Epoch ms as ISO-8601 (or "-"). */
export const isoTime = (millis: number | null | undefined): string =>
  millis === null || millis === undefined || !Number.isFinite(millis) ? "-" : new Date(millis).toISOString()

export const print = (text: string): void => {
  process.stdout.write(`${text}\n`)
}

export const printError = (failure: CliFailure): void => {
  process.stderr.write(`channel-state: ${failure.message}\n${failure.hint ? `  ${failure.hint}\n` : ""}`)
}
