/**
 * "TooLarge: nested deeper than 64 levels counting the row; nothing was written": the boundary
 * on every member that stores a value (a list item and a queue entry sit inside the row's
 * array), and a lock that must not lapse before its reported expiresAt on the production
 * layers (real clocks; PostgreSQL's is the database's).
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import type { StateAdapter } from "chat"
import { Effect } from "effect"
import { ChatStateError, createChatState } from "../src/chat-sdk/index.js"
import { freshPgDatabase, pgUrl, tempDir } from "./support/backends.js"
import { ours, type SubjectKind, withSubject } from "./support/chatState.js"

const nested = (levels: number): unknown => {
  let v: unknown = 1
  for (let i = 0; i < levels; i++) v = [v]
  return v
}
const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => (e instanceof ChatStateError ? e.reason : `untyped ${String(e)}`))

const depth = (kind: SubjectKind) =>
  describe(`chat adapter, nesting: ${kind.name}`, () => {
    it.scopedLive("a value exactly at the nesting limit is stored by set; one level deeper is TooLarge and leaves the old value", () =>
      withSubject(kind, async ({ state }) => {
        await state.set("k", "before")
        const results: Record<number, string> = {}
        for (const levels of [62, 63, 64, 65, 66]) results[levels] = await outcome(state.set(`d${levels}`, nested(levels)))
        // Find the boundary set uses, then hold every other member to it.
        const limit = Math.max(...Object.entries(results).filter(([, r]) => r === "ok").map(([l]) => Number(l)))
        expect(limit).toBeGreaterThanOrEqual(63)
        expect(results[limit + 1]).toBe("TooLarge")
        expect(await outcome(state.set("k", nested(limit + 1)))).toBe("TooLarge")
        expect(await state.get("k")).toBe("before")
        expect(await state.get(`d${limit}`)).toEqual(nested(limit))
      })
    )

    it.scopedLive("a list item may nest 63 levels and a queued message 62 (the row holding them is the 64th and 63rd level, as documented); one deeper is TooLarge and the list/queue is unchanged", () =>
      withSubject(kind, async ({ state, clock }) => {
        await state.appendToList("l", "first")
        const entry = (message: unknown) => ({ message: message as never, enqueuedAt: clock.now(), expiresAt: clock.now() + 90_000 })
        await state.enqueue("q", entry({ id: "first" }), 10)
        expect(await outcome(state.appendToList("l", nested(64)))).toBe("TooLarge")
        expect(await outcome(state.enqueue("q", entry(nested(63)), 10))).toBe("TooLarge")
        expect(await state.getList("l")).toEqual(["first"])
        expect(await state.queueDepth("q")).toBe(1)
        expect(await outcome(state.appendToList("l", nested(63)))).toBe("ok")
        expect(await outcome(state.enqueue("q", entry(nested(62)), 10))).toBe("ok")
        expect(await state.getList("l")).toEqual(["first", nested(63)])
        expect(await state.queueDepth("q")).toBe(2)
      })
    )
  })

for (const kind of ours) depth(kind)

const lapse = (name: string, open: Effect.Effect<() => StateAdapter, never, import("effect").Scope.Scope>) =>
  it.scopedLive(`${name}: while another adapter polls acquireLock, it never gets the lock before the holder's expiresAt`, () =>
    Effect.flatMap(open, (make) =>
      Effect.promise(async () => {
        const holder = make()
        const other = make()
        await holder.connect()
        await other.connect()
        try {
          for (const round of [0, 1, 2]) {
            const held = (await holder.acquireLock(`t${round}`, 150))!
            for (;;) {
              const got = await other.acquireLock(`t${round}`, 150)
              const after = Date.now()
              if (got !== null) {
                expect(after, `acquired ${held.expiresAt - after} ms before the holder's expiresAt`).toBeGreaterThanOrEqual(held.expiresAt)
                break
              }
            }
          }
        } finally {
          await holder.disconnect()
          await other.disconnect()
        }
      })
    )
  )

describe("chat adapter, lock lapse on the production layers", () => {
  lapse("sqlitePath", Effect.map(tempDir, (dir) => () => createChatState({ sqlitePath: path.join(dir, "l.sqlite") })))
  if (pgUrl) lapse("pgUrl", Effect.map(freshPgDatabase(pgUrl), ({ url }) => () => createChatState({ pgUrl: url })))
})
