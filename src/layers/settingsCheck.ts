/**
 * Checks settings a host passes — often parsed from JSON or the environment — before anything
 * uses them, and says what is wrong in one line naming the option's full path and the value
 * (`store.sweepInterval is "soon": expected a duration such as "30 seconds" or a number of
 * milliseconds`). Pure; never throws.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

/** What one setting must be: `undefined` when `value` is fine, else what was expected. */
export type Rule = (value: unknown) => string | undefined

/** Describes a value for an error line: JSON, cut at 60 characters, or its type. */
export const describeValue = (value: unknown): string => {
  if (value === undefined) return "undefined"
  if (typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") return typeof value
  let json: string | undefined
  try {
    json = JSON.stringify(value)
  } catch {
    json = undefined
  }
  if (json === undefined) return typeof value
  return json.length > 60 ? `${json.slice(0, 60)}…` : json
}

/** The line for a setting at `path` whose read threw (a getter or proxy of the host's). */
export const unreadable = (path: string, error: unknown): string =>
  `${path} could not be read: ${describeValue(error instanceof Error ? error.message : error)}`

/** The longest duration a setting may hold: what a Node timer (and PostgreSQL's lock_timeout) takes, about 24.8 days. */
export const MAX_DURATION_MILLIS = 2 ** 31 - 1

/**
 * A duration: a `Duration`, a string such as `"30 seconds"`, or milliseconds as a number —
 * finite, from 0 to {@link MAX_DURATION_MILLIS}.
 */
export const duration: Rule = (value) => {
  // Effect clamps a negative duration to zero: a negative setting is a mistake, not "no wait".
  const negative = (typeof value === "number" && !(value >= 0)) || (typeof value === "string" && value.trim().startsWith("-"))
  const decoded = negative ? Option.none() : Duration.decodeUnknown(value)
  const millis = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : Number.NaN
  if (Number.isFinite(millis) && millis >= 0 && millis <= MAX_DURATION_MILLIS) return undefined
  return 'expected a duration such as "30 seconds" or a number of milliseconds (at most 24 days)'
}

/** A whole number from `min` up, to `max` when given (`Number.MAX_SAFE_INTEGER` at most). */
export const wholeNumber =
  (min: number, max?: number): Rule =>
  (value) =>
    Number.isSafeInteger(value) && (value as number) >= min && (max === undefined || (value as number) <= max)
      ? undefined
      : `expected a whole number of at least ${min}${max === undefined ? "" : ` and at most ${max}`}`

/** One of the strings listed. */
export const oneOf =
  (...choices: ReadonlyArray<string>): Rule =>
  (value) =>
    typeof value === "string" && choices.includes(value) ? undefined : `expected one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`

/** A non-empty string. */
export const text: Rule = (value) => (typeof value === "string" && value.length > 0 ? undefined : "expected a non-empty string")

/** A boolean. */
export const flag: Rule = (value) => (typeof value === "boolean" ? undefined : "expected true or false")

/** Allows `undefined` (the option left out) beside what `rule` allows. */
export const optional =
  (rule: Rule): Rule =>
  (value) =>
    value === undefined ? undefined : rule(value)

/**
 * The first problem of `settings` against `rules`, as one line with `prefix` + the option's
 * name — or `undefined`. A settings value that is not an object is itself the problem; options
 * not listed in `rules` are the caller's to check.
 */
export const firstProblem = (prefix: string, settings: unknown, rules: Readonly<Record<string, Rule>>): string | undefined => {
  try {
    return problemOf(prefix, settings, rules)
  } catch (error) {
    return unreadable(prefix.replace(/\.$/, "") || "settings", error)
  }
}

/**
 * Like {@link firstProblem}, and an own option that `rules` does not list is a problem too
 * (a misspelled setting would otherwise be ignored in silence).
 */
export const firstProblemOrUnknown = (prefix: string, settings: unknown, rules: Readonly<Record<string, Rule>>): string | undefined => {
  const problem = firstProblem(prefix, settings, rules)
  if (problem !== undefined || settings === undefined) return problem
  try {
    const unknown = Object.keys(settings as object).find((name) => !Object.hasOwn(rules, name))
    return unknown === undefined ? undefined : `${prefix}${unknown} is not a setting: expected one of ${Object.keys(rules).join(", ")}`
  } catch (error) {
    return unreadable(prefix.replace(/\.$/, "") || "settings", error)
  }
}

const problemOf = (prefix: string, settings: unknown, rules: Readonly<Record<string, Rule>>): string | undefined => {
  if (settings === undefined) return undefined
  if (typeof settings !== "object" || settings === null || Array.isArray(settings)) {
    return `${prefix.replace(/\.$/, "") || "settings"} is ${describeValue(settings)}: expected an object`
  }
  const record = settings as Record<string, unknown>
  for (const [name, rule] of Object.entries(rules)) {
    let value: unknown
    try {
      value = Object.hasOwn(record, name) ? record[name] : undefined
    } catch (error) {
      return unreadable(`${prefix}${name}`, error)
    }
    const problem = rule(value)
    if (problem !== undefined) return `${prefix}${name} is ${describeValue(value)}: ${problem}`
  }
  return undefined
}
