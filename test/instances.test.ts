/**
 * Several instances: three OS processes (test/support/instanceWorker.ts) share one fresh
 * PostgreSQL database and run mixed traffic, each phase started on all three at once:
 *
 * - a Slack thread (and an MS Teams sent message) recorded by one instance is honoured by
 *   the other two once the recorder's flush committed it (polled, bounded);
 * - Discord components registered once, then clicked on all three instances at once
 *   (resolve with consume): each is handled by exactly one instance;
 * - BlueBubbles and Feishu messages delivered to all three (all claimed concurrently by
 *   every instance): each is `Claimed` exactly once across the instances and finalized; a
 *   later claim anywhere answers `Duplicate`.
 *
 * PostgreSQL only: runs when CHANNEL_STATE_TEST_PG_URL is set.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { freshPgDatabase, PG_URL_VARIABLE, pgUrl } from "./support/backends.js"
import {
  COMPONENTS,
  componentId,
  configOn,
  feishuId,
  guid,
  HONOUR_BOUND_MS,
  INSTANCE_OWNER,
  INSTANCES,
  type InstanceLine,
  MESSAGES,
  THREADS
} from "./support/instanceWorker.js"
import { type LineProcess, type Received, spawnLineProcess } from "./support/lineProcess.js"

const workerScript = path.join("test", "support", "instanceWorker.ts")
const SEED = (Date.now() % 1_000_000) + 1

const isLine =
  <T extends InstanceLine["type"]>(type: T) =>
  (line: InstanceLine): line is Extract<InstanceLine, { type: T }> =>
    line.type === type

/** Sends `command` to every instance in the same tick, then waits for each one's `reply` line. */
const phase = <T extends InstanceLine["type"]>(instances: ReadonlyArray<LineProcess<InstanceLine>>, command: string, reply: T) =>
  Effect.gen(function* () {
    for (const instance of instances) instance.send(command)
    const replies: ReadonlyArray<Received<Extract<InstanceLine, { type: T }>>> = yield* Effect.forEach(
      instances,
      (instance) => instance.waitFor(isLine(reply), 40_000),
      { concurrency: "unbounded" }
    )
    return replies.map((received) => received.line)
  })

/** For each id, how many instances got it; the ids not got exactly once. */
const notExactlyOnce = (all: ReadonlyArray<string>, got: ReadonlyArray<ReadonlyArray<string>>) => {
  const counts = new Map<string, number>(all.map((id) => [id, 0]))
  for (const ids of got) for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
  return [...counts].filter(([, n]) => n !== 1).map(([id, n]) => `${id}×${n}`)
}

