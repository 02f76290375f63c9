/**
 * Attack 1 (truthful facade): with the flag on every cache handed out survives a restart;
 * health() says ok only when the store answers, unreachable otherwise; it never rejects.
 */
import * as net from "node:net"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createPluginState } from "../src/PluginState.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"

const on = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

/** A port nothing listens on. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

describe("truthful facade", () => {
  it.scopedLive("plugin id 'matrix': every one of the six caches (discord modals too) survives a restart", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "state.sqlite")
      const open = () => createPluginState({ pluginId: "matrix", config: on("matrix"), store: { sqlitePath: file } })
      const first = yield* Effect.promise(open)
      first.slack.record("T", "C", "1.0")
      first.msteams.record("conv", "m1")
      first.matrix.register({ roomId: "!r", eventId: "$e", approvalId: "a1", allowedDecisions: ["allow-once", "deny"] })
      first.discord.register({
        entries: [{ id: "btn-1", kind: "button", label: "Go", reusable: true }],
        modals: [{ id: "modal-1", title: "T", fields: [{ id: "f", label: "L" }], reusable: true }]
      })
      const feishu = yield* Effect.promise(() => first.feishu.beginProcessing({ namespace: "app", messageId: "m-1" }))
      expect(feishu.status).toBe("claimed")
      expect(yield* Effect.promise(() => first.feishu.finalize({ namespace: "app", messageId: "m-1" }))).toBe("done")
      yield* Effect.promise(() => first.dispose())

      const second = yield* Effect.promise(open)
      expect({
        slack: yield* Effect.promise(() => second.slack.check("T", "C", "1.0")),
        msteams: yield* Effect.promise(() => second.msteams.check("conv", "m1")),
        matrix: (yield* Effect.promise(() => second.matrix.resolve({ roomId: "!r", eventId: "$e", reactionKey: "\u2705" })))?.approvalId,
        component: (yield* Effect.promise(() => second.discord.resolveComponent({ id: "btn-1" })))?.label,
        modal: (yield* Effect.promise(() => second.discord.resolveModal({ id: "modal-1" })))?.title,
        feishu: yield* Effect.promise(() => second.feishu.hasProcessed({ namespace: "app", messageId: "m-1" })),
        feishuAgain: (yield* Effect.promise(() => second.feishu.beginProcessing({ namespace: "app", messageId: "m-1" }))).status
      }).toEqual({ slack: true, msteams: true, matrix: "a1", component: "Go", modal: "T", feishu: true, feishuAgain: "duplicate" })
      yield* Effect.promise(() => second.dispose())
    })
  )

  it.scopedLive("PostgreSQL on a port nothing listens on: the plugin starts, health() resolves unreachable, never rejects", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const state = yield* Effect.promise(() => createPluginState({ pluginId: "slack", config: on("slack"), store: { pgUrl: `postgres://postgres@127.0.0.1:${port}/nothing` } }))
      const health = yield* Effect.promise(() => state.health())
      expect(health.status).toBe("unreachable")
      yield* Effect.promise(() => state.dispose())
    })
  )

  const baseUrl = pgUrl
  if (baseUrl !== undefined) {
    it.scopedLive("PostgreSQL with lockWait '30 days' (a valid duration): health is ok and a record survives a restart — or it is a config error", () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(baseUrl)
        const open = () => createPluginState({ pluginId: "slack", config: on("slack"), store: { pgUrl: url, lockWait: "30 days" } })
        const first = yield* Effect.promise(() =>
          open().then(
            (s) => s,
            (e: unknown) => String(e)
          )
        )
        if (typeof first === "string") {
          expect(first).toMatch(/store\.lockWait/)
          return
        }
        const health = yield* Effect.promise(() => first.health())
        first.slack.record("T", "C", "1.0")
        yield* Effect.promise(() => first.dispose())
        const second = yield* Effect.promise(open)
        const survived = yield* Effect.promise(() => second.slack.check("T", "C", "1.0"))
        yield* Effect.promise(() => second.dispose())
        expect({ health, survived }).toEqual({ health: { status: "ok", backend: "pg" }, survived: true })
      })
    )
  }
})
