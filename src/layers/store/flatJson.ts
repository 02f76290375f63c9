/**
 * Fast paths for the commonest values a store holds — flat structs of strings, numbers,
 * booleans and literals, like the channel caches' `{ agentId?, repliedAt }` — compiled once
 * per namespace from its Schema's AST. The encoding path answers only when the value is exactly
 * such a struct (a plain object, nothing but the declared properties, every one of the
 * declared kind, numbers finite); then its JSON is exactly what the full path (Schema encode,
 * the plain-JSON check, `JSON.stringify` of the encoded value) writes, in the Schema's
 * property order. The decoding path answers that parsed JSON is already what the Schema
 * decodes it to. For anything else each answers that it cannot, and the full path decides,
 * refusals included: a fast path never accepts what the full path would refuse.
 *
 * @internal
 */
import { types } from "node:util"
import * as Option from "effect/Option"
import * as SchemaAST from "effect/SchemaAST"

/** How one property's value is checked. */
type Check = (value: unknown) => boolean

const isFiniteNumber: Check = (value) => typeof value === "number" && Number.isFinite(value)

/** The check of a type the fast path knows, or `undefined`. */
const checkOf = (ast: SchemaAST.AST): Check | undefined => {
  switch (ast._tag) {
    case "StringKeyword":
      return (value) => typeof value === "string"
    case "NumberKeyword":
      return isFiniteNumber
    case "BooleanKeyword":
      return (value) => typeof value === "boolean"
    case "Literal": {
      const literal = ast.literal
      if (typeof literal === "bigint" || (typeof literal === "number" && !Number.isFinite(literal))) return undefined
      return (value) => value === literal
    }
    case "Union": {
      const checks = ast.types.map(checkOf)
      if (checks.some((check) => check === undefined)) return undefined
      return (value) => checks.some((check) => check!(value))
    }
    default:
      return undefined
  }
}

const PLAIN = Object.prototype

/**
 * `JSON.stringify` of a finite number, the same text. An epoch-millisecond timestamp (13
 * digits, the commonest number a cache value holds) is written as two small integers, its
 * digits before and after the last six: V8 formats a number past 2^30 through its
 * floating-point printer (about 100 ns), a small integer in a fraction of that.
 */
const numberJson = (n: number): string => {
  if (n < 1e9 || n >= 1e15 || !Number.isInteger(n)) return JSON.stringify(n)
  const high = Math.floor(n / 1e6)
  const low = n - high * 1e6
  return `${high}${low >= 1e5 ? "" : low >= 1e4 ? "0" : low >= 1e3 ? "00" : low >= 100 ? "000" : low >= 10 ? "0000" : "00000"}${low}`
}

/** A property of a flat struct, as both fast paths read it. */
interface FlatField {
  readonly name: string
  /** Its name as JSON, with the colon: what the encoding writes before its value. */
  readonly prefix: string
  readonly optional: boolean
  readonly undefinedAllowed: boolean
  readonly check: Check
}

/**
 * The properties of `ast` in the Schema's order, or `undefined` when the Schema is not a flat
 * struct of known kinds without transformations (the encoded side must be the type side itself).
 */
const flatFields = (ast: SchemaAST.AST): ReadonlyArray<FlatField> | undefined => {
  // Parse options of the Schema's own (property order, excess properties, exact) are the full path's to apply.
  if (ast._tag !== "TypeLiteral" || ast.indexSignatures.length > 0 || SchemaAST.encodedAST(ast) !== ast || Option.isSome(SchemaAST.getParseOptionsAnnotation(ast))) {
    return undefined
  }
  const fields: Array<FlatField> = []
  for (const property of ast.propertySignatures) {
    // `__proto__` is dropped by the full path's encode, and integer-like names come first in
    // JavaScript's own key order, not the Schema's: both are the full path's to write.
    if (typeof property.name !== "string" || property.name === "__proto__" || /^\d+$/.test(property.name)) return undefined
    // An optional property is a union with undefined: check the other members.
    const type = property.isOptional && property.type._tag === "Union" ? SchemaAST.Union.make(property.type.types.filter((t) => t._tag !== "UndefinedKeyword")) : property.type
    const check = checkOf(type)
    if (check === undefined) return undefined
    const undefinedAllowed = property.type._tag === "Union" && property.type.types.some((t) => t._tag === "UndefinedKeyword")
    fields.push({ name: property.name, prefix: `${JSON.stringify(property.name)}:`, optional: property.isOptional, undefinedAllowed, check })
  }
  return fields
}

