/**
 * Attacks on "each key / thread id its own row": ids that collide in naive schemes (the
 * digest's own text, the prefixes the adapter adds, Unicode normalization and case variants,
 * the 511/512-byte boundary with multi-byte characters), written and read all at once (so
 * PostgreSQL's coalesced lookups carry them together), and values whose JSON holds NUL, lone
 * surrogates and line separators.
 */
import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { entry, idOf, ours, type SubjectKind, withSubject } from "./support/chatState.js"

const digest = (key: string) => createHash("sha256").update(Buffer.from(key, "utf16le")).digest("hex")

const long = "x".repeat(600)
const ids: ReadonlyArray<string> = [
  long,
  `#${digest(long)}`,
  `=#${digest(long)}`,
  `=${long}`,
  `#sha256:${digest(long)}`,
  "a",
  "=a",
  "==a",
  "#a",
  "A",
  "a ",
  " a",
  "\u00e9", // é NFC
  "e\u0301", // é NFD
  "\ufb01", // ﬁ ligature (NFKC: fi)
  "fi",
  "\u212b", // Angstrom sign (NFC: Å U+00C5)
  "\u00c5",
  "A\u030a",
  "a\u200b", // zero-width space
  "\ud83d\ude00", // 😀
  "\ud83d", // lone high surrogate
  "\ude00", // lone low surrogate
  "\ude00\ud83d", // reversed pair
  "",
  "\u0000",
  "\u0000\u0000",
  "a".repeat(511), // 511 bytes: plain
  "a".repeat(512), // 512 bytes: digest
  "a".repeat(513),
  `${"\u20ac".repeat(170)}a`, // 511 bytes of which multi-byte
  `${"\u20ac".repeat(170)}ab`, // 512 bytes
  `${"\ud83d\ude00".repeat(127)}abc`, // 511 bytes, 257 UTF-16 units
  `${"\ud83d\ude00".repeat(127)}abcd`, // 512 bytes
  `${"\ud83d\ude00".repeat(128)}`, // 512 bytes of surrogate pairs
  "null",
  "undefined",
  "[object Object]",
  "%",
  "_",
  "a%",
  "a_",
  "'; DROP TABLE channel_state_entries; --",
  "\\",
  "\\\\",
  '"',
  "\u2028\u2029",
  "\n",
  "\r\n"
]

const attacks = (kind: SubjectKind) =>
  describe(`chat adapter, keys: ${kind.name}`, () => {
    it.scopedLive("colliding-looking keys, all written at once on two connections, are each their own cache row, list, queue, lock and subscription", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        expect(new Set(ids).size).toBe(ids.length)
        const pick = (i: number) => (i % 2 === 0 ? state : other)
        await Promise.all(ids.map((id, i) => pick(i).set(id, { i })))
        await Promise.all(ids.map((id, i) => pick(i + 1).appendToList(id, i)))
        await Promise.all(ids.map((id, i) => pick(i).enqueue(id, entry(`m${i}`, clock.now()), 10)))
        const locks = await Promise.all(ids.map((id, i) => pick(i + 1).acquireLock(id, 30_000)))
        expect(locks.map((l) => l !== null)).toEqual(ids.map(() => true))
        await Promise.all(ids.filter((_, i) => i % 3 === 0).map((id, i) => pick(i).subscribe(id)))

        expect(await Promise.all(ids.map((id, i) => pick(i + 1).get(id)))).toEqual(ids.map((_, i) => ({ i })))
        expect(await Promise.all(ids.map((id, i) => pick(i).getList(id)))).toEqual(ids.map((_, i) => [i]))
        expect(await Promise.all(ids.map((id, i) => pick(i).queueDepth(id)))).toEqual(ids.map(() => 1))
        expect(await Promise.all(ids.map((id, i) => pick(i).isSubscribed(id)))).toEqual(ids.map((_, i) => i % 3 === 0))
        expect(await Promise.all(ids.map((id, i) => pick(i + 1).acquireLock(id, 30_000)))).toEqual(ids.map(() => null))
        expect((await Promise.all(ids.map((id, i) => pick(i + 1).dequeue(id)))).map(idOf)).toEqual(ids.map((_, i) => `m${i}`))
        // Deleting / releasing one touches no other.
        await Promise.all(ids.filter((_, i) => i % 2 === 1).map((id) => state.delete(id)))
        await Promise.all(locks.filter((_, i) => i % 2 === 1).map((l) => other.releaseLock(l!)))
        expect(await Promise.all(ids.map((id) => other.get(id)))).toEqual(ids.map((_, i) => (i % 2 === 1 ? null : { i })))
        expect((await Promise.all(ids.map((id) => state.acquireLock(id, 1000)))).map((l) => l !== null)).toEqual(ids.map((_, i) => i % 2 === 1))
      })
    )

    it.scopedLive("values whose JSON holds NUL, lone surrogates, U+2028, huge and tiny numbers round-trip in the cache, lists and queues", () =>
      withSubject(kind, async ({ state, clock, another }) => {
        const other = await another()
        const values: ReadonlyArray<unknown> = [
          "a\u0000b",
          "\ud800",
          "x\udfffy",
          "\u2028\u2029",
          { "\u0000key": "\u0000", "\ud800": ["\udc00"] },
          1e308,
          5e-324,
          -0,
          Number.MAX_SAFE_INTEGER + 2,
          "",
          [],
          {},
          false,
          null,
          0,
          "\\u0000",
          "'\"`",
          { nested: { deep: [[[["\u0000"]]]] } }
        ]
        const json = (v: unknown) => JSON.parse(JSON.stringify(v))
        for (const [i, v] of values.entries()) {
          await state.set(`v${i}`, v)
          await state.appendToList("list", v)
          await state.enqueue("q", { message: { id: `m${i}`, payload: v } as never, enqueuedAt: clock.now(), expiresAt: clock.now() + 90_000 }, 100)
        }
        for (const [i, v] of values.entries()) expect(await other.get(`v${i}`)).toEqual(json(v))
        expect(await other.getList("list")).toEqual(values.map(json))
        for (const [i, v] of values.entries()) {
          const got = (await other.dequeue("q"))!
          expect(got.message).toEqual({ id: `m${i}`, payload: json(v) })
        }
        // `null` set: get returns null, but setIfNotExists must see the row as present.
        expect(await state.setIfNotExists(`v${values.indexOf(null)}`, "over")).toBe(false)
      })
    )
  })

for (const kind of ours) attacks(kind)
