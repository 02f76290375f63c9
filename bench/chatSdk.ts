/**
 * The Chat SDK state adapter (`channel-state/chat-sdk`) on SQLite and PostgreSQL against the
 * official adapters a Chat SDK user would pick instead — `@chat-adapter/state-redis` (Redis at
 * 127.0.0.1:6379, which keeps nothing on disk here) and `@chat-adapter/state-pg` — each
 * configured as its README shows, all measured in the same run with interleaved rounds:
 * - `setIfNotExists` (Chat SDK's inbound dedupe) of a fresh key with a TTL;
 * - `acquireLock` + `releaseLock` of a free thread lock (one handled message's locking);
 * - `appendToList` with `maxLength` 100 and a TTL onto a list already at 100 items of ~300
 *   bytes (Chat SDK's message history: every append trims one).
 * Rows are ratios ours / peer (lower is better), reported without targets. PostgreSQL rows
 * need CHANNEL_STATE_TEST_PG_URL; Redis rows a Redis on 127.0.0.1:6379.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createPostgresState } from "@chat-adapter/state-pg"
import { createRedisState } from "@chat-adapter/state-redis"
import type { StateAdapter } from "chat"
import { ConsoleLogger } from "chat"
import { createChatState } from "../src/chat-sdk/index.js"
import { type BenchPgDatabase, fail, freshPgDatabase, pgBaseUrl, type Row, row, type TimingOptions, timeInterleaved, type Work } from "./harness.js"

const REDIS_URL = "redis://127.0.0.1:6379"
const OPTIONS: TimingOptions = { n: 150, rounds: 5, warmup: 1 }
const LIST_LENGTH = 100
const TTL_MS = 10 * 60 * 1000
const item = (i: number) => ({ id: `m${i}`, text: `message ${i} `.padEnd(280, "·"), author: "U123" })

/** One operation of the benchmark, on any adapter: `setup` untimed, `work` the timed round. */
interface Operation {
  readonly name: string
  readonly setup: (state: StateAdapter, tag: string) => Promise<void>
  readonly work: (state: StateAdapter, tag: string) => Work
}

const operations: ReadonlyArray<Operation> = [
  {
    name: "setIfNotExists",
    setup: async () => {},
    work: (state, tag) => async (round, n) => {
      for (let i = 0; i < n; i++) if (!(await state.setIfNotExists(`dedupe:${tag}:${round}:${i}`, true, TTL_MS))) fail(`${tag}: setIfNotExists of a fresh key answered false`)
    }
  },
  {
    name: "acquireLock+releaseLock",
    setup: async () => {},
    work: (state, tag) => async (round, n) => {
      for (let i = 0; i < n; i++) {
        const lock = await state.acquireLock(`thread:${tag}:${round}:${i}`, 30_000)
        if (lock === null) fail(`${tag}: a free lock was not acquired`)
        await state.releaseLock(lock!)
      }
    }
  },
  {
    name: "appendToList",
    setup: async (state, tag) => {
      for (let i = 0; i < LIST_LENGTH; i++) await state.appendToList(`history:${tag}`, item(i), { maxLength: LIST_LENGTH, ttlMs: TTL_MS })
    },
    work: (state, tag) => async (round, n) => {
      for (let i = 0; i < n; i++) await state.appendToList(`history:${tag}`, item(round * n + i), { maxLength: LIST_LENGTH, ttlMs: TTL_MS })
      if ((await state.getList(`history:${tag}`)).length !== LIST_LENGTH) fail(`${tag}: the history list is not at maxLength`)
    }
  }
]

const silent = new ConsoleLogger("silent")

/** Connects to Redis, or says why the Redis rows are left out. */
const redisAdapter = async (tag: string): Promise<StateAdapter | undefined> => {
  const state = createRedisState({ url: REDIS_URL, keyPrefix: `cs-bench-${tag}`, logger: silent })
  try {
    await Promise.race([state.connect(), new Promise((_, reject) => setTimeout(() => reject(new Error("no answer in 5 s")), 5000))])
    return state
  } catch (error) {
    console.error(`bench: Redis at ${REDIS_URL} not reachable (${String(error)}), Redis rows skipped`)
    await state.disconnect().catch(() => undefined)
    return undefined
  }
}

/** Runs the Chat SDK adapter benchmarks and returns their rows. */
export const chatSdkBench = async (): Promise<Array<Row>> => {
  console.error("bench: Chat SDK state adapters (ours on SQLite/PostgreSQL, @chat-adapter/state-redis, @chat-adapter/state-pg) …")
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-bench-chat-"))
  const tag = `${process.pid}`
  const pgUrl = pgBaseUrl()
  const databases: Array<BenchPgDatabase> = []
  const adapters: Record<string, StateAdapter> = { "ours.sqlite": createChatState({ sqlitePath: path.join(dir, "chat.sqlite") }) }
  try {
    if (pgUrl === undefined) console.error("bench: CHANNEL_STATE_TEST_PG_URL not set, PostgreSQL rows skipped")
    else {
      const ours = await freshPgDatabase(pgUrl, "chat_ours")
      const peer = await freshPgDatabase(pgUrl, "chat_peer")
      databases.push(ours, peer)
      adapters["ours.pg"] = createChatState({ pgUrl: ours.url })
      adapters["state-pg"] = createPostgresState({ url: peer.url, keyPrefix: "bench", logger: silent })
    }
    const redis = await redisAdapter(tag)
    if (redis !== undefined) adapters["state-redis"] = redis
    for (const state of Object.values(adapters)) await state.connect()

    const rows: Array<Row> = []
    for (const operation of operations) {
      for (const [name, state] of Object.entries(adapters)) await operation.setup(state, `${tag}-${name}`)
      const contenders = Object.fromEntries(Object.entries(adapters).map(([name, state]) => [name, operation.work(state, `${tag}-${name}`)]))
      const times = await timeInterleaved(contenders, OPTIONS, { rotate: true })
      for (const ours of ["ours.sqlite", "ours.pg"]) {
        for (const peer of ["state-redis", "state-pg"]) {
          if (times[ours] === undefined || times[peer] === undefined) continue
          rows.push(row(`chat.${ours.slice(5)}.${operation.name}_vs_${peer}`, "ns/op", times[ours]!, times[peer]!, null, `${ours} vs @chat-adapter/${peer}, same run`))
        }
      }
    }
    return rows
  } finally {
    for (const state of Object.values(adapters)) await state.disconnect().catch(() => undefined)
    for (const database of databases) await database.drop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
