/** Says once, at the top of the run, whether the PostgreSQL suites run. */
import { PG_URL_VARIABLE, pgUrl } from "./backends.js"

export default function setup() {
  if (pgUrl) {
    console.log(`[channel-state] PostgreSQL suites run against ${PG_URL_VARIABLE}=${pgUrl}`)
  } else {
    console.warn(
      `\n[channel-state] PostgreSQL suites SKIPPED: ${PG_URL_VARIABLE} is not set. ` +
        `Set it (e.g. postgres://postgres@127.0.0.1:5432/test) to run them; .ci/run does.\n`
    )
  }
}
