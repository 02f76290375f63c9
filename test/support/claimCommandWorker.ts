/**
 * A child process that is one gateway instance's Feishu dedupe, driven line by line over
 * stdin, for the fencing and clock-skew tests (test/claims.fencing.test.ts,
 * test/claims.clockSkew.test.ts). It opens the store, says `ready`, then answers each
 * command in order with one `answer` line:
 *
 * - `{"seq":1,"op":"claim","id":"m"}` → `beginProcessing`: `Claimed`, `Duplicate`, `InFlight`, `Skip`;
 * - `{"seq":2,"op":"finalize","id":"m"}` / `"release"` → the `finalize` / `release` of this
 *   process's latest `Claimed` outcome for `m` (fenced by that claim): `done`, `stale`,
 *   `queued`, `refused` (`no-claim` when it never won `m`);
 * - `{"seq":3,"op":"clock"}` → the offset of this process's Effect clock from the real time, in ms;
 * - `{"seq":4,"op":"problems"}` → the warning and error lines logged so far.
 *
 *   node --import tsx test/support/claimCommandWorker.ts <sqlite|pg> <file or url> <worker id>
 *     [--claim-ttl <ms>] [--clock-offset <ms>] [--sweep-interval <ms>] [--clock database|application]
 *
 * Without `--claim-ttl` it is the production Feishu channel (`PluginRuntime.layer`, in-flight
 * claims for 5 minutes). With it, the same claim ledger over the same store namespace and
 * keys, but whose claims expire after `<ms>` — an instance whose handler outlives its lease.
 * `--clock-offset` makes the whole process's clock run ahead (see clockOffset.ts); the other
 * flags are the store settings of the same names.
 */
import { clockOffsetMillis } from "./clockOffset.js"
import { parseArgs } from "node:util"
import { Clock, Duration, Effect, Queue, type Scope } from "effect"
import * as Feishu from "../../src/channels/FeishuMessageDedupe.js"
import { type ClaimOutcome, makeClaimLedger } from "../../src/layers/ClaimLedger.js"
import { persistentCache } from "../../src/layers/channelCache.js"
import type { SettleOutcome } from "../../src/layers/mirror/MirroredCache.js"
import * as PluginRuntime from "../../src/PluginRuntime.js"
import type { LineProcess } from "./lineProcess.js"
import { onStdinLine, persistenceOn, problemLogger, say, storeLocationOf } from "./workerIo.js"

/** The plugin the workers run as: the owner of the rows. */
export const COMMAND_PLUGIN = "feishu"
/** The Feishu dedupe namespace (app) every message is claimed in. */
export const FEISHU_APP = "app"
/** The store key of a message: what `FeishuMessageDedupe` stores it under. */
export const feishuStoreKey = (id: string): string => `${FEISHU_APP}:${id}`

export type Command =
  | { readonly seq: number; readonly op: "claim" | "finalize" | "release"; readonly id: string }
  | { readonly seq: number; readonly op: "clock" | "problems" }

export type CommandWorkerLine =
  | { readonly type: "ready"; readonly worker: string }
  | { readonly type: "answer"; readonly seq: number; readonly answer: string }
  | { readonly type: "clock"; readonly seq: number; readonly offsetMillis: number; readonly patchedMillis: number }
  | { readonly type: "problems"; readonly seq: number; readonly problems: ReadonlyArray<string> }
  | { readonly type: "fatal"; readonly worker: string; readonly message: string }