describe("several instances on one PostgreSQL database", () => {
  if (!pgUrl) {
    it(`needs PostgreSQL: set ${PG_URL_VARIABLE} to run it`, () => {
      console.info(`[channel-state instances] skipped: ${PG_URL_VARIABLE} is not set`)
    })
    return
  }
  const baseUrl = pgUrl

  it.scopedLive(
    `${INSTANCES} processes: Slack threads honoured across instances; ${COMPONENTS} Discord components clicked on all at once handled once each; ${MESSAGES} BlueBubbles + ${MESSAGES} Feishu messages delivered to all processed once each`,
    () =>
      Effect.gen(function* () {
        const { url } = yield* freshPgDatabase(baseUrl)
        // The schema exists before the instances start, so they race on traffic only.
        yield* Effect.scoped(
          Layer.build(Layer.provide(PluginRuntime.layer({ pluginId: INSTANCE_OWNER, config: configOn, store: { pgUrl: url } }), Logger.remove(Logger.defaultLogger)))
        )

        const instances = yield* Effect.forEach(Array.from({ length: INSTANCES }, (_, i) => i), (i) =>
          spawnLineProcess<InstanceLine>(workerScript, [url, String(i), String(SEED)])
        )
        yield* Effect.forEach(instances, (instance) => instance.waitFor(isLine("ready"), 40_000), { concurrency: "unbounded", discard: true })

        // 1. Record, then poll what the others recorded.
        const recorded = yield* phase(instances, "record", "recorded")
        for (const r of recorded) {
          expect(r.slack, `instance ${r.instance}: Slack threads recorded by the others`).toMatchObject({ expected: THREADS * (INSTANCES - 1), honoured: THREADS * (INSTANCES - 1) })
          expect(r.msteams, `instance ${r.instance}: MS Teams messages sent by the others`).toMatchObject({ expected: THREADS * (INSTANCES - 1), honoured: THREADS * (INSTANCES - 1) })
          expect(r.discord, `instance ${r.instance}: components registered by instance 0`).toMatchObject({ expected: COMPONENTS, visible: COMPONENTS })
        }

        // 2. All at once: click every component, claim every message, more Slack traffic.
        const raced = yield* phase(instances, "race", "raced")
        // The runs really overlapped in time.
        expect(Math.max(...raced.map((r) => r.startedAt))).toBeLessThan(Math.min(...raced.map((r) => r.finishedAt)))
        const components = Array.from({ length: COMPONENTS }, (_, n) => componentId(n))
        const guids = Array.from({ length: MESSAGES }, (_, n) => guid(n))
        const feishuIds = Array.from({ length: MESSAGES }, (_, n) => feishuId(n))
        const discordWrong = notExactlyOnce(components, raced.map((r) => r.discordGot))
        const bbWrong = notExactlyOnce(guids, raced.map((r) => r.bbWon))
        const feishuWrong = notExactlyOnce(feishuIds, raced.map((r) => r.feishuWon))

        // 3. Later deliveries and clicks, anywhere.
        const again = yield* phase(instances, "again", "again")
        const exits = yield* Effect.forEach(instances, (instance) => instance.closed, { concurrency: "unbounded" })
        const problems = instances.flatMap((instance) =>
          instance.lines.flatMap(({ line }) => (line.type === "problem" || line.type === "fatal" ? [JSON.stringify(line)] : []))
        )

        const slackTimes = recorded.map((r) => r.slack.allAfterMs ?? Number.NaN)
        console.info(
          `[channel-state instances] ${INSTANCES} processes on PostgreSQL (seed ${SEED}): ` +
            `Slack: each honoured all ${THREADS * (INSTANCES - 1)} threads of the others within ${Math.max(...slackTimes)} ms (per instance ${slackTimes.join("/")} ms, bound ${HONOUR_BOUND_MS} ms), ` +
            `MS Teams within ${Math.max(...recorded.map((r) => r.msteams.allAfterMs ?? Number.NaN))} ms, components visible within ${Math.max(...recorded.map((r) => r.discord.allAfterMs ?? Number.NaN))} ms; ` +
            `race: starts ${Math.max(...raced.map((r) => r.startedAt)) - Math.min(...raced.map((r) => r.startedAt))} ms apart, ` +
            `${Math.max(...raced.map((r) => r.finishedAt)) - Math.min(...raced.map((r) => r.startedAt))} ms long: ` +
            `Discord got ${raced.map((r) => r.discordGot.length).join("+")} of ${COMPONENTS} (not exactly once: ${discordWrong.length}), ` +
            `BlueBubbles ${raced.map((r) => JSON.stringify(r.bbOutcomes)).join(" / ")} (not exactly once: ${bbWrong.length}), ` +
            `Feishu ${raced.map((r) => JSON.stringify(r.feishuOutcomes)).join(" / ")} (not exactly once: ${feishuWrong.length}), ` +
            `Slack during the race: ${raced.map((r) => `${r.slackRecorded} recorded, ${r.slackChecksTrue} checks true`).join(" / ")}; ` +
            `again: BlueBubbles ${again.map((a) => JSON.stringify(a.bbOutcomes)).join(" / ")}, Feishu ${again.map((a) => JSON.stringify(a.feishuOutcomes)).join(" / ")}, ` +
            `components got ${again.map((a) => a.discordGot).join("+")}; ${problems.length} problem lines`
        )

        expect(discordWrong, "components not handled exactly once across the instances").toEqual([])
        expect(bbWrong, "BlueBubbles messages not claimed exactly once across the instances").toEqual([])
        expect(feishuWrong, "Feishu messages not claimed exactly once across the instances").toEqual([])
        for (const r of raced) {
          // Whoever lost a claim was told it is taken: in flight (not finalized yet) or a duplicate.
          const unexpected = (outcomes: Readonly<Record<string, number>>) => Object.keys(outcomes).filter((tag) => !["Claimed", "InFlight", "Duplicate"].includes(tag))
          expect(unexpected(r.bbOutcomes), `instance ${r.instance}: BlueBubbles outcomes`).toEqual([])
          expect(unexpected(r.feishuOutcomes), `instance ${r.instance}: Feishu outcomes`).toEqual([])
        }
        for (const a of again) {
          expect(a.bbOutcomes, `instance ${a.instance}: BlueBubbles redelivered`).toEqual({ Duplicate: MESSAGES })
          expect(a.feishuOutcomes, `instance ${a.instance}: Feishu redelivered`).toEqual({ Duplicate: MESSAGES })
          expect(a.discordGot, `instance ${a.instance}: components clicked again`).toBe(0)
        }
        expect(exits.map((exit) => exit.code)).toEqual(instances.map(() => 0))
        expect(problems, "warnings, errors or fatal lines from the instances").toEqual([])
      }),
    90_000
  )
})
