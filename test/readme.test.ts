/**
 * The README's wiring examples, run as written against the public entry point (src/index.ts)
 * on a real SQLite file, so the documentation cannot drift from the API.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema, TestClock } from "effect"
import {
  createPluginState,
  KeyedStore,
  MemoryStore,
  PluginRuntime,
  PluginStateConfigError,
  SlackThreadParticipation,
  SqliteStore
} from "../src/index.js"
import { createOpenClawState } from "../src/openclaw/index.js"

const tempDirs: Array<string> = []
const tempFile = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-readme-"))
  tempDirs.push(dir)
  return path.join(dir, "state.sqlite")
}
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
})
const gatewayConfig = (pluginId: string, flag: unknown) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: flag } } } } })

it("Effect plugin entrypoint: record, has, check across a restart", async () => {
  const sqlitePath = tempFile()
  const start = () => PluginRuntime.makeRuntime({ pluginId: "slack", config: gatewayConfig("slack", true), store: { sqlitePath } })
  const runtime = start()
  const slack = await runtime.runPromise(SlackThreadParticipation.SlackThreadParticipation)
  slack.record("T1", "C1", "1700.1", { agentId: "main" })
  expect(slack.has("T1", "C1", "1700.1")).toBe(true)
  await runtime.dispose()

  const restarted = start()
  const again = await restarted.runPromise(SlackThreadParticipation.SlackThreadParticipation)
  expect(again.has("T1", "C1", "1700.1")).toBe(false)
  expect(await restarted.runPromise(again.check("T1", "C1", "1700.1"))).toBe(true)
  expect(again.has("T1", "C1", "1700.1")).toBe(true)
  await restarted.dispose()
})

it("Promise host: Discord one-shot resolve and a BlueBubbles claim", async () => {
  const sqlitePath = tempFile()
  const state = await createPluginState({ pluginId: "discord", config: gatewayConfig("discord", true), store: { sqlitePath } })
  expect(state.persistent).toBe(true)
  state.discord.register({ entries: [{ id: "approve-42", kind: "button", label: "Approve" }], messageId: "m42" })
  expect((await state.discord.resolveComponent({ id: "approve-42" }))?.messageId).toBe("m42")
  expect(await state.discord.resolveComponent({ id: "approve-42" })).toBeUndefined()
  const claim = await state.bluebubbles.claim({ accountId: "acc", guid: "g-1" })
  expect(claim.status).toBe("claimed")
  if (claim.status === "claimed") await claim.finalize()
  expect((await state.bluebubbles.claim({ accountId: "acc", guid: "g-1" })).status).toBe("duplicate")
  await state.dispose()
})

it("a bad flag rejects with a PluginStateConfigError naming path and value, before anything is opened", async () => {
  const sqlitePath = tempFile()
  const attempt = createPluginState({ pluginId: "slack", config: gatewayConfig("slack", "yes"), store: { sqlitePath } })
  await expect(attempt).rejects.toBeInstanceOf(PluginStateConfigError)
  await expect(attempt).rejects.toThrow(/plugins\.entries\.slack\.config\.experimentalPersistentState.*"yes"/)
  expect(fs.existsSync(sqlitePath)).toBe(false)
})

it.effect("swapping layers in tests: memory layer with TestClock, persistent layer over MemoryStore", () =>
  Effect.gen(function* () {
    const slack = yield* SlackThreadParticipation.SlackThreadParticipation
    slack.record("T", "C", "1.0")
    yield* TestClock.adjust("24 hours")
    expect(slack.has("T", "C", "1.0")).toBe(false)
  }).pipe(
    Effect.provide(SlackThreadParticipation.layerPersistent({ pluginId: "slack" }).pipe(Layer.provide(MemoryStore.layer()))),
    Effect.scoped
  )
)

it.effect("the keyed store directly", () =>
  Effect.gen(function* () {
    const store = yield* KeyedStore
    const jobs = yield* store.open({ owner: "my-plugin", namespace: "jobs", schema: Schema.Struct({ n: Schema.Number }), maxEntries: 1000, ttl: "1 hour" })
    yield* jobs.register("a", { n: 1 })
    expect(yield* jobs.registerIfAbsent("b", { n: 2 })).toBe(true)
    expect(yield* jobs.registerIfAbsent("b", { n: 3 })).toBe(false)
    const once = yield* jobs.consume("a")
    expect(once._tag === "Some" && once.value.n).toBe(1)
  }).pipe(Effect.provide(SqliteStore.layer({ filename: tempFile() })), Effect.scoped)
)

it("the config error lines the README shows are the lines users get", async () => {
  const readme = fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), "..", "README.md"), "utf8")
  const block = readme.split("fails with it — and nothing is opened. For example:\n\n```\n")[1]?.split("\n```")[0]
  const on = gatewayConfig("slack", true)
  const lineOf = (options: Parameters<typeof createPluginState>[0]) =>
    createPluginState(options).then(
      async (state) => {
        await state.dispose()
        return "started"
      },
      (error: PluginStateConfigError) => error.message
    )
  const sqlitePath = tempFile()
  const actual = [
    await lineOf({ pluginId: "slack", config: gatewayConfig("slack", "yes"), store: { sqlitePath } }),
    await lineOf({ pluginId: "slack", config: { experimentalPersistentState: true }, store: { sqlitePath } }),
    await lineOf({ pluginId: "slack", config: on, store: { pgUrl: process.env.CHANNEL_STATE_UNSET_FOR_THIS_TEST } }),
    await lineOf({ pluginId: "slack", config: on, store: { sqlitePath, sweepInterval: "soon" as never } }),
    await lineOf({ pluginId: "slack", config: on, store: { sqlitePath }, mirror: { maxBatch: 0 } })
  ]
  expect(block?.split("\n")).toEqual(actual)
  expect(fs.existsSync(sqlitePath)).toBe(false)
})

it("the OpenClaw adapter example: register, observe, compareAndApply, across a restart", async () => {
  const sqlitePath = tempFile()
  const state = createOpenClawState({ pluginId: "discord", sqlitePath })
  const bindings = state.openKeyedStore<{ channel: string }>({ namespace: "bindings", maxEntries: 10_000, defaultTtlMs: 86_400_000 })
  await bindings.register("guild:1", { channel: "general" })
  const seen = await bindings.observe("guild:1")
  const result = await bindings.compareAndApply("guild:1", seen.comparison, { operation: "update", action: "set", value: { channel: "ops" } })
  expect(result.status).toBe("applied")
  expect((await bindings.compareAndApply("guild:1", seen.comparison, { operation: "update", action: "keep" })).status).toBe("conflict")
  await state.close()
  const again = createOpenClawState({ pluginId: "discord", sqlitePath })
  expect(await again.openKeyedStore<{ channel: string }>({ namespace: "bindings", maxEntries: 10_000, defaultTtlMs: 86_400_000 }).lookup("guild:1")).toEqual({ channel: "ops" })
  await again.close()
})

it("every public export (and every member of an exported module) is named in the README", async () => {
  const readme = fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), "..", "README.md"), "utf8")
  const api: Record<string, unknown> = { ...(await import("../src/index.js")), ...(await import("../src/openclaw/index.js")), ...(await import("../src/chat-sdk/index.js")) }
  const unnamed: Array<string> = []
  for (const [name, value] of Object.entries(api)) {
    if (!readme.includes(name)) unnamed.push(name)
    // Modules exported as namespaces (SqliteStore, PluginRuntime, the caches): their members too.
    if (/^[A-Z]/.test(name) && value !== null && typeof value === "object" && Object.getPrototypeOf(value) === null) {
      for (const member of Object.keys(value)) if (!readme.includes(member)) unnamed.push(`${name}.${member}`)
    }
  }
  expect(unnamed).toEqual([])
})
