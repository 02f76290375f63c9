/**
 * A child process for test/caps.claimRoom.processes.test.ts: mixed traffic (claims with live,
 * short-lived and dead-on-arrival rows, registers, write batches, consumes, deletes) into a
 * reject-new namespace and an evict-oldest one under one owner cap, on one SQLite file.
 *
 *   node --import tsx test/support/capsMixWorker.ts <file> <go file> <worker id> <rounds>
 */
import { Effect, type Layer, Schema } from "effect"
import { KeyedStore } from "../../src/KeyedStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import { say, waitForGo } from "./workerIo.js"

export const OWNER_CAP = 12
export const rejNamespace = { owner: "p", namespace: "rej", schema: Schema.String, maxEntries: 8, overflow: "reject-new" as const }
export const eviNamespace = { owner: "p", namespace: "evi", schema: Schema.String, maxEntries: 6, overflow: "evict-oldest" as const }

const main = () => {
  const [file, goFile, worker = "?", roundsText] = process.argv.slice(2)
  const rounds = Number(roundsText)
  let seed = [...worker].reduce((a, c) => a * 31 + c.charCodeAt(0), 7) & 0x7fffffff
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed / 0x7fffffff
  }
  const program = Effect.gen(function* () {
    const store = yield* KeyedStore
    const handles = [yield* store.open(rejNamespace), yield* store.open(eviNamespace)]
    say({ type: "ready", worker })
    yield* waitForGo(goFile!)
    const startedAt = Date.now()
    const odd: Array<string> = []
    for (let round = 0; round < rounds; round++) {
      const now = Date.now()
      const ops = Array.from({ length: 30 }, () => {
        const h = handles[Math.floor(random() * 2)]!
        const key = `k${Math.floor(random() * 20)}`
        const r = random()
        const when: { createdAt?: number; expiresAt: number } | undefined = r < 0.15 ? { createdAt: now - 10_000, expiresAt: now - 5_000 } : r < 0.35 ? { expiresAt: now + 20 } : undefined
        const kind = random()
        if (kind < 0.5) return Effect.either(h.registerIfAbsent(key, worker, when))
        if (kind < 0.62) return Effect.either(h.register(key, worker, when))
        if (kind < 0.75) return Effect.either(h.writeBatch([{ _tag: "Register", key, value: worker, createdAt: when?.createdAt ?? now, expiresAt: when?.expiresAt }, { _tag: "Register", key: `${key}b`, value: worker, createdAt: now, expiresAt: undefined }]))
        if (kind < 0.9) return Effect.either(h.consume(key))
        return Effect.either(h.delete(key))
      })
      const answers = yield* Effect.all(ops, { concurrency: "unbounded" })
      for (const a of answers) if (a._tag === "Left" && a.left.reason !== "LimitExceeded") odd.push(`${a.left.reason}: ${a.left.detail}`)
      yield* Effect.sleep("5 millis")
    }
    return { type: "result", worker, startedAt, finishedAt: Date.now(), odd }
  })
  const layer = SqliteStore.layer({ filename: file!, ownerMaxEntries: OWNER_CAP })
  Effect.runPromiseExit(Effect.scoped(Effect.provide(Effect.map(program, say), layer as Layer.Layer<KeyedStore>))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

if (process.argv[1]?.endsWith("capsMixWorker.ts")) main()
