/**
 * Reading the string flags the operator commands share.
 *
 * @internal
 */
import { CliFailure, ExitCode } from "./output.js"

/** A non-empty string flag, or `undefined` when absent; an empty one is a usage error (exit 2). */
export const nameFlag = (values: Record<string, string | boolean | undefined>, flag: string, command: string): string | undefined => {
  const value = values[flag]
  if (value === undefined) return undefined
  if (typeof value !== "string" || value.length === 0) {
    throw new CliFailure(`--${flag} needs a value`, ExitCode.usage, `Run \`channel-state ${command} --help\`.`)
  }
  return value
}
