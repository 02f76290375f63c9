/**
 * The SQLite file on a real disk: the modes of what the store creates (directory 0700, the
 * file and its -wal/-shm sidecars 0600), modes it must leave alone, and typed failures —
 * never defects, never a modified file — for paths it cannot use.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema } from "effect"
import { KeyedStore } from "../src/KeyedStore.js"
import * as SqliteStore from "../src/layers/store/SqliteStore.js"
import { StateStoreError } from "../src/StateStoreError.js"
import { tempDir } from "./support/backends.js"

const modeOf = (file: string) => `0${(fs.statSync(file).mode & 0o777).toString(8)}`

/** Opens the store on `filename`, writes rows, and runs `whileOpen` before the store closes. */
const writeRows = <A>(filename: string, whileOpen: Effect.Effect<A>) =>
  Effect.scoped(
    Effect.provide(
      Effect.gen(function* () {
        const store = yield* KeyedStore
        const h = yield* store.open({ owner: "plugin-a", namespace: "files", schema: Schema.Number, maxEntries: 100 })
        for (let i = 0; i < 20; i++) yield* h.register(`k${i}`, i)
        expect(yield* h.lookup("k7")).toEqual(Option.some(7))
        return yield* whileOpen
      }),
      SqliteStore.layer({ filename })
    )
  )

/** Opening must fail with a typed StateStoreError (no defect); returns it. */
const openFailure = (filename: string) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(writeRows(filename, Effect.void))
    if (Exit.isSuccess(exit)) throw new Error(`opening ${filename} succeeded`)
    expect(Cause.isDie(exit.cause), `a defect instead of a typed failure: ${Cause.pretty(exit.cause)}`).toBe(false)
    const error = Option.getOrThrow(Cause.failureOption(exit.cause))
    expect(error).toBeInstanceOf(StateStoreError)
    return error
  })

describe("SQLite file handling", () => {
  it.scoped("a new directory is created 0700, the file 0600, and the -wal/-shm sidecars 0600 while the store is open", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = path.join(dir, "state", "nested", "channel-state.sqlite")
      const whileOpen = Effect.sync(() => ({
        sidecarsExist: [fs.existsSync(`${filename}-wal`), fs.existsSync(`${filename}-shm`)],
        modes: [filename, `${filename}-wal`, `${filename}-shm`].map(modeOf)
      }))
      const open = yield* writeRows(filename, whileOpen)
      expect(open.sidecarsExist).toEqual([true, true])
      expect(open.modes).toEqual(["0600", "0600", "0600"])
      expect([path.join(dir, "state"), path.dirname(filename)].map(modeOf)).toEqual(["0700", "0700"])
      expect(modeOf(filename)).toBe("0600")
      // Reopening keeps the data and the modes.
      const again = yield* writeRows(filename, whileOpen)
      expect(again.modes).toEqual(["0600", "0600", "0600"])
    })
  )

  it.scoped("an existing directory keeps its mode; the new file in it is still 0600", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const shared = path.join(dir, "shared")
      fs.mkdirSync(shared)
      fs.chmodSync(shared, 0o751)
      const filename = path.join(shared, "channel-state.sqlite")
      const modes = yield* writeRows(filename, Effect.sync(() => [shared, filename, `${filename}-wal`, `${filename}-shm`].map(modeOf)))
      expect(modes).toEqual(["0751", "0600", "0600", "0600"])
      expect(modeOf(shared)).toBe("0751")
    })
  )

  const garbage: ReadonlyArray<[string, Buffer]> = [
    ["a short text file", Buffer.from("definitely not a database\n")],
    ["4 KiB of noise", Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251))],
    ["the SQLite magic followed by noise", Buffer.concat([Buffer.from("SQLite format 3\u0000"), Buffer.alloc(8176, 0xa5)])]
  ]
  for (const [what, bytes] of garbage) {
    it.scoped(`${what} is refused with a typed OpenFailed/ReadFailed and left byte-for-byte unchanged`, () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const filename = path.join(dir, "channel-state.sqlite")
        fs.writeFileSync(filename, bytes, { mode: 0o600 })
        const error = yield* openFailure(filename)
        expect(["OpenFailed", "ReadFailed"]).toContain(error.reason)
        expect(error.operation).toBe("open")
        expect(fs.readFileSync(filename).equals(bytes)).toBe(true)
        expect(modeOf(filename)).toBe("0600")
      })
    )
  }

  it.scoped("a path whose parent is a regular file fails with OpenFailed and leaves that file alone", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const blocker = path.join(dir, "not-a-directory")
      fs.writeFileSync(blocker, "keep me")
      for (const filename of [path.join(blocker, "channel-state.sqlite"), path.join(blocker, "deeper", "channel-state.sqlite")]) {
        const error = yield* openFailure(filename)
        expect(error.reason).toBe("OpenFailed")
        expect(error.message).toContain(filename)
      }
      expect(fs.readFileSync(blocker, "utf8")).toBe("keep me")
      expect(fs.statSync(blocker).isFile()).toBe(true)
    })
  )
})
