#!/usr/bin/env node
// The `channel-state` command. The TypeScript sources are compiled to dist/ by `npm run build`
// (run by `npm ci` / `npm install` through the `prepare` script).
// The compile cache goes on first (Node ≥ 22.1; see src/cli/compileCache.ts): it covers only
// the modules loaded after it, so the command itself is imported after it.
import { enablePrivateCompileCache } from "../dist/cli/compileCache.js"

enablePrivateCompileCache()
const { main } = await import("../dist/cli/main.js")
process.exitCode = await main(process.argv.slice(2))
