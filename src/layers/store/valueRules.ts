/**
 * What a stored value may be, the same on every backend: JSON that reads back exactly as it
 * was written. A value the JSON encoding would change is refused (`InvalidInput`) rather than
 * stored altered; a value too large or too deep is `LimitExceeded`. The rules follow
 * OpenClaw's plugin-state store (depth counted from 0 at the root, 1 MiB by default), except
 * that a property holding `undefined` is taken as absent — it is how a Schema's optional
 * fields encode — where OpenClaw refuses it.
 *
 * @internal
 */
import { types } from "node:util"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import { StateStoreError } from "../../StateStoreError.js"
import { invalid, type ResolvedNamespace, utf8Bytes } from "./storeRules.js"

/** The deepest a value may reach: the root is at depth 0, and nothing (leaves included) may sit deeper than 64. */
export const MAX_VALUE_DEPTH = 64

/** Why a value is refused: the error's reason, what is wrong, and where (a path of property names and indexes). */
interface Problem {
  readonly reason: "InvalidInput" | "LimitExceeded"
  readonly detail: string
  readonly path: Array<string | number>
}

const problem = (reason: Problem["reason"], detail: string): Problem => ({ reason, detail, path: [] })

const OBJECT_SOURCE = Function.prototype.toString.call(Object)
const ARRAY_SOURCE = Function.prototype.toString.call(Array)

/** Whether `proto` is `constructor`'s prototype in this realm or another one (a value made in a `vm` context is plain too). */
const isBuiltinPrototype = (proto: unknown, own: object, source: string, parentIsRoot: boolean): boolean => {
  if (proto === own) return true
  if (proto === null || typeof proto !== "object") return false
  const parent = Object.getPrototypeOf(proto)
  if (parentIsRoot ? parent !== null : !isBuiltinPrototype(parent, Object.prototype, OBJECT_SOURCE, true)) return false
  const maker = (proto as { constructor?: unknown }).constructor
  return typeof maker === "function" && Function.prototype.toString.call(maker) === source && maker.prototype === proto
}

/** A `toJSON` on the prototype chain (someone patched `Object.prototype` or `Array.prototype`): `JSON.stringify` would call it. */
const inheritsToJson = (proto: object): boolean => {
  for (let p: object | null = proto; p !== null; p = Object.getPrototypeOf(p)) if (Object.getOwnPropertyDescriptor(p, "toJSON") !== undefined) return true
  return false
}

/**
 * Why `value` is not JSON that reads back as it is, or `undefined` when it is. Getters are
 * never called (nor proxy traps: a proxy is refused); `ancestors` holds the objects above
 * `value`, so a cycle is named as one (the same object twice, side by side, is fine).
 * `-0` is taken, and reads back as `0`: JSON has no negative zero.
 */
const jsonProblem = (value: unknown, depth: number, ancestors: Array<object>): Problem | undefined => {
  if (depth > MAX_VALUE_DEPTH) return problem("LimitExceeded", `value is nested deeper than ${MAX_VALUE_DEPTH} levels`)
  if (value === null || typeof value === "string" || typeof value === "boolean") return undefined
  if (typeof value === "number") return Number.isFinite(value) ? undefined : problem("InvalidInput", "value contains a non-finite number")
  if (typeof value !== "object") return problem("InvalidInput", `value contains a ${typeof value}, which is not JSON`)
  if (types.isProxy(value)) return problem("InvalidInput", "value contains a Proxy (what it answers is not what JSON would write)")
  if (ancestors.includes(value)) return problem("InvalidInput", "value contains a circular reference")
  ancestors.push(value)
  const found = Array.isArray(value) ? arrayProblem(value, depth, ancestors) : objectProblem(value, depth, ancestors)
  ancestors.pop()
  return found
}

/** Checks the own properties of a plain object or array: data properties only, enumerable, no symbols; items walked. */
const propertiesProblem = (value: object, names: ReadonlyArray<string>, depth: number, ancestors: Array<object>, isArray: boolean): Problem | undefined => {
  if (Object.getOwnPropertySymbols(value).length > 0) return problem("InvalidInput", `value contains ${isArray ? "an array" : "an object"} with symbol keys (JSON drops them)`)
  for (const name of names) {
    const descriptor = Object.getOwnPropertyDescriptor(value, name)!
    if (!("value" in descriptor)) return { ...problem("InvalidInput", "value contains an accessor property (getters are not read)"), path: [name] }
    if (!descriptor.enumerable) return { ...problem("InvalidInput", "value contains a non-enumerable property (JSON drops it)"), path: [name] }
    const item: unknown = descriptor.value
    if (item === undefined) {
      // An undefined property is an absent one: how a Schema's optional fields encode.
      if (!isArray) continue
      return { ...problem("InvalidInput", "value contains an undefined array element (JSON writes it as null)"), path: [name] }
    }
    const found = jsonProblem(item, depth + 1, ancestors)
    if (found) {
      found.path.unshift(isArray ? Number(name) : name)
      return found
    }
  }
  return undefined
}

