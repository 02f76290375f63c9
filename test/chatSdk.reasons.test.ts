/**
 * The reason a rejection carries, for bad options and unusable databases: `OpenFailed` when
 * connect() cannot open the database (a database or role that does not exist),
 * `InvalidArgument` for an argument or option the adapter cannot use, `Unavailable` for a
 * server that never answers — each named for the member that was called.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { ChatStateError, createChatState } from "../src/chat-sdk/index.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import { pgUrl } from "./support/backends.js"

const reason = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => (e instanceof ChatStateError ? e.reason : `untyped: ${String(e)}`)
  )

describe("rejection reasons", () => {
  it("a PostgreSQL database that does not exist, or a role that does not exist: connect() rejects OpenFailed (not StoreFailed)", async () => {
    if (!pgUrl) return expect(pgUrl).toBeUndefined()
    const base = new URL(pgUrl!)
    const noDb = new URL(base)
    noDb.pathname = "/no_such_database_attack"
    const noRole = new URL(base)
    noRole.username = "no_such_role_attack"
    expect(await reason(createChatState({ pgUrl: noDb.toString() }).connect())).toBe("OpenFailed")
    expect(await reason(createChatState({ pgUrl: noRole.toString() }).connect())).toBe("OpenFailed")
  })

  it("enqueue of an entry whose expiresAt is past the largest date: InvalidArgument (it is the argument), not InvalidValue (the entry is JSON)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "attack-reasons-"))
    const state = createChatState({ sqlitePath: path.join(dir, "chat.sqlite") })
    await state.connect()
    try {
      expect(await reason(state.enqueue("t", { message: {} as never, enqueuedAt: 0, expiresAt: 1e16 }, 5))).toBe("InvalidArgument")
      expect(await state.queueDepth("t")).toBe(0)
    } finally {
      await state.disconnect()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a store option that is not a Layer: connect() rejects InvalidArgument (not StoreFailed)", async () => {
    expect(await reason(createChatState({ store: {} as never }).connect())).toBe("InvalidArgument")
    expect(await reason(createChatState({ store: null as never }).connect())).toBe("InvalidArgument")
  })

  it("a now option that is not a clock: connect() or the first call rejects InvalidArgument", async () => {
    const state = createChatState({ store: MemoryStore.layer(), now: "soon" as never })
    const connected = await reason(state.connect())
    const got = connected === "ok" ? await reason(state.get("k")) : connected
    expect(got).toBe("InvalidArgument")
  })

  it("a PostgreSQL server that accepts the TCP connection and never answers: connect() rejects Unavailable after the connect timeout (not StoreFailed)", async () => {
    const server = net.createServer((socket) => {
      socket.on("data", () => {})
      socket.on("error", () => {})
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))
    try {
      const port = (server.address() as net.AddressInfo).port
      const state = createChatState({ pgUrl: `postgres://postgres@127.0.0.1:${port}/test` })
      const connecting = state.connect()
      const during = state.get("k")
      expect(await reason(connecting)).toBe("Unavailable")
      // And the member that waited on the opening is named as itself.
      const error = await during.then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error instanceof ChatStateError ? `${error.reason} ${error.operation}` : String(error)).toBe("Unavailable get")
    } finally {
      server.close()
    }
  }, 30_000)
})
