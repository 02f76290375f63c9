/**
 * A real Chat SDK bot (`Chat` from the `chat` package, a test platform adapter, our state
 * adapter) end to end, in real OS processes:
 * - the same inbound event delivered to a bot, then again to the bot restarted (a new
 *   process on the same database), is handled once — where the memory adapter handles it
 *   twice — and the thread the first process subscribed to is still subscribed;
 * - three bot processes on one PostgreSQL database, each delivering messages to the same
 *   thread (and one event all three receive), share the thread lock: handlers never overlap
 *   (their trace, appended atomically, pairs every enter with its exit), the shared event is
 *   handled once, and every message is handled or handed to a handler as skipped exactly once.
 * How the processes interleave is up to the machine; every assertion holds for every order.
 */
import * as path from "node:path"
import { createMemoryState } from "@chat-adapter/state-memory"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createChatState } from "../src/chat-sdk/index.js"
import { freshPgDatabase, PG_URL_VARIABLE, pgUrl, tempDir } from "./support/backends.js"
import { type Handled, type InboundEvent, makeBot } from "./support/chatBot.js"
import type { ChatBotLine } from "./support/chatBotWorker.js"
import { resultLineOf, spawnLineProcess } from "./support/lineProcess.js"
import { resultsOf, spawnGroup } from "./support/workerGroup.js"

const WORKER = "test/support/chatBotWorker.ts"
type Result = Extract<ChatBotLine, { type: "result" }>
const isResult = (line: ChatBotLine): line is Result => line.type === "result"

/** One bot process on `at`, delivering `events`, run to its end: what its handlers were given. */
const botProcess = (backend: "sqlite" | "pg", at: string, events: ReadonlyArray<InboundEvent>) =>
  Effect.gen(function* () {
    const child = yield* spawnLineProcess<ChatBotLine>(WORKER, [backend, at, "-", "bot", JSON.stringify(events), "10"])
    const exit = yield* Effect.timeout(child.exit, "120 seconds").pipe(Effect.orDie)
    return resultLineOf("bot process", exit, isResult).handled
  })

const mention = (id: string): InboundEvent => ({ id, text: `@bot ${id}` })

const acrossRestart = (backend: "sqlite" | "pg") =>
  it.scopedLive(
    `${backend}: an event delivered, then delivered again to the restarted bot, is handled once; the thread stays subscribed`,
    () =>
      Effect.gen(function* () {
        const at = backend === "sqlite" ? path.join(yield* tempDir, "bot.sqlite") : (yield* freshPgDatabase(pgUrl!)).url
        const first = yield* botProcess(backend, at, [mention("E1")])
        const second = yield* botProcess(backend, at, [mention("E1"), { id: "E2", text: "and a follow-up" }])
        expect(first).toEqual([{ handler: "mention", id: "E1", skipped: [] }])
        // E1 again: deduplicated. E2 (no mention): handled because the thread is still subscribed.
        expect(second).toEqual([{ handler: "subscribed", id: "E2", skipped: [] }])
      }),
    240_000
  )

describe("a Chat SDK bot on our adapter", () => {
  acrossRestart("sqlite")
  if (pgUrl) acrossRestart("pg")

  it("for contrast, on the memory adapter the restarted bot handles the same event again", async () => {
    const handled: Array<Handled> = []
    for (const _ of [1, 2]) {
      const { bot, deliver } = makeBot(createMemoryState(), handled, 0)
      await deliver([mention("E1")])
      await bot.shutdown()
    }
    expect(handled.map((h) => h.id)).toEqual(["E1", "E1"])
  })

  if (!pgUrl) {
    it(`three bot processes sharing a thread lock need PostgreSQL: set ${PG_URL_VARIABLE} to run it`, () => {
      console.info(`[channel-state chat-sdk bot] three-process case skipped: ${PG_URL_VARIABLE} is not set`)
      expect(pgUrl).toBeUndefined()
    })
    return
  }
  const baseUrl = pgUrl

  it.scopedLive(
    "three bot processes on one PostgreSQL database share the thread lock: handlers never overlap, the event all three got is handled once, every message accounted for once",
    () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(baseUrl)
        const names = ["a", "b", "c"]
        const eventsOf = (name: string) => [mention(`${name}1`), mention("shared"), mention(`${name}2`)]
        const group = yield* spawnGroup<ChatBotLine>(WORKER, names, (goFile, name) => ["pg", url, goFile, name, JSON.stringify(eventsOf(name)), "150"])
        yield* group.start
        const handled = resultsOf(group, yield* group.exits(240_000), isResult).flatMap((r) => r.handled)
        // The Chat SDK drains a thread's queue before releasing its lock: a message queued just
        // after the last drain waits for the thread's next message. That next message, from here:
        const state = createChatState({ pgUrl: url })
        const { bot, deliver } = makeBot(state, handled, 0)
        yield* Effect.promise(() => deliver([mention("flush")]))
        const trace = yield* Effect.promise(() => state.getList<string>("trace"))
        yield* Effect.promise(() => bot.shutdown())

        const accounted = handled.flatMap((h) => [h.id, ...h.skipped]).sort()
        expect(accounted).toEqual(["a1", "a2", "b1", "b2", "c1", "c2", "flush", "shared"])
        // Never overlapping: the trace is enter:x, exit:x, enter:y, exit:y, … for every handler call.
        const pairs = Array.from({ length: handled.length }, (_, k) => [trace[2 * k], trace[2 * k + 1]] as const)
        expect(trace).toHaveLength(handled.length * 2)
        expect(pairs.filter(([enter, exit]) => !enter?.startsWith("enter:") || exit !== enter.replace("enter:", "exit:"))).toEqual([])
      }),
    300_000
  )
})
