/**
 * A bot process for the Chat SDK end-to-end tests: a real `Chat` (test/support/chatBot.ts) on
 * our adapter over a SQLite file or PostgreSQL database. Says ready, waits for the go file
 * (none: `-`), delivers its events all at once, prints what its handlers were given, shuts the
 * bot down and exits.
 *
 *   node --import tsx test/support/chatBotWorker.ts <sqlite|pg> <file or url> <go file|-> <worker> <events JSON> <hold ms>
 */
import { Effect } from "effect"
import { createChatState } from "../../src/chat-sdk/index.js"
import { type Handled, type InboundEvent, makeBot } from "./chatBot.js"
import { say, waitForGo } from "./workerIo.js"

const [backend, location, goFile, worker, events, holdMs] = process.argv.slice(2)

export type ChatBotLine =
  | { readonly type: "ready"; readonly worker: string }
  | { readonly type: "result"; readonly worker: string; readonly handled: ReadonlyArray<Handled> }
  | { readonly type: "fatal"; readonly worker: string; readonly message: string }

const main = async () => {
  const state = backend === "pg" ? createChatState({ pgUrl: location!, lockWait: "60 seconds" }) : createChatState({ sqlitePath: location!, lockWait: "60 seconds" })
  const handled: Array<Handled> = []
  const { bot, deliver } = makeBot(state, handled, Number(holdMs))
  await bot.initialize()
  say({ type: "ready", worker })
  if (goFile !== "-") await Effect.runPromise(waitForGo(goFile!))
  await deliver(JSON.parse(events!) as ReadonlyArray<InboundEvent>)
  say({ type: "result", worker, handled })
  await bot.shutdown()
  process.exit(0)
}

main().catch((error) => {
  say({ type: "fatal", worker, message: error instanceof Error ? (error.stack ?? error.message) : String(error) })
  process.exit(1)
})
