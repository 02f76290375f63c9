/**
 * The Chat SDK adapter across real OS processes on one database (a SQLite file; a PostgreSQL
 * database when CHANNEL_STATE_TEST_PG_URL is set): three workers started behind one barrier
 * race for the same dedupe keys and thread locks, append to the same lists and fill and drain
 * the same queues; and a process SIGKILLed right after its writes were acknowledged loses none
 * of them. Nothing here depends on timing: each worker's calls interleave however the machine
 * schedules them, and every assertion holds for every interleaving.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { StateAdapter } from "chat"
import { createChatState } from "../src/chat-sdk/index.js"
import { freshPgDatabase, PG_URL_VARIABLE, pgUrl, tempDir } from "./support/backends.js"
import type { ChatWorkerLine } from "./support/chatWorker.js"
import { spawnLineProcess } from "./support/lineProcess.js"
import { resultsOf, spawnGroup } from "./support/workerGroup.js"

const WORKER = "test/support/chatWorker.ts"
const WORKERS = ["a", "b", "c"]
const N = 30

type Result = Extract<ChatWorkerLine, { type: "result" }>
const isResult = (line: ChatWorkerLine): line is Result => line.type === "result"
const isEnqueued = (line: ChatWorkerLine): line is Extract<ChatWorkerLine, { type: "enqueued" }> => line.type === "enqueued"
const isAcked = (after: number) => (line: ChatWorkerLine): line is Extract<ChatWorkerLine, { type: "acked" }> => line.type === "acked" && line.i >= after
const isWritten = (line: ChatWorkerLine): line is Extract<ChatWorkerLine, { type: "written" }> => line.type === "written"
const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const all = WORKERS.flatMap((w) => range(N).map((i) => `${w}:${i}`))
/** Whether each worker's items appear in `items` in the order that worker wrote them. */
const inWriterOrder = (items: ReadonlyArray<string>) =>
  WORKERS.every((w) => {
    const mine = items.filter((item) => item.startsWith(`${w}:`)).map((item) => Number(item.split(":")[1]))
    return mine.every((i, k) => k === 0 || i > mine[k - 1]!)
  })

const location = (backend: "sqlite" | "pg") =>
  backend === "sqlite" ? Effect.map(tempDir, (dir) => path.join(dir, "state", "chat.sqlite")) : Effect.map(freshPgDatabase(pgUrl!), ({ url }) => url)
/** What `read` answers on a fresh adapter on `at` (connected for it, disconnected after). */
const readBack = <R>(backend: "sqlite" | "pg", at: string, read: (state: StateAdapter) => Promise<R>) =>
  Effect.promise(async () => {
    const state = backend === "sqlite" ? createChatState({ sqlitePath: at }) : createChatState({ pgUrl: at })
    await state.connect()
    try {
      return await read(state)
    } finally {
      await state.disconnect()
    }
  })

/** A worker of `role` on a fresh database, SIGKILLed as soon as it printed a line `isLine` matches: the database, that line, every line. */
const killedAfter = <M extends ChatWorkerLine>(backend: "sqlite" | "pg", role: string, isLine: (line: ChatWorkerLine) => line is M) =>
  Effect.gen(function* () {
    const at = yield* location(backend)
    const writer = yield* spawnLineProcess<ChatWorkerLine>(WORKER, [backend, at, "-", "w", role])
    const { line } = yield* writer.waitFor(isLine, 120_000)
    yield* writer.kill
    return { at, line, lines: writer.lines.map((received) => received.line) }
  })

