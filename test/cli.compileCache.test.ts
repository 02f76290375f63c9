/**
 * The CLI's compile cache (src/cli/compileCache.ts) goes on only in a directory no other
 * account can change, and never breaks the command. Real directories in a temp folder; the
 * temp folder itself is world-writable, so where a test needs a private place it reads the
 * temp folder's own entry (and those above it) as not writable by others.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { type CompileCacheContext, compileCacheDir, enablePrivateCompileCache, privateToUser } from "../src/cli/compileCache.js"

const roots: Array<string> = []
afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true })
})

const uid = process.getuid!()
const tmp = fs.realpathSync(os.tmpdir())

/** `fs.lstatSync`, but the temp folder and the folders above it read as writable by their owner only. */
const tmpReadAsPrivate = (at: string): fs.Stats => {
  const stat = fs.lstatSync(at)
  if (!(tmp === at || tmp.startsWith(at === "/" ? "/" : `${at}${path.sep}`))) return stat
  return Object.assign(Object.create(Object.getPrototypeOf(stat) as object) as fs.Stats, stat, { mode: stat.mode & ~0o022 })
}

/** A context whose cache directory lies in a fresh temp folder (`XDG_CACHE_HOME`), and the directories `enable` was called with. */
const context = (overrides: Partial<CompileCacheContext> & { readonly env?: NodeJS.ProcessEnv } = {}) => {
  const root = fs.mkdtempSync(path.join(tmp, "channel-state-compile-cache-"))
  roots.push(root)
  const enabled: Array<string> = []
  const env = { XDG_CACHE_HOME: path.join(root, "cache"), ...overrides.env }
  return {
    expected: compileCacheDir(env),
    enabled,
    context: { enable: (directory: string) => void enabled.push(directory), uid, lstat: tmpReadAsPrivate, ...overrides, env } satisfies CompileCacheContext
  }
}

describe.runIf(process.platform !== "win32")("the CLI's compile cache", () => {
  it("goes on in $XDG_CACHE_HOME/channel-state/node-compile-cache, made owner-only", () => {
    const { context: c, enabled, expected } = context()
    expect(enablePrivateCompileCache(c)).toBe(expected)
    expect(expected.endsWith(path.join("cache", "channel-state", "node-compile-cache"))).toBe(true)
    expect(enabled).toEqual([expected])
    expect(fs.statSync(expected).mode & 0o777).toBe(0o700)
    expect(fs.statSync(path.dirname(expected)).mode & 0o777).toBe(0o700)
  })

  it("stays off in the shared temp folder (another account could change what is in it)", () => {
    const { context: c, enabled, expected } = context({ lstat: fs.lstatSync })
    expect(fs.statSync(tmp).mode & 0o002, "the temp folder is writable by others here").not.toBe(0)
    expect(enablePrivateCompileCache(c)).toBeUndefined()
    expect(enabled).toEqual([])
    expect(privateToUser(expected, uid)).toBe(false)
  })

  it("stays off when the directory, or one above it, is group-writable or belongs to another account", () => {
    const groupWritable = context()
    fs.mkdirSync(groupWritable.expected, { recursive: true })
    fs.chmodSync(path.dirname(groupWritable.expected), 0o770)
    expect(enablePrivateCompileCache(groupWritable.context)).toBeUndefined()
    expect(groupWritable.enabled).toEqual([])

    const other = context()
    fs.mkdirSync(other.expected, { recursive: true, mode: 0o700 })
    // The directory reads as another account's: neither root's nor this user's.
    const otherAccount = uid + 4242
    const ownedByOther = (at: string) => (at === other.expected ? Object.assign(tmpReadAsPrivate(at), { uid: otherAccount }) : tmpReadAsPrivate(at))
    expect(enablePrivateCompileCache({ ...other.context, lstat: ownedByOther })).toBeUndefined()
    expect(other.enabled).toEqual([])
  })

  it("stays off on a Node without module.enableCompileCache, without user ids, and when NODE_COMPILE_CACHE or NODE_DISABLE_COMPILE_CACHE is set", () => {
    for (const overrides of [{ enable: undefined }, { uid: undefined }, { env: { NODE_COMPILE_CACHE: "/somewhere" } }, { env: { NODE_DISABLE_COMPILE_CACHE: "1" } }]) {
      const { context: c, enabled, expected } = context(overrides)
      expect(enablePrivateCompileCache(c), JSON.stringify(overrides)).toBeUndefined()
      expect(enabled).toEqual([])
      expect(fs.existsSync(expected), "nothing is made").toBe(false)
    }
  })

  it("never throws: a cache directory that cannot be made, or an enable that throws, leaves it off", () => {
    const blocked = context()
    fs.mkdirSync(path.dirname(path.dirname(blocked.expected)), { recursive: true })
    fs.writeFileSync(path.dirname(blocked.expected), "a file where the directory would be")
    expect(enablePrivateCompileCache(blocked.context)).toBeUndefined()
    expect(blocked.enabled).toEqual([])

    const throwing = context({
      enable: () => {
        throw new Error("no cache today")
      }
    })
    expect(enablePrivateCompileCache(throwing.context)).toBeUndefined()
  })
})
