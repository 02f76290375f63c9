/**
 * A real Chat SDK bot for the adapter's end-to-end tests: a `Chat` from the `chat` package with
 * a test platform adapter — inbound events are JSON posted to its webhook (`{ id, text }`,
 * all in one thread), handed to the Chat SDK exactly as a platform adapter hands them
 * (`chat.processMessage`); nothing is posted anywhere. Its handlers record what they were
 * given and trace when they ran into a list of the state itself (appends are atomic, so the
 * trace is the order handlers really ran in, across processes).
 */
import { type Adapter, Chat, type ChatInstance, Message, type MessageContext, type StateAdapter } from "chat"

export const THREAD_ID = "test:C1:T1"

/** One inbound event of the test platform. */
export interface InboundEvent {
  readonly id: string
  readonly text: string
}

/** What one handler call was given: the handler, its message, and the queued messages it was told it skipped. */
export interface Handled {
  readonly handler: "mention" | "subscribed"
  readonly id: string
  readonly skipped: ReadonlyArray<string>
}

const unsupported = (what: string) => () => Promise.reject(new Error(`the test platform does not ${what}`))

/** The test platform adapter. */
const testPlatform = (): Adapter => {
  let chat: ChatInstance | undefined
  const parseMessage = (raw: unknown) => {
    const event = raw as InboundEvent
    return new Message({
      id: event.id,
      threadId: THREAD_ID,
      text: event.text,
      formatted: { type: "root", children: [{ type: "paragraph", children: [{ type: "text", value: event.text }] }] },
      raw: event,
      author: { userId: "U1", userName: "alice", fullName: "Alice", isBot: false, isMe: false },
      metadata: { dateSent: new Date(0), edited: false },
      attachments: []
    })
  }
  const adapter: Adapter = {
    name: "test",
    userName: "bot",
    initialize: async (instance) => {
      chat = instance
    },
    handleWebhook: async (request, options) => {
      const event = (await request.json()) as InboundEvent
      chat!.processMessage(adapter, THREAD_ID, parseMessage(event), options)
      return new Response("ok")
    },
    parseMessage,
    encodeThreadId: (data) => String(data),
    decodeThreadId: (threadId) => threadId,
    channelIdFromThreadId: (threadId) => threadId.split(":").slice(0, 2).join(":"),
    renderFormatted: () => "",
    fetchThread: async (threadId) => ({ id: threadId, channelId: "test:C1", metadata: {} }),
    fetchMessages: async () => ({ messages: [] }),
    postMessage: unsupported("post"),
    editMessage: unsupported("edit"),
    deleteMessage: unsupported("delete"),
    addReaction: unsupported("react"),
    removeReaction: unsupported("react"),
    startTyping: async () => {}
  }
  return adapter
}

/** A bot on `state` whose handlers append to `handled` (each holds the thread for `holdMs`); `deliver` posts events to its webhook and resolves once each is handled. */
export const makeBot = (state: StateAdapter, handled: Array<Handled>, holdMs: number) => {
  const bot = new Chat({ userName: "bot", adapters: { test: testPlatform() }, state, logger: "silent", concurrency: { strategy: "queue", maxQueueSize: 100 } })
  const record = (handler: Handled["handler"]) => async (thread: { subscribe: () => Promise<void> }, message: Message, context?: MessageContext) => {
    await state.appendToList("trace", `enter:${message.id}`)
    handled.push({ handler, id: message.id, skipped: (context?.skipped ?? []).map((m) => m.id) })
    if (handler === "mention") await thread.subscribe()
    await new Promise((resolve) => setTimeout(resolve, holdMs))
    await state.appendToList("trace", `exit:${message.id}`)
  }
  bot.onNewMention(record("mention"))
  bot.onSubscribedMessage(record("subscribed"))
  const deliver = async (events: ReadonlyArray<InboundEvent>) => {
    const tasks: Array<Promise<unknown>> = []
    await Promise.all(
      events.map((event) =>
        bot.webhooks.test!(new Request("http://bot.test/webhook", { method: "POST", body: JSON.stringify(event) }), {
          waitUntil: (task) => {
            tasks.push(task)
          }
        })
      )
    )
    await Promise.all(tasks)
  }
  return { bot, deliver }
}
