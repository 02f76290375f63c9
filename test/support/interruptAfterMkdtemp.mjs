/**
 * Preloaded (`node --import`) into a CLI process by test/cli.liveGateway.test.ts: the moment
 * `fs.mkdtempSync` has made a `channel-state-read-*` directory, the process sends itself
 * SIGINT, before it runs another instruction of the caller — the worst moment a Ctrl-C (or a
 * preemption between making the directory and listening for signals) can come. Just before,
 * it writes the directory's name to the file named by `INTERRUPTED_AFTER_MKDTEMP`, so the
 * test knows the signal was sent at that moment.
 */
import fs from "node:fs"
import { syncBuiltinESMExports } from "node:module"
import path from "node:path"

const mkdtempSync = fs.mkdtempSync
fs.mkdtempSync = (prefix, options) => {
  const dir = mkdtempSync(prefix, options)
  if (path.basename(dir).startsWith("channel-state-read-")) {
    fs.appendFileSync(process.env.INTERRUPTED_AFTER_MKDTEMP, `${dir}\n`)
    process.kill(process.pid, "SIGINT")
  }
  return dir
}
syncBuiltinESMExports()