const acrossProcesses = (backend: "sqlite" | "pg") =>
  describe(`Chat SDK state across processes: ${backend}`, () => {
    it.scopedLive(
      `${WORKERS.length} processes: each dedupe key and thread lock won once; lists keep every append (or the newest 25); queues never past maxSize, drained exactly once each, oldest first`,
      () =>
        Effect.gen(function* () {
          const at = yield* location(backend)
          const group = yield* spawnGroup<ChatWorkerLine>(WORKER, WORKERS, (goFile, name) => [backend, at, goFile, name, "race", String(N)])
          yield* group.start
          yield* group.lineOfEach(isEnqueued, 240_000)
          group.sendAll("drain")
          const results = resultsOf(group, yield* group.exits(240_000), isResult)

          const wonOnce = (won: ReadonlyArray<ReadonlyArray<number>>) => range(N).filter((i) => won.filter((mine) => mine.includes(i)).length !== 1)
          expect(wonOnce(results.map((r) => r.claims))).toEqual([])
          expect(wonOnce(results.map((r) => r.locks))).toEqual([])
          for (const r of results) expect(r.deepestBounded).toBeLessThanOrEqual(5)

          const dequeued = results.flatMap((r) => r.dequeued)
          expect([...dequeued].sort()).toEqual([...all].sort())
          for (const r of results) expect(inWriterOrder(r.dequeued)).toBe(true)

          const { shared, everything, bounded } = yield* readBack(backend, at, async (state) => ({
            shared: await state.getList<string>("shared"),
            everything: await state.getList<string>("all"),
            bounded: await state.queueDepth("bounded")
          }))
          expect([...everything].sort()).toEqual([...all].sort())
          expect(inWriterOrder(everything)).toBe(true)
          // The newest 25 appends: whatever a worker still has there is the end of what it wrote (trimming took the oldest).
          expect(shared).toHaveLength(25)
          expect(inWriterOrder(shared)).toBe(true)
          expect(new Set(shared).size).toBe(25)
          for (const w of WORKERS) {
            const mine = shared.filter((item) => item.startsWith(`${w}:`))
            expect(mine).toEqual(range(N).slice(N - mine.length).map((i) => `${w}:${i}`))
          }
          expect(bounded).toBe(5)
        }),
      300_000
    )

    it.scopedLive(
      "a process SIGKILLed right after its writes were acknowledged: the next process finds the subscription, the cache value, the list, the queue and the still-held lock",
      () =>
        Effect.gen(function* () {
          const { at, line } = yield* killedAfter(backend, "write", isWritten)
          const seen = yield* readBack(backend, at, async (state) => ({
            subscribed: await state.isSubscribed("slack:C1:1.1"),
            cached: await state.get("thread-state:slack:C1:1.1"),
            history: await state.getList("history"),
            depth: await state.queueDepth("slack:C1:1.1"),
            first: ((await state.dequeue("slack:C1:1.1"))?.message as { id?: string } | undefined)?.id,
            lockFree: (await state.acquireLock("slack:C1:1.1", 1000)) !== null,
            releasedByToken: await state.extendLock({ threadId: "slack:C1:1.1", token: line.token, expiresAt: 0 }, 600_000)
          }))
          expect(line.token).not.toBe("")
          expect(seen).toEqual({ subscribed: true, cached: { topic: "durable" }, history: [1, 2, 3], depth: 2, first: "m1", lockFree: false, releasedByToken: true })
        }),
      180_000
    )

    it.scopedLive(
      "a process SIGKILLed in the middle of its appends: every acknowledged append is there, in order, at most the one in flight besides, and the bounded list holds its newest 5",
      () =>
        Effect.gen(function* () {
          const { at, lines } = yield* killedAfter(backend, "append", isAcked(30))
          const acked = Math.max(...lines.map((line) => (line.type === "acked" ? line.i : -1)))
          const { log, recent } = yield* readBack(backend, at, async (state) => ({ log: await state.getList<number>("log"), recent: await state.getList<number>("recent") }))
          // What landed is a prefix 0 … k with k the last acknowledged append or the one after it (killed before it said so).
          expect(log).toEqual(range(log.length))
          expect(log.length === acked + 1 || log.length === acked + 2).toBe(true)
          const last = recent.at(-1)!
          expect(last === acked || last === acked + 1).toBe(true)
          expect(recent).toEqual(range(5).map((k) => last - 4 + k))
        }),
      180_000
    )
  })

acrossProcesses("sqlite")
if (pgUrl) acrossProcesses("pg")
else
  describe("Chat SDK state across processes: pg", () => {
    it(`needs PostgreSQL: set ${PG_URL_VARIABLE} to run it`, () => {
      console.info(`[channel-state chat-sdk processes] skipped: ${PG_URL_VARIABLE} is not set`)
      expect(pgUrl).toBeUndefined()
    })
  })
