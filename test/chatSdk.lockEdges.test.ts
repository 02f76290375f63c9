/**
 * Attacks on the lock guarantees: an expired lock nobody took again is not extended (nor
 * resurrected), the expiry boundary is the same for claim and compare-and-replace (never two
 * holders), and a crowd of acquirers racing a stale holder's extend over an expired lock.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Lock, StateAdapter } from "chat"
import { ours, type SubjectKind, withSubject } from "./support/chatState.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

const attacks = (kind: SubjectKind) =>
  describe(`chat adapter, locks: ${kind.name}`, () => {
    it.scopedLive("an expired lock that nobody re-acquired is not extended (false), and the stale extend does not make it held", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const stale = (await state.acquireLock("t1", 1000))!
        clock.advance(1001)
        expect(await state.extendLock(stale, 60_000)).toBe(false)
        // Had the extend resurrected it, this would be null.
        expect(await other.acquireLock("t1", 1000)).not.toBeNull()
      })
    )

    it.scopedLive("exactly at expiresAt: either the holder extends or another acquires, never both (both orders)", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const a = (await state.acquireLock("ta", 1000))!
        const b = (await state.acquireLock("tb", 1000))!
        clock.advance(a.expiresAt - clock.now())
        const extendedA = await state.extendLock(a, 5000)
        const takenA = await other.acquireLock("ta", 5000)
        expect([extendedA, takenA !== null]).not.toEqual([true, true])
        expect(extendedA || takenA !== null).toBe(true)
        const takenB = await other.acquireLock("tb", 5000)
        const extendedB = await state.extendLock(b, 5000)
        expect([extendedB, takenB !== null]).not.toEqual([true, true])
      })
    )

    it.scopedLive("one millisecond before expiresAt the lock is still held: no one else gets it", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const held = (await state.acquireLock("t", 1000))!
        clock.advance(held.expiresAt - clock.now() - 1)
        expect(await other.acquireLock("t", 1000)).toBeNull()
        expect(await state.extendLock(held, 1000)).toBe(true)
      })
    )

    it.scopedLive("40 acquirers on two connections race a stale holder's extend and release over an expired lock: exactly one winner, the stale holder never wins", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        for (const round of range(5)) {
          const stale = (await state.acquireLock(`r${round}`, 1000))!
          clock.advance(1500)
          const calls: Array<Promise<unknown>> = []
          for (const i of range(40)) {
            const s: StateAdapter = i % 2 === 0 ? state : other
            calls.push(s.acquireLock(`r${round}`, 30_000))
            if (i % 8 === 0) calls.push(state.extendLock(stale, 30_000).then((ok) => ({ extended: ok })))
            if (i % 13 === 0) calls.push(other.releaseLock(stale).then(() => ({ released: true })))
          }
          const results = await Promise.all(calls)
          const winners = results.filter((r): r is Lock => r !== null && typeof r === "object" && "token" in (r as object))
          const extends_ = results.filter((r) => r !== null && typeof r === "object" && "extended" in (r as object)) as Array<{ extended: boolean }>
          expect(winners).toHaveLength(1)
          expect(extends_.every((e) => !e.extended)).toBe(true)
          // The winner still holds it after the stale releases.
          expect(await state.acquireLock(`r${round}`, 1000)).toBeNull()
          expect(await other.extendLock(winners[0]!, 30_000)).toBe(true)
        }
      })
    )

    it.scopedLive("a lock object with another thread's id and the holder's token releases nothing and extends nothing", () =>
      withSubject(kind, async ({ state, another }) => {
        const other = await another()
        const a = (await state.acquireLock("A", 30_000))!
        const b = (await other.acquireLock("B", 30_000))!
        await state.releaseLock({ ...a, threadId: "B" })
        expect(await state.extendLock({ ...a, threadId: "B" }, 60_000)).toBe(false)
        expect(await state.acquireLock("B", 1000)).toBeNull()
        expect(await other.extendLock(b, 1000)).toBe(true)
        // A forged token on a free thread creates nothing.
        expect(await state.extendLock({ threadId: "C", token: a.token, expiresAt: 0 }, 60_000)).toBe(false)
        expect(await other.acquireLock("C", 1000)).not.toBeNull()
      })
    )

    it.scopedLive("forceReleaseLock then a stale holder's extend/release: the stale holder cannot take back or break the new holder's lock", () =>
      withSubject(kind, async ({ state, another }) => {
        const other = await another()
        const first = (await state.acquireLock("t", 30_000))!
        await other.forceReleaseLock("t")
        const second = (await other.acquireLock("t", 30_000))!
        expect(second.token).not.toBe(first.token)
        expect(await state.extendLock(first, 60_000)).toBe(false)
        await state.releaseLock(first)
        expect(await state.acquireLock("t", 1000)).toBeNull()
        expect(await other.extendLock(second, 1000)).toBe(true)
      })
    )

    it.scopedLive("the holder's release and extend racing each other (and across connections): afterwards the lock is free — an extend that lost never recreates it", () =>
      withSubject(kind, async ({ state, another }) => {
        const other = await another()
        for (const round of range(15)) {
          const lock = (await state.acquireLock(`t${round}`, 30_000))!
          const calls = round % 2 === 0 ? [state.releaseLock(lock), other.extendLock(lock, 60_000), state.extendLock(lock, 60_000)] : [other.extendLock(lock, 60_000), state.releaseLock(lock), other.extendLock(lock, 60_000)]
          await Promise.all(calls)
          expect(await other.acquireLock(`t${round}`, 1000), `round ${round}`).not.toBeNull()
        }
      })
    )

    it.scopedLive("exactly at expiresAt, the holder's extends and 20 acquirers all at once: never a winner while the extend also says true", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        for (const round of range(5)) {
          const held = (await state.acquireLock(`b${round}`, 1000))!
          clock.advance(held.expiresAt - clock.now())
          const extends_ = [state.extendLock(held, 30_000), other.extendLock(held, 30_000)]
          const acquires = range(20).map((i) => (i % 2 ? state : other).acquireLock(`b${round}`, 30_000))
          const [e, a] = await Promise.all([Promise.all(extends_), Promise.all(acquires)])
          const winners = a.filter((l) => l !== null)
          expect(winners.length).toBeLessThanOrEqual(1)
          if (winners.length === 1) expect(e, `round ${round}`).toEqual([false, false])
          else expect(e.some(Boolean)).toBe(true)
          clock.advance(60_000)
        }
      })
    )
  })

for (const kind of ours) attacks(kind)
