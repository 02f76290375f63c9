/**
 * PostgreSQL drops the connection AFTER a write committed but BEFORE its reply reached the
 * client (a proxy cuts the socket on the server's ReadyForQuery-idle that follows the statement
 * carrying a marker). A write that may have reached the database is never run again — a claim
 * run twice would answer `false` to its own winner, an append or enqueue would land twice, a
 * dequeue would take a second entry — so each member here lands at most once, and one whose
 * reply was lost rejects `Unavailable` (its outcome unknown) instead of answering wrongly.
 */
import * as net from "node:net"
import { expect, it } from "@effect/vitest"
import type { QueueEntry, StateAdapter } from "chat"
import { Effect, type Scope } from "effect"
import { createChatState } from "../src/chat-sdk/index.js"
import { freshPgDatabase, pgUrl } from "./support/backends.js"
import { describePg } from "./support/describePg.js"

/** ReadyForQuery, transaction status idle: the statement (or its transaction) is committed. */
const READY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])

interface CuttingProxy {
  readonly url: string
  /** The next connection whose client bytes contain `marker` is cut right after the server says it is idle again (committed), without forwarding that reply. */
  readonly armOnce: (marker: string) => void
  readonly cuts: () => number
}

const cuttingProxy = (url: string): Effect.Effect<CuttingProxy, never, Scope.Scope> =>
  Effect.gen(function* () {
    const target = new URL(url)
    const sockets = new Set<net.Socket>()
    let armed: string | undefined
    let cuts = 0
    const server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname)
      sockets.add(client)
      sockets.add(upstream)
      let triggered = false
      client.on("data", (chunk: Buffer) => {
        if (armed !== undefined && chunk.includes(armed)) {
          armed = undefined
          triggered = true
        }
        upstream.write(chunk)
      })
      upstream.on("data", (chunk: Buffer) => {
        if (triggered && chunk.includes(READY_IDLE)) {
          triggered = false
          cuts++
          client.destroy()
          upstream.destroy()
          return
        }
        client.write(chunk)
      })
      client.on("error", () => upstream.destroy())
      upstream.on("error", () => client.destroy())
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => client.destroy())
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const s of sockets) s.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    const proxied = new URL(url)
    proxied.host = `127.0.0.1:${port}`
    return { url: proxied.toString(), armOnce: (marker) => {
        armed = marker
      }, cuts: () => cuts }
  })

/** A connected adapter through a cutting proxy on a fresh database, and one connected directly (the observer). */
const setup = Effect.gen(function* () {
  const { url } = yield* freshPgDatabase(pgUrl!)
  const proxy = yield* cuttingProxy(url)
  const state = createChatState({ pgUrl: proxy.url })
  const direct = createChatState({ pgUrl: url })
  yield* Effect.acquireRelease(
    Effect.promise(() => Promise.all([state.connect(), direct.connect()])),
    () => Effect.promise(() => Promise.all([state.disconnect(), direct.disconnect()]))
  )
  return { proxy, state, direct }
})

const settle = <A>(p: Promise<A>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: String(error) })
  )
const entry = (id: string): QueueEntry => ({ message: { id } as never, enqueuedAt: Date.now(), expiresAt: Date.now() + 600_000 })
const idOf = (e: QueueEntry | null) => (e?.message as { id?: string } | undefined)?.id ?? null

const run = (body: (s: { proxy: CuttingProxy; state: StateAdapter; direct: StateAdapter }) => Promise<void>) =>
  Effect.scoped(Effect.flatMap(setup, (s) => Effect.promise(() => body(s))))

