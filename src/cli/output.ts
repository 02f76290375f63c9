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

/** Writes a line to stdout. */
export const print = (text: string): void => {
  process.stdout.write(`${text}\n`)
}

/** Writes a failure (and its hint) to stderr, as `channel-state: …`. */
export const printError = (failure: CliFailure): void => {
  process.stderr.write(`channel-state: ${failure.message}\n${failure.hint ? `  ${failure.hint}\n` : ""}`)
}

/** Writes a line to stderr: for what people read while stdout carries JSON. */
export const printNote = (text: string): void => {
  process.stderr.write(`${text}\n`)
}

/** Prints `value` as indented JSON on stdout. */
export const printJson = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/**
 * Text from the database (keys, values) made safe for a terminal: control characters are
 * shown escaped instead of moving the cursor or splitting a line; cut to `max` characters.
 */
export const displayText = (text: string, max = Number.POSITIVE_INFINITY): string => {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping control characters is the point
  const safe = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
  return safe.length > max ? `${safe.slice(0, Math.max(0, max - 1))}…` : safe
}

/** A byte count as people read it: 512 B, 1.5 KiB, 3.2 MiB. */
export const byteSize = (bytes: number): string =>
  bytes < 1024 ? `${bytes} B` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`

// A reader that stops early (`channel-state inspect … | head`) closes the pipe: finish quietly
// instead of dying on EPIPE with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0)
    throw error
  })
}