const arrayProblem = (value: ReadonlyArray<unknown>, depth: number, ancestors: Array<object>): Problem | undefined => {
  const proto = Object.getPrototypeOf(value)
  if (!isBuiltinPrototype(proto, Array.prototype, ARRAY_SOURCE, false)) return problem("InvalidInput", "value contains an array of a subclass, which reads back as a plain array")
  if (inheritsToJson(proto)) return problem("InvalidInput", "value contains an array that inherits a toJSON")
  const names = Object.getOwnPropertyNames(value)
  // Own names are the indexes, then "length": any other (a toJSON, a label) JSON would drop.
  if (names.length !== value.length + 1) {
    for (let i = 0; i < value.length; i++) if (!Object.hasOwn(value, i)) return { ...problem("InvalidInput", "value contains a sparse array"), path: [i] }
    return problem("InvalidInput", "value contains an array with named properties (JSON drops them)")
  }
  return propertiesProblem(value, names.slice(0, value.length), depth, ancestors, true)
}

const objectProblem = (value: object, depth: number, ancestors: Array<object>): Problem | undefined => {
  const proto = Object.getPrototypeOf(value)
  if (!isBuiltinPrototype(proto, Object.prototype, OBJECT_SOURCE, true)) {
    const name = proto === null ? "null-prototype" : ((proto as { constructor?: { name?: string } }).constructor?.name ?? "non-plain")
    return problem("InvalidInput", `value contains a ${name} object, which is not plain JSON`)
  }
  if (inheritsToJson(proto)) return problem("InvalidInput", "value contains an object that inherits a toJSON")
  return propertiesProblem(value, Object.getOwnPropertyNames(value), depth, ancestors, false)
}

const where = (path: ReadonlyArray<string | number>) => (path.length === 0 ? "" : ` (at ${path.join(".")})`)

/** A refused value's error (a plain function: the encoding path creates no closure per value). */
const refuseValue = <A>(ns: ResolvedNamespace<A>, operation: string, key: string, reason: Problem["reason"], detail: string) =>
  reason === "InvalidInput"
    ? invalid(operation, detail, { owner: ns.owner, namespace: ns.namespace, key })
    : new StateStoreError({ reason, operation, detail, owner: ns.owner, namespace: ns.namespace, key })

/**
 * Encodes a value with the namespace Schema to JSON text within the limits, or explains why
 * not: `InvalidInput` for what is not JSON, `LimitExceeded` for too large or too deep.
 * Allocation-free on the flat-struct fast path: it runs once per row of a flush.
 */
export const encodeJson = <A>(ns: ResolvedNamespace<A>, operation: string, key: string, value: A): string | StateStoreError => {
  try {
    const flat = ns.flatJson?.(value)
    if (flat !== undefined && flat.length * 3 <= ns.maxValueBytes) return flat
    const encoded = ns.encode(value)
    if (Either.isLeft(encoded)) {
      // Name where it failed, never what the value was: values may hold user content.
      const path = ParseResult.ArrayFormatter.formatIssueSync(encoded.left)[0]?.path ?? []
      return refuseValue(ns, operation, key, "InvalidInput", `value does not match the namespace schema (at ${path.length > 0 ? path.join(".") : "the top level"})`)
    }
    const found = jsonProblem(encoded.right, 0, [])
    if (found) return refuseValue(ns, operation, key, found.reason, `${found.detail}${where(found.path)}`)
    const json = JSON.stringify(encoded.right)
    if (json === undefined) return refuseValue(ns, operation, key, "InvalidInput", "value encodes to nothing")
    // At most 3 UTF-8 bytes per UTF-16 code unit: short JSON needs no byte count.
    if (json.length * 3 <= ns.maxValueBytes) return json
    const bytes = utf8Bytes(json)
    if (bytes > ns.maxValueBytes) return refuseValue(ns, operation, key, "LimitExceeded", `value is ${bytes} bytes of JSON, the limit is ${ns.maxValueBytes}`)
    return json
  } catch (error) {
    // A toJSON or a Schema transformation that throws is the caller's value's fault, not the store's.
    return refuseValue(ns, operation, key, "InvalidInput", `value could not be read (${error instanceof Error ? error.name : typeof error} thrown while encoding it)`)
  }
}

/** {@link encodeJson} as an `Either`. */
export const encodeValue = <A>(ns: ResolvedNamespace<A>, operation: string, key: string, value: A): Either.Either<string, StateStoreError> => {
  const json = encodeJson(ns, operation, key, value)
  return typeof json === "string" ? Either.right(json) : Either.left(json)
}

/** A stored value that does not decode, as the `Corrupt` error of its key (a plain function: decoding creates no closure per row). */
const corruptValue = <A>(ns: ResolvedNamespace<A>, operation: string, key: string, detail: string) =>
  new StateStoreError({ reason: "Corrupt", operation, owner: ns.owner, namespace: ns.namespace, key, detail })

/**
 * Decodes stored JSON text; a failure is a `Corrupt` error for that key (the value is never
 * echoed). Parsed JSON the flat-struct fast path takes is the value itself (see flatJson.ts).
 */
export const decodeValue = <A>(ns: ResolvedNamespace<A>, operation: string, key: string, json: string): Either.Either<A, StateStoreError> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    return Either.left(corruptValue(ns, operation, key, "stored value is not valid JSON; the row was removed"))
  }
  if (ns.flatDecode?.(parsed) === true) return Either.right(parsed as A)
  const decoded = ns.decode(parsed)
  return Either.isRight(decoded) ? Either.right(decoded.right) : Either.left(corruptValue(ns, operation, key, "stored value no longer matches the namespace schema; the row was removed"))
}