const main = () => {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      "claim-ttl": { type: "string" },
      "clock-offset": { type: "string" },
      "sweep-interval": { type: "string" },
      clock: { type: "string" }
    }
  })
  const [backend, location, worker = "?"] = positionals
  const { problems, layer: logger } = problemLogger()
  const commands = Effect.runSync(Queue.unbounded<Command>())
  onStdinLine((line) => {
    Queue.unsafeOffer(commands, JSON.parse(line) as Command)
  })

  const clock = values.clock
  if (clock !== undefined && clock !== "database" && clock !== "application") throw new Error(`--clock must be database or application, got ${clock}`)
  const store: PluginRuntime.StoreLocation = {
    ...storeLocationOf(backend, location),
    ...(values["sweep-interval"] === undefined ? {} : { sweepInterval: Duration.millis(Number(values["sweep-interval"])) }),
    ...(clock === undefined ? {} : { clock })
  }

  /** Answers the commands, in order, with `claim` as this instance's claim. */
  const serve = (claim: (id: string) => Effect.Effect<ClaimOutcome>) =>
    Effect.gen(function* () {
      const held = new Map<string, Extract<ClaimOutcome, { _tag: "Claimed" }>>()
      const settle = (id: string, how: "finalize" | "release"): Effect.Effect<SettleOutcome | "no-claim"> => {
        const won = held.get(id)
        return won === undefined ? Effect.succeed("no-claim") : won[how]
      }
      say({ type: "ready", worker })
      for (;;) {
        const command = yield* Queue.take(commands)
        switch (command.op) {
          case "claim": {
            const outcome = yield* claim(command.id)
            if (outcome._tag === "Claimed") held.set(command.id, outcome)
            say({ type: "answer", seq: command.seq, answer: outcome._tag })
            break
          }
          case "finalize":
          case "release":
            say({ type: "answer", seq: command.seq, answer: yield* settle(command.id, command.op) })
            break
          case "clock": {
            const now = yield* Clock.currentTimeMillis
            say({ type: "clock", seq: command.seq, offsetMillis: now - (performance.timeOrigin + performance.now()), patchedMillis: clockOffsetMillis })
            break
          }
          case "problems":
            say({ type: "problems", seq: command.seq, problems: [...problems] })
            break
        }
      }
    })

  const claimTtl = values["claim-ttl"]
  const program: Effect.Effect<never, unknown, Scope.Scope> =
    claimTtl === undefined
      ? // The production channel.
        Effect.flatMap(Feishu.FeishuMessageDedupe, (feishu) => serve((id) => feishu.beginProcessing({ namespace: FEISHU_APP, messageId: id }))).pipe(
          Effect.provide(PluginRuntime.layer({ pluginId: COMMAND_PLUGIN, config: persistenceOn(COMMAND_PLUGIN), store, channels: ["feishu"] }))
        )
      : // What the Feishu layer builds (its spec, its ledger, its keys), with a short in-flight lease.
        Effect.gen(function* () {
          const cache = yield* persistentCache(Feishu.spec, { pluginId: COMMAND_PLUGIN })
          const ledger = makeClaimLedger(cache, { claimed: Duration.millis(Number(claimTtl)), committed: Feishu.PROCESSED_TTL })
          return yield* serve((id) => ledger.claim(id, feishuStoreKey))
        }).pipe(Effect.provide(PluginRuntime.storeLayer(store)))

  Effect.runPromiseExit(Effect.scoped(Effect.provide(program, logger))).then((exit) => {
    if (exit._tag === "Failure") {
      say({ type: "fatal", worker, message: String(exit.cause) })
      process.exitCode = 1
    }
  })
}

if (process.argv[1]?.endsWith("claimCommandWorker.ts")) main()

/** The test's side of the protocol: one command at a time, each awaiting its own answer line. */
export const commandClient = (worker: LineProcess<CommandWorkerLine>, timeoutMs = 60_000) => {
  let seq = 0
  const ask = <M extends CommandWorkerLine>(command: DistributiveOmit<Command, "seq">, isReply: (line: CommandWorkerLine) => line is M) =>
    Effect.suspend(() => {
      const n = ++seq
      worker.send(JSON.stringify({ ...command, seq: n }))
      return Effect.map(
        worker.waitFor((line): line is M => isReply(line) && "seq" in line && line.seq === n, timeoutMs),
        (received) => received.line
      )
    })
  const isAnswer = (line: CommandWorkerLine): line is Extract<CommandWorkerLine, { type: "answer" }> => line.type === "answer"
  const answer = (op: "claim" | "finalize" | "release", id: string) => Effect.map(ask({ op, id }, isAnswer), (line) => line.answer)
  return {
    claim: (id: string) => answer("claim", id),
    finalize: (id: string) => answer("finalize", id),
    release: (id: string) => answer("release", id),
    clock: ask({ op: "clock" }, (line): line is Extract<CommandWorkerLine, { type: "clock" }> => line.type === "clock"),
    problems: Effect.map(
      ask({ op: "problems" }, (line): line is Extract<CommandWorkerLine, { type: "problems" }> => line.type === "problems"),
      (line) => line.problems
    )
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