describePg("PostgreSQL: a connection dropped after the commit, before the reply", () => {
  it.live("setIfNotExists: the one caller whose insert committed is not told false (someone must win the key)", () =>
    run(async ({ proxy, state, direct }) => {
      proxy.armOnce("MARK-claim-7f3a")
      const answer = await settle(state.setIfNotExists("dedupe:slack:m1", "MARK-claim-7f3a", 600_000))
      expect(proxy.cuts()).toBe(1)
      // The cut lands after the commit or (the proxy reads a stream) just before the statement ran.
      const stored = await direct.get("dedupe:slack:m1")
      // Never false: nobody else claimed the key, so false would mean nobody ever wins it. True
      // only when the row holds this caller's value; otherwise a rejection (outcome unknown).
      expect(answer).not.toEqual({ ok: true, value: false })
      if (answer.ok) expect(stored).toBe("MARK-claim-7f3a")
      else expect([null, "MARK-claim-7f3a"]).toContain(stored)
    })
  )

  it.live("acquireLock: the caller whose claim committed gets the lock (or an error), never null with the lock held by no one", () =>
    run(async ({ proxy, state, direct }) => {
      // The lock row's value is { token } with a random token: arm on the INSERT's statement text instead,
      // the first write on this connection after arming.
      proxy.armOnce("cs_")
      const answer = await settle(state.acquireLock("slack:C1:1.1", 600_000))
      expect(proxy.cuts()).toBe(1)
      const lockedForOthers = (await direct.acquireLock("slack:C1:1.1", 1000)) === null
      // Never null (nobody else holds it); a lock only when its row holds it; else a rejection.
      expect(answer).not.toEqual({ ok: true, value: null })
      if (answer.ok) expect(lockedForOthers).toBe(true)
    })
  )

  it.live("appendToList: an append lands once, however the connection dropped", () =>
    run(async ({ proxy, state, direct }) => {
      await state.appendToList("history", "first")
      proxy.armOnce("MARK-append-91c2")
      const answer = await settle(state.appendToList("history", "MARK-append-91c2"))
      expect(proxy.cuts()).toBe(1)
      const list = await direct.getList<string>("history")
      if (answer.ok) expect(list).toEqual(["first", "MARK-append-91c2"])
      else expect(list.filter((item) => item === "MARK-append-91c2").length).toBeLessThanOrEqual(1)
    })
  )

  it.live("enqueue: an entry is queued once, however the connection dropped", () =>
    run(async ({ proxy, state, direct }) => {
      await state.enqueue("slack:C1:1.1", entry("m1"), 10)
      proxy.armOnce("MARK-enqueue-55d0")
      const answer = await settle(state.enqueue("slack:C1:1.1", entry("MARK-enqueue-55d0"), 10))
      expect(proxy.cuts()).toBe(1)
      expect(answer).not.toEqual({ ok: true, value: 3 })
      expect(await direct.queueDepth("slack:C1:1.1")).toBe(2)
    })
  )

  it.live("dequeue: never hands out an entry it did not remove, nor one twice; a dequeue whose reply was lost rejects Unavailable (its entry may be gone: at most once)", () =>
    run(async ({ proxy, state, direct }) => {
      await state.enqueue("slack:C1:1.1", entry("m1"), 10)
      await state.enqueue("slack:C1:1.1", entry("MARK-second-0b7e"), 10)
      await state.enqueue("slack:C1:1.1", entry("m3"), 10)
      // The dequeue writes back [second, m3]: the marker is in that write.
      proxy.armOnce("MARK-second-0b7e")
      const answer = await settle(state.dequeue("slack:C1:1.1"))
      expect(proxy.cuts()).toBe(1)
      const left: Array<string | null> = []
      for (let next = await direct.dequeue("slack:C1:1.1"); next !== null; next = await direct.dequeue("slack:C1:1.1")) left.push(idOf(next))
      const handedOut = answer.ok ? [idOf(answer.value)] : []
      // The write that took m1 committed and its reply was lost: the caller cannot be handed m1, and
      // the dequeue is not run again (it would take a second entry). It rejects, saying the outcome is unknown.
      expect(answer.ok ? "resolved" : answer.error).toContain("Unavailable")
      expect([...handedOut, ...left]).toEqual(["MARK-second-0b7e", "m3"])
    })
  )
})
