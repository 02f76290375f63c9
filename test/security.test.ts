/**
 * Security properties: owners are isolated through every API member, no SQL text is built
 * from input, and no stored value ever shows up in an error message or a log line.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Logger, Option, Schema } from "effect"
import * as Slack from "../src/channels/SlackThreadParticipation.js"
import { KeyedStore } from "../src/KeyedStore.js"
import { backends } from "./support/backends.js"
import { makeFaultyStoreLayer } from "./support/faultyStore.js"

const SECRET = "S3CRET-user-content-7f1c"
const Value = Schema.Struct({ text: Schema.String })

for (const backend of backends) {
  describe(`owner isolation (${backend.name})`, () => {
    it.scoped("an owner's handle never reads, counts, consumes, deletes or clears another owner's rows", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* Effect.gen(function* () {
          const store = yield* KeyedStore
          const open = (owner: string) => store.open({ owner, namespace: "shared.name", schema: Value, maxEntries: 10 })
          const alice = yield* open("alice")
          const mallory = yield* open("mallory")
          yield* alice.register("k", { text: SECRET })
          yield* alice.register("other", { text: SECRET })
          expect(yield* mallory.lookup("k")).toEqual(Option.none())
          expect(yield* mallory.lookupEntry("k")).toEqual(Option.none())
          expect(yield* mallory.consume("k")).toEqual(Option.none())
          expect(yield* mallory.delete("k")).toBe(false)
          expect(yield* mallory.size).toBe(0)
          expect(yield* mallory.entries).toEqual([])
          expect(yield* mallory.clear).toBe(0)
          yield* mallory.writeBatch([{ _tag: "Delete", key: "other" }])
          expect(yield* mallory.registerIfAbsent("k", { text: "mine" })).toBe(true)
          expect(yield* alice.lookup("k")).toEqual(Option.some({ text: SECRET }))
          expect(yield* alice.size).toBe(2)
        }).pipe(Effect.provide(db.store()), Effect.scoped)
      })
    )

    it.scoped("no value appears in any error message: schema mismatch, size, non-JSON, corrupt", () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        yield* Effect.gen(function* () {
          const store = yield* KeyedStore
          const typed = yield* store.open({ owner: "alice", namespace: "typed", schema: Value, maxEntries: 10 })
          const raw = yield* store.open({ owner: "alice", namespace: "raw", schema: Schema.Unknown, maxEntries: 10 })
          const failures = [
            typed.register("a", { text: 42 } as unknown as typeof Value.Type),
            typed.register("b", { text: SECRET, extra: SECRET } as unknown as typeof Value.Type),
            raw.register("c", `${SECRET}${"x".repeat(1_100_000)}`),
            raw.register("d", { text: SECRET, when: new Date() }),
            raw.register("e", { text: SECRET, n: Number.NaN })
          ]
          let checked = 0
          for (const failure of failures) {
            const result = yield* Effect.either(failure)
            if (Either.isRight(result)) continue
            checked++
            expect(result.left.message).not.toContain(SECRET)
            expect(result.left.detail).not.toContain(SECRET)
          }
          expect(checked).toBeGreaterThanOrEqual(4)
        }).pipe(Effect.provide(db.store()), Effect.scoped)
      })
    )
  })
}

describe("no value in log lines", () => {
  it.scoped("store failures are logged with plugin, feature, namespace, operation and reason, never the value", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const logger = Logger.make(({ message, annotations, cause }) => {
        lines.push(`${JSON.stringify(message)} ${JSON.stringify([...annotations])} ${String(cause)}`)
      })
      const faulty = makeFaultyStoreLayer(1)
      yield* Effect.gen(function* () {
        const slack = yield* Slack.SlackThreadParticipation
        for (let i = 0; i < 50; i++) {
          slack.record("T", "C", `t${i}`, { agentId: SECRET })
          yield* slack.check("T", "C", `cold-${i}`)
        }
      }).pipe(Effect.provide(Slack.layerPersistent({ pluginId: "slack" }).pipe(Layer.provide(faulty.layer))), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      expect(lines.length).toBeGreaterThan(0)
      expect(lines.some((line) => line.includes("slack.thread-participation") && line.includes("Unavailable"))).toBe(true)
      for (const line of lines) expect(line).not.toContain(SECRET)
    })
  )
})

describe("no SQL text is built from input", () => {
  it("every `unsafe` statement in src/ is one of the reviewed, input-free ones", () => {
    const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "src")
    const files = fs.readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"))
    const found: Array<string> = []
    for (const file of files) {
      const text = fs.readFileSync(path.join(root, file), "utf8")
      // The rest of the line after every `.unsafe(` / `.unsafe<T>(` / connection `.execute(`: its SQL text argument.
      for (const match of text.matchAll(/\.(?:unsafe|execute)(?:<[^(]*>)?\(([^\n]*)/g)) {
        found.push(`${file.replaceAll("\\", "/")}: ${match[1]?.trim()}`)
      }
    }
    // Statement texts from sqlStatements.ts (checked below); a number computed by our own code; a clamped integer.
    const reviewed = [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text, not a template
      "layers/store/SqliteStore.ts: `PRAGMA busy_timeout = ${busyMillis}`), client.unsafe(\"PRAGMA query_only = 1\")]).pipe(Effect.mapError(openError))",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text, not a template
      "layers/store/SqliteStore.ts: `PRAGMA busy_timeout = ${busyMillis}`).pipe(Effect.mapError(openError))",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text, not a template
      "layers/store/StoreAdmin.ts: `PRAGMA integrity_check(${Math.max(1, Math.floor(limit))})`),",
      // A statement text from sqlStatements.ts, as itself or under a prepared statement's name.
      "layers/store/pgPrepared.ts: query, statement.params, undefined) as Effect.Effect<ReadonlyArray<R>, SqlError>",
      "layers/store/sqlStatements.ts: statement.text, statement.params, undefined) as Effect.Effect<ReadonlyArray<R>, SqlError>",
      // A fixed transaction verb (BEGIN IMMEDIATE, COMMIT, ROLLBACK, SAVEPOINT effect_sql_<n>).
      "layers/store/sqlTransaction.ts: text, [], undefined))",
      // The store's own statement runner (WriteTransactions.execute): a statement from
      // sqlStatements.ts (checked below), or the fixed namespace list.
      "layers/store/SqlStore.ts: listNamespaces)",
      "layers/store/SqlStore.ts: statement))",
      "layers/store/sqlBatch.ts: statements.upsertMany(chunk))",
      // The claim function's definition: a fixed text (checked below).
      "layers/store/migrations.ts: CREATE_CLAIM_FUNCTION)).pipe("
    ]
    expect(found.sort()).toEqual([...reviewed].sort())
  })

  it("every interpolation in the store's statement texts is a placeholder, the clock, or a fragment made of them", () => {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "src", "layers", "store", "sqlStatements.ts")
    const text = fs.readFileSync(file, "utf8")
    const interpolations = [...text.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]!.trim())
    // Placeholders (p.v: the value goes to the parameter array), the clock, table/column constants,
    // and the module's own fragments, which are built of those same pieces.
    const allowed = [
      /^p\.v\([a-zA-Z.]+\)$/,
      /^p\.now\(\)$/,
      /^(E|COLUMNS|SET_ALL|condition|created|expired|expires|gate|inner|MAX_EXPIRY|namespaceCount|ownerTotal|prefix|set|stamp|tuples|value|where|i|this\.values\.length)$/,
      // The PostgreSQL statements that take the namespace's lock themselves: the lock's CTE and
      // gate, and the one-statement claim's CTEs, all built of placeholders and constants.
      /^(LOCK_GATE|when|isLive|fits|candidates|locking|counter|claimed|answer)$/,
      // The claim function's call: its name, and every argument a placeholder.
      /^CLAIM_FUNCTION$/,
      /^args\.map\(\(arg\) => p\.v\(arg\)\)\.join\(", "\)$/,
      // SQLite's one-statement claim: its room check (a CTE) and the two conditions it is made of.
      /^(room|namespaceRoom|ownerRoom)$/,
      /^lockCte\(p, lock, ""\)$/,
      // The advisory lock's SELECT (its own interpolations, placeholders, are checked here too).
      /^advisoryLock\(p, lock\)$/,
      /^(inNamespace|live)\(p\)$/,
      /^LEAST\[dialect\.backend\]$/,
      /^times\(p, row\.times\)$/,
      /^tuple\(p, row\)$/,
      /^tuples\.join\(", "\)$/,
      /^keys\.map\(\(k\) => p\.v\(k\)\)\.join\(", "\)$/,
      /^Array\.from\(\{ length: 6$/,
      // A key list is one parameter (its JSON); expiries may be null; the fragments built of them.
      /^p\.v\(JSON\.stringify\(keys\)\)$/,
      /^p\.v\(seen\.expiresAt \?\? null\)$/,
      /^keyIn\(p, keys\)$/,
      /^asObserved\(p, (row\.key|key), seen\)$/,
      /^(wanted|order)$/,
      // A comparison operator chosen by the page's direction, not by input text.
      /^range\.order === "asc" \? ">" : "<"$/
    ]
    const unexpected = interpolations.filter((part) => !allowed.some((pattern) => pattern.test(part)))
    expect(interpolations.length).toBeGreaterThan(50)
    expect(unexpected).toEqual([])
  })

  it("the claim function's definition is a fixed text: its only interpolation is the function's own name", () => {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "src", "layers", "store", "migrations.ts")
    const text = fs.readFileSync(file, "utf8")
    const start = text.indexOf("const CREATE_CLAIM_FUNCTION = `")
    expect(start).toBeGreaterThan(0)
    const definition = text.slice(start, text.indexOf("`", start + "const CREATE_CLAIM_FUNCTION = `".length) + 1)
    expect(definition).toContain("LANGUAGE plpgsql")
    expect([...definition.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]!.trim())).toEqual(["CLAIM_FUNCTION"])
  })
})
