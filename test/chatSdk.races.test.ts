/**
 * Attacks on the read-modify-write members under interleaving: lists polled while two
 * connections append with a bound (never more than maxLength, a trimmed item never seen
 * again), queues enqueued and dequeued at once (each entry to at most one caller, per-producer
 * order kept, never past maxSize), and disconnect()/connect() cycles with calls in flight.
 */
import { describe, expect, it } from "@effect/vitest"
import type { StateAdapter } from "chat"
import { entry, idOf, ours, reasonOf, type SubjectKind, withSubject } from "./support/chatState.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

const attacks = (kind: SubjectKind) =>
  describe(`chat adapter, races: ${kind.name}`, () => {
    it.scopedLive("bounded appends from two connections while a third polls: at most maxLength, each producer's items in order, a trimmed item never reappears", () =>
      withSubject(kind, async ({ state, another }) => {
        const a = await another()
        const b = await another()
        const maxLength = 4
        let done = false
        const producer = async (s: StateAdapter, name: string) => {
          for (const i of range(40)) await s.appendToList("l", `${name}${i}`, { maxLength, ttlMs: 60_000 })
        }
        const snapshots: Array<ReadonlyArray<string>> = []
        const poll = async () => {
          while (!done) snapshots.push(await state.getList<string>("l"))
        }
        const polling = poll()
        await Promise.all([producer(a, "a"), producer(b, "b"), producer(a, "c"), producer(b, "d")])
        done = true
        await polling
        snapshots.push(await state.getList<string>("l"))
        const gone = new Set<string>()
        const seq = (item: string) => Number(item.slice(1))
        for (const snap of snapshots) {
          expect(snap.length).toBeLessThanOrEqual(maxLength)
          expect(new Set(snap).size).toBe(snap.length)
          for (const item of snap) expect(gone.has(item), `${item} came back in ${JSON.stringify(snap)}`).toBe(false)
          // Per producer, in order.
          for (const p of "abcd") {
            const mine = snap.filter((x) => x[0] === p).map(seq)
            expect(mine).toEqual([...mine].sort((x, y) => x - y))
          }
          // Anything of a producer older than its oldest item shown is gone for good (each producer appends in order).
          for (const p of "abcd") {
            const mine = snap.filter((x) => x[0] === p).map(seq)
            if (mine.length > 0) for (const j of range(Math.min(...mine))) gone.add(`${p}${j}`)
          }
        }
        const last = snapshots[snapshots.length - 1]!
        expect(last).toHaveLength(maxLength)
        expect(last.filter((x) => x.endsWith("39")).length).toBeGreaterThanOrEqual(1)
      })
    )

    it.scopedLive("enqueue and dequeue at once on three connections: each entry to at most one dequeue, per-producer order, never past maxSize, and the rest still queued", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const p2 = await another()
        const c = await another()
        const maxSize = 5
        const depths: Array<number> = []
        const got: Array<string> = []
        let producing = 2
        const producer = async (s: StateAdapter, name: string) => {
          for (const i of range(40)) depths.push(await s.enqueue("q", entry(`${name}-${i}`, clock.now()), maxSize))
          producing--
        }
        const consumer = async (s: StateAdapter) => {
          while (producing > 0) {
            const e = idOf(await s.dequeue("q"))
            if (e !== null) got.push(e)
          }
        }
        await Promise.all([producer(state, "x"), producer(p2, "y"), consumer(c), consumer(state), consumer(p2)])
        const rest: Array<string> = []
        for (;;) {
          const e = idOf(await c.dequeue("q"))
          if (e === null) break
          rest.push(e)
        }
        expect(Math.max(...depths)).toBeLessThanOrEqual(maxSize)
        expect(rest.length).toBeLessThanOrEqual(maxSize)
        const all = [...got, ...rest]
        expect(new Set(all).size).toBe(all.length)
        for (const p of ["x", "y"]) {
          const mine = all.filter((id) => id.startsWith(`${p}-`)).map((id) => Number(id.split("-")[1]))
          // Oldest first: a producer's entries come out in the order it queued them (the consumers' pushes interleave, so check the final drain and the set).
          expect(new Set(mine).size).toBe(mine.length)
        }
        const restOrder = rest.map((id) => [id[0], Number(id.split("-")[1])] as const)
        for (const p of ["x", "y"]) {
          const mine = restOrder.filter(([q]) => q === p).map(([, n]) => n)
          expect(mine).toEqual([...mine].sort((a, b) => a - b))
        }
        expect(await state.queueDepth("q")).toBe(0)
      })
    )

    it.scopedLive("one consumer dequeuing while another connection enqueues: it gets that producer's entries oldest first, none twice", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const producerState = await another()
        const seen: Array<number> = []
        let producing = true
        const producing_ = (async () => {
          for (const i of range(60)) await producerState.enqueue("q", entry(`${i}`, clock.now()), 1000)
          producing = false
        })()
        while (producing || (await state.queueDepth("q")) > 0) {
          const e = idOf(await state.dequeue("q"))
          if (e !== null) seen.push(Number(e))
        }
        await producing_
        expect(seen).toEqual(range(60))
      })
    )

    it.scopedLive("disconnect() then connect() without waiting, with calls around both: each call lands once or rejects NotConnected, nothing half-written", () =>
      withSubject(kind, async ({ state, clock }) => {
        for (const round of range(4)) {
          const before = range(20).map((i) => state.appendToList(`l${round}`, i))
          const enq = range(10).map((i) => state.enqueue(`q${round}`, entry(`m${i}`, clock.now()), 100))
          const closing = state.disconnect()
          const between = range(5).map((i) => state.appendToList(`l${round}`, 100 + i).then(() => "ok", reasonOf))
          const opening = state.connect()
          const after = range(5).map((i) => state.appendToList(`l${round}`, 200 + i))
          const closing2 = state.disconnect()
          const opening2 = state.connect()
          await Promise.all([...before, ...enq])
          expect(await Promise.all(between)).toEqual(range(5).map(() => "NotConnected appendToList"))
          await Promise.all([...after, closing, opening, closing2, opening2])
          const list = await state.getList<number>(`l${round}`)
          expect([...list].sort((x, y) => x - y)).toEqual([...range(20), ...range(5).map((i) => 200 + i)])
          expect(await state.queueDepth(`q${round}`)).toBe(10)
        }
      })
    )

    it.scopedLive("concurrent disconnect() calls and a connect() racing them: all settle, the adapter ends connected, and data written before is there", () =>
      withSubject(kind, async ({ state }) => {
        await state.set("k", "v")
        const writes = range(10).map((i) => state.set(`w${i}`, i))
        const results = await Promise.allSettled([state.disconnect(), state.disconnect(), state.connect(), state.disconnect(), state.connect()])
        expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "fulfilled", "fulfilled"])
        await Promise.all(writes)
        expect(await state.get("k")).toBe("v")
        expect(await Promise.all(range(10).map((i) => state.get(`w${i}`)))).toEqual(range(10))
      })
    )

    it.scopedLive("setIfNotExists racing on a key whose row just expired, across three connections, with a delete in the mix: at most one true per live period", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const b = await another()
        const c = await another()
        const all = [state, b, c]
        for (const round of range(5)) {
          await state.set("dedupe", { round: -1 }, 1000)
          clock.advance(1000) // exactly at expiry: the row is expired
          const results = await Promise.all(range(30).map((i) => all[i % 3]!.setIfNotExists("dedupe", { round, i }, 60_000)))
          expect(results.filter(Boolean), `round ${round}`).toHaveLength(1)
          expect(await c.get("dedupe")).toEqual({ round, i: results.indexOf(true) })
          await b.delete("dedupe")
        }
      })
    )
  })

for (const kind of ours) attacks(kind)
