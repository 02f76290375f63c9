/**
 * A child process for the Chat SDK adapter's cross-process tests: our adapter on a shared
 * SQLite file or PostgreSQL database (`sqlitePath` / `pgUrl`, as a bot opens it).
 *
 *   node --import tsx test/support/chatWorker.ts <sqlite|pg> <file or url> <go file> <worker> race <n>
 *     says ready, waits for the go file, then at once: n setIfNotExists (dedupe:<i>) and n
 *     acquireLock (thread:<i>) calls; then n appends to "shared" (maxLength 25) and "all", n
 *     enqueues to "queue" and to "bounded" (maxSize 5); says `enqueued`, waits for `drain` on
 *     stdin, dequeues "queue" until empty and says its result.
 *   node --import tsx test/support/chatWorker.ts <sqlite|pg> <file or url> - <worker> write
 *     writes one of everything, says `written`, and waits to be killed.
 *   node --import tsx test/support/chatWorker.ts <sqlite|pg> <file or url> - <worker> append
 *     appends 0, 1, 2, … to "log" (and to "recent", maxLength 5) one after another, saying
 *     `acked` after each, until killed.
 */
import type { StateAdapter } from "chat"
import { Effect } from "effect"
import { createChatState } from "../../src/chat-sdk/index.js"
import { onStdinLine, say, waitForGo } from "./workerIo.js"

const [backend, location, goFile, worker, role, count] = process.argv.slice(2)

export type ChatWorkerLine =
  | { readonly type: "ready"; readonly worker: string }
  | { readonly type: "enqueued"; readonly worker: string }
  | { readonly type: "written"; readonly worker: string; readonly token: string }
  | { readonly type: "acked"; readonly worker: string; readonly i: number }
  | {
      readonly type: "result"
      readonly worker: string
      /** The dedupe keys and thread locks this worker won. */
      readonly claims: ReadonlyArray<number>
      readonly locks: ReadonlyArray<number>
      /** The deepest the bounded queue was after any of this worker's enqueues. */
      readonly deepestBounded: number
      /** The queue entries this worker dequeued, in order. */
      readonly dequeued: ReadonlyArray<string>
    }
  | { readonly type: "fatal"; readonly worker: string; readonly message: string }

// A busy 2-core machine with several writers: wait out the database lock far longer than the default.
const state: StateAdapter =
  backend === "pg" ? createChatState({ pgUrl: location!, lockWait: "60 seconds" }) : createChatState({ sqlitePath: location!, lockWait: "60 seconds" })

const entry = (id: string) => ({ message: { id } as never, enqueuedAt: Date.now(), expiresAt: Date.now() + 600_000 })
const range = (n: number) => Array.from({ length: n }, (_, i) => i)

const race = async (n: number) => {
  const [claims, locks] = await Promise.all([
    Promise.all(range(n).map((i) => state.setIfNotExists(`dedupe:${i}`, worker, 600_000))),
    Promise.all(range(n).map((i) => state.acquireLock(`thread:${i}`, 600_000)))
  ])
  let deepestBounded = 0
  for (const i of range(n)) {
    await state.appendToList("shared", `${worker}:${i}`, { maxLength: 25, ttlMs: 600_000 })
    await state.appendToList("all", `${worker}:${i}`)
    await state.enqueue("queue", entry(`${worker}:${i}`), 10_000)
    deepestBounded = Math.max(deepestBounded, await state.enqueue("bounded", entry(`${worker}:${i}`), 5))
  }
  say({ type: "enqueued", worker })
  await new Promise<void>((resolve) => onStdinLine((line) => line === "drain" && resolve()))
  const dequeued: Array<string> = []
  for (let next = await state.dequeue("queue"); next !== null; next = await state.dequeue("queue")) dequeued.push((next.message as unknown as { id: string }).id)
  say({
    type: "result",
    worker,
    claims: range(n).filter((i) => claims[i]),
    locks: range(n).filter((i) => locks[i] !== null),
    deepestBounded,
    dequeued
  })
}

const write = async () => {
  await state.subscribe("slack:C1:1.1")
  await state.set("thread-state:slack:C1:1.1", { topic: "durable" })
  for (const i of [1, 2, 3]) await state.appendToList("history", i, { maxLength: 10 })
  for (const id of ["m1", "m2"]) await state.enqueue("slack:C1:1.1", entry(id), 10)
  const lock = await state.acquireLock("slack:C1:1.1", 600_000)
  say({ type: "written", worker, token: lock?.token ?? "" })
  await new Promise(() => {}) // until SIGKILL
}

const appendUntilKilled = async () => {
  for (let i = 0; ; i++) {
    await state.appendToList("recent", i, { maxLength: 5, ttlMs: 600_000 })
    await state.appendToList("log", i)
    say({ type: "acked", worker, i })
  }
}

const main = async () => {
  await state.connect()
  say({ type: "ready", worker })
  if (role === "race") {
    await Effect.runPromise(waitForGo(goFile!))
    await race(Number(count))
  } else if (role === "append") await appendUntilKilled()
  else await write()
  await state.disconnect()
  process.exit(0)
}

main().catch((error) => {
  say({ type: "fatal", worker, message: String(error) })
  process.exit(1)
})
