/**
 * Node's on-disk compile cache for the `channel-state` command (Node ≥ 22.1): later runs skip
 * compiling the modules they load again. Only in a private directory of this user's
 * (`$XDG_CACHE_HOME/channel-state/node-compile-cache`, else `~/.cache/…`): Node's default, a
 * folder in the shared temp directory, is one another account could have made and filled
 * with code this process would then run. Off whenever that cannot be had, and when
 * `NODE_COMPILE_CACHE` (Node then caches where it says) or `NODE_DISABLE_COMPILE_CACHE` is set.
 *
 * Imported by bin/channel-state.js before anything else of the package: the cache covers
 * only modules compiled after it is on.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as module from "node:module"
import * as os from "node:os"
import * as path from "node:path"

/** What turns the cache on (`module.enableCompileCache`, which Node < 22.1 does not have). */
export type EnableCompileCache = (directory: string) => unknown

/** `$XDG_CACHE_HOME/channel-state/node-compile-cache`, else `~/.cache/channel-state/node-compile-cache`. */
export const compileCacheDir = (env: NodeJS.ProcessEnv): string =>
  path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "channel-state", "node-compile-cache")

/**
 * Whether no other account can change `directory`: it and every directory above it are owned
 * by root or by `uid`, and none of them can be written by its group or others (the sticky,
 * world-writable temp directory included: another account could rename what is in it).
 */
export const privateToUser = (directory: string, uid: number, lstat: (at: string) => fs.Stats = fs.lstatSync): boolean => {
  for (let at = path.resolve(directory); ; at = path.dirname(at)) {
    const stat = lstat(at)
    if (!stat.isDirectory() || (stat.uid !== 0 && stat.uid !== uid) || (stat.mode & 0o022) !== 0) return false
    if (path.dirname(at) === at) return true
  }
}

/** What {@link enablePrivateCompileCache} looks at. */
export interface CompileCacheContext {
  readonly enable: EnableCompileCache | undefined
  readonly env: NodeJS.ProcessEnv
  /** `undefined` where there are no user ids (Windows): the cache stays off there. */
  readonly uid: number | undefined
  readonly lstat: (at: string) => fs.Stats
}

/** This process's. */
const thisProcess = (): CompileCacheContext => ({
  enable: (module as { enableCompileCache?: EnableCompileCache }).enableCompileCache,
  env: process.env,
  uid: process.getuid?.(),
  lstat: fs.lstatSync
})

/**
 * Turns the compile cache on in {@link compileCacheDir} (made owner-only when missing) and
 * says where; `undefined` when it stays off. Never throws: the cache is only a speed-up.
 */
export const enablePrivateCompileCache = ({ enable, env, uid, lstat }: CompileCacheContext = thisProcess()): string | undefined => {
  if (enable === undefined || uid === undefined || env.NODE_COMPILE_CACHE || env.NODE_DISABLE_COMPILE_CACHE) return undefined
  try {
    const directory = compileCacheDir(env)
    fs.mkdirSync(directory, { recursive: true, mode: 0o700 })
    if (!privateToUser(directory, uid, lstat)) return undefined
    enable(directory)
    return directory
  } catch {
    return undefined
  }
}