/** The decoding fast path of a Schema of any value. */
const takeAsIs = (_parsed: unknown) => true

/**
 * Compiles the decoding fast path of `ast`, or `undefined` when the Schema is not a flat
 * struct (see {@link flatFields}). It answers `true` only for what `JSON.parse` made that is
 * already exactly what the Schema decodes it to: a plain object holding nothing but declared
 * properties, in the Schema's order, every required one present, every one of its kind. The
 * decoder would build the same object again; the parsed one, which nobody else holds, is the
 * answer. For anything else — an extra property, another order, a wrong kind — it answers
 * `false` and the Schema decides, refusals included. A Schema of any value (`Schema.Unknown`,
 * `Schema.Any`) takes every parsed value as it is.
 */
export const compileFlatDecode = (ast: SchemaAST.AST): ((parsed: unknown) => boolean) | undefined => {
  // `Schema.Unknown` and `Schema.Any` (the OpenClaw facade's namespaces) decode anything to itself.
  if (ast._tag === "UnknownKeyword" || ast._tag === "AnyKeyword") return takeAsIs
  const fields = flatFields(ast)
  if (fields === undefined) return undefined
  const required = fields.filter((field) => !field.optional).length
  return (parsed) => {
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || Object.getPrototypeOf(parsed) !== PLAIN) return false
    // A declared name that `Object.prototype` answers too (someone patched it: a value, a
    // getter, a setter) is read or written through it by the decoder: its result is then not
    // the parsed object, so the Schema decides. Asked on every call: a patch may come later.
    for (const field of fields) if (field.name in PLAIN) return false
    const record = parsed as Record<string, unknown>
    let next = 0
    let present = 0
    // Own and inherited enumerable names alike: an inherited one is not declared (see above), so never fast.
    for (const name in record) {
      while (next < fields.length && fields[next]!.name !== name) next++
      if (next === fields.length) return false
      const field = fields[next++]!
      if (!field.check(record[name])) return false
      if (!field.optional) present++
    }
    return present === required
  }
}

/** Compiles the encoding fast path of `ast`, or `undefined` when the Schema is not a flat struct (see {@link flatFields}). */
export const compileFlatJson = (ast: SchemaAST.AST): ((value: unknown) => string | undefined) | undefined => {
  const fields = flatFields(ast)
  if (fields === undefined) return undefined
  const known = new Set(fields.map((field) => field.name))
  return (value) => {
    // A proxy can answer reads differently from what the full path looks at: never fast.
    if (typeof value !== "object" || value === null || Array.isArray(value) || types.isProxy(value)) return undefined
    const proto = Object.getPrototypeOf(value)
    if (proto !== PLAIN && proto !== null) return undefined
    const record = value as Record<string, unknown>
    for (const name in record) if (!known.has(name)) return undefined
    let json = "{"
    for (const field of fields) {
      // Only own properties count, as in the full path (an inherited one is absent).
      const item = Object.hasOwn(record, field.name) ? record[field.name] : undefined
      if (item === undefined) {
        // An own property holding undefined: omitted when the type allows undefined, else (exact optional) the full path refuses it.
        if (!field.optional || (!field.undefinedAllowed && Object.hasOwn(record, field.name))) return undefined
        continue
      }
      if (!field.check(item)) return undefined
      json += `${json.length > 1 ? "," : ""}${field.prefix}${typeof item === "number" ? numberJson(item) : JSON.stringify(item)}`
    }
    return `${json}}`
  }
}
