/** PostgreSQL-only describe blocks (kept apart from backends.ts, which the global setup imports outside vitest). */
import { describe, expect, it } from "@effect/vitest"
import { PG_URL_VARIABLE, pgUrl } from "./backends.js"

/**
 * A describe block of PostgreSQL-only tests. Without CHANNEL_STATE_TEST_PG_URL (the run says so
 * at its start) it holds one test that checks the variable is indeed unset, instead of the tests.
 */
export const describePg = (name: string, body: () => void): void => {
  describe(name, pgUrl === undefined ? () => it(`needs ${PG_URL_VARIABLE}`, () => expect(pgUrl).toBeUndefined()) : body)
}
