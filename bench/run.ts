/**
 * `npm run bench`: runs every benchmark module, prints one table, merges the rows into
 * bench/results.json (by name), draws them in bench/results.svg, and exits non-zero when a row
 * misses its target.
 * Add a benchmark by importing its module and appending its rows below.
 */
import { mergeResults, missed, printTable, type Row, resultsFile } from "./harness.js"
import { plotFile, writePlot } from "./plot.js"
import { storeBench } from "./store.js"
import { pgOverheadBench } from "./pgOverhead.js"
import { channelsBench } from "./channels.js"
import { claimsBench } from "./claims.js"
import { restartBench } from "./restart.js"
import { faultsBench } from "./faults.js"
import { bulkBench } from "./bulk.js"
import { startupBench } from "./startup.js"
import { burstBench } from "./burst.js"
import { chatSdkBench } from "./chatSdk.js"

const started = Date.now()
const rows: Array<Row> = [
  ...(await storeBench()),
  ...(await pgOverheadBench()),
  ...(await channelsBench()),
  ...(await claimsBench()),
  ...(await restartBench()),
  ...(await faultsBench()),
  ...(await bulkBench()),
  ...(await burstBench()),
  ...(await startupBench()),
  ...(await chatSdkBench())
]

console.log("")
printTable(rows)
const merged = mergeResults(rows)
writePlot(merged)
const misses = rows.filter(missed)
console.log(`\n${rows.length} rows written to ${resultsFile} (plot: ${plotFile}) in ${((Date.now() - started) / 1000).toFixed(1)} s`)
if (misses.length > 0) {
  console.error(`target missed: ${misses.map((r) => `${r.name} (${r.ratio} > ${r.target})`).join(", ")}`)
  process.exitCode = 1
}
