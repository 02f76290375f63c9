/**
 * Clock skew between instances sharing PostgreSQL: a gateway process whose clock runs
 * 10 minutes ahead (test/support/claimCommandWorker.ts `--clock-offset 600000`: `Date.now`,
 * and so Effect's clock, patched before anything else is loaded) must neither take another
 * process's live Feishu claim (in flight for 5 minutes — less than the skew) nor have its
 * expired-row sweeper delete it. Both processes run the production store settings (the
 * database's clock decides expiry); the skewed one sweeps every 200 ms, the owner never.
 *
 * That the sweeper really ran is shown by a row the test plants already expired (by the
 * database's clock) in the same namespace: it must disappear, the live claims must not.
 *
 * The control case runs the same processes with `clock: "application"` (each process's own
 * clock decides): there the skewed process does take the claim and sweep the live one — the
 * failure this test is built to catch.
 */
import * as path from "node:path"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Feishu from "../src/channels/FeishuMessageDedupe.js"
import { pgBackend, pgUrl } from "./support/backends.js"
import { describePg } from "./support/describePg.js"
import { COMMAND_PLUGIN, type CommandWorkerLine, commandClient, feishuStoreKey } from "./support/claimCommandWorker.js"
import { entryRows } from "./support/entryRows.js"
import { eventually } from "./support/eventually.js"
import { spawnGroup } from "./support/workerGroup.js"

const SKEW_MS = 10 * 60 * 1000
const NAMESPACE = Feishu.spec.namespace
const PLANTED = "app:planted-expired"

const skewed = (clock: "database" | "application") =>
  Effect.gen(function* () {
    const db = yield* pgBackend(pgUrl!).fresh
    const rows = yield* entryRows(db)
    const clockArgs = clock === "application" ? ["--clock", "application"] : []
    const group = yield* spawnGroup<CommandWorkerLine>(path.join("test", "support", "claimCommandWorker.ts"), ["owner", "skewed"], (_go, name) =>
      name === "owner"
        ? ["pg", db.location!, name, "--sweep-interval", String(60 * 60 * 1000), ...clockArgs]
        : ["pg", db.location!, name, "--clock-offset", String(SKEW_MS), "--sweep-interval", "200", ...clockArgs]
    )
    yield* group.ready
    const [owner, ahead] = group.members.map((m) => commandClient(m.process)) as [ReturnType<typeof commandClient>, ReturnType<typeof commandClient>]

    // The skew took: the skewed process's Effect clock is 10 minutes ahead of the real time.
    const clocks = { owner: (yield* owner.clock).offsetMillis, skewed: (yield* ahead.clock).offsetMillis }
    expect(Math.abs(clocks.owner), "the owner's clock offset (ms)").toBeLessThan(1000)
    expect(Math.abs(clocks.skewed - SKEW_MS), "the skewed process's clock offset minus 10 min (ms)").toBeLessThan(1000)

    const rowOf = (key: string) => rows.row(COMMAND_PLUGIN, NAMESPACE, key)
    // m1: claimed by the owner, then asked for by the skewed process. m2: claimed by the owner, left to the sweeper.
    expect(yield* owner.claim("m1")).toBe("Claimed")
    expect(yield* owner.claim("m2")).toBe("Claimed")
    const m1Before = yield* rowOf(feishuStoreKey("m1"))
    const m2Before = yield* rowOf(feishuStoreKey("m2"))
    const skewedAnswers = [yield* ahead.claim("m1"), yield* ahead.claim("m1"), yield* ahead.claim("m1")]
    const m1After = yield* rowOf(feishuStoreKey("m1"))

    // A row already expired by the database's clock, for the skewed process's sweeper to remove.
    const now = yield* rows.databaseNow
    yield* rows.sql`INSERT INTO channel_state_entries (owner, namespace, entry_key, value_json, created_at, expires_at)
      VALUES (${COMMAND_PLUGIN}, ${NAMESPACE}, ${PLANTED}, ${JSON.stringify({ status: "claimed", at: now - 2000, token: "planted" })}, ${now - 2000}, ${now - 1000})`.pipe(Effect.orDie)
    const planted = yield* eventually(rowOf(PLANTED), (row) => row === undefined)
    const m2AfterSweep = yield* rowOf(feishuStoreKey("m2"))
    const problems = { owner: yield* owner.problems, skewed: yield* ahead.problems }
    console.info(
      `[channel-state clock skew] clock ${clock}: offsets owner ${Math.round(clocks.owner)} ms, skewed ${Math.round(clocks.skewed)} ms; ` +
        `skewed claims of the owner's live m1: ${skewedAnswers.join("/")}; m1 row ${m1After?.valueJson === m1Before?.valueJson ? "unchanged" : "changed"}; ` +
        `planted expired row ${planted === undefined ? "swept" : "still there"}; the owner's live m2 row ${m2AfterSweep === undefined ? "deleted" : m2AfterSweep.valueJson === m2Before?.valueJson ? "kept" : "changed"}; ` +
        `problem lines ${problems.owner.length}/${problems.skewed.length}`
    )
    return { owner, ahead, m1Before, m1After, m2Before, m2AfterSweep, skewedAnswers, planted, problems }
  })

describePg("clock skew on PostgreSQL", () => {
  it.scopedLive(
    "a process 10 minutes ahead neither takes another's live claim (InFlight) nor sweeps it; once the owner finalizes it sees a Duplicate",
    () =>
      Effect.gen(function* () {
        const run = yield* skewed("database")
        expect(run.skewedAnswers, "the skewed process's claims of a live claim").toEqual(["InFlight", "InFlight", "InFlight"])
        expect(run.m1After, "the live claim after the skewed process asked for it").toEqual(run.m1Before)
        expect(run.planted, "the expired row planted for the skewed process's sweeper").toBeUndefined()
        expect(run.m2AfterSweep, "the owner's live claim after the skewed process's sweeper ran").toEqual(run.m2Before)
        expect(yield* run.owner.finalize("m1")).toBe("done")
        expect(yield* run.owner.finalize("m2")).toBe("done")
        expect([yield* run.ahead.claim("m1"), yield* run.ahead.claim("m2")], "the skewed process, once the owner finalized").toEqual(["Duplicate", "Duplicate"])
        expect(run.problems.owner).toEqual([])
        expect(run.problems.skewed).toEqual([])
      }),
    120_000
  )

  it.scopedLive(
    'control: with clock: "application" the same skewed process takes the live claim and sweeps the other (the failure the test above catches)',
    () =>
      Effect.gen(function* () {
        const run = yield* skewed("application")
        expect(run.skewedAnswers[0], "the skewed process's first claim of a live claim, by its own clock").toBe("Claimed")
        expect(run.planted).toBeUndefined()
        expect(run.m2AfterSweep, "the owner's live claim, swept by the skewed process's clock").toBeUndefined()
        // The owner's late settles are fenced: it no longer holds m1.
        expect(yield* run.owner.finalize("m1")).toBe("stale")
      }),
    120_000
  )
})
