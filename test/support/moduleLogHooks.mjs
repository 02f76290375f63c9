/**
 * Module hooks of test/support/startupImportsWorker.ts (registered with `module.register`;
 * they run off the main thread): every ES module the process resolves is appended to
 * `logFile`, one URL a line, as it is resolved. With `refuse`, that package cannot be
 * resolved, as if it were not installed.
 */
import * as fs from "node:fs"

let logFile = ""
let refuse

export async function initialize(data) {
  logFile = data.logFile
  refuse = data.refuse
}

export async function resolve(specifier, context, nextResolve) {
  if (refuse !== undefined && (specifier === refuse || specifier.startsWith(`${refuse}/`))) {
    throw Object.assign(new Error(`Cannot find package '${specifier}' (refused by the test's resolve hook)`), { code: "ERR_MODULE_NOT_FOUND" })
  }
  const resolved = await nextResolve(specifier, context)
  fs.appendFileSync(logFile, `${resolved.url}\n`)
  return resolved
}
