/**
 * What the multi-process test and its child script (`claimWorker.ts`) agree on: the
 * namespaces, the keys and the JSON lines the child prints.
 */
import { Schema } from "effect"
import type { NamespaceOptions } from "../../src/KeyedStore.js"

export const OWNER = "plugin-race"
/** How many times each worker claims the one contended key. */
export const RACERS = 50
/** The key every racer of both workers claims. */
export const RACE_KEY = "race"
/** Distinct keys both workers claim. */
export const CLAIM_KEYS = 1000
/** Keys the test registers before the workers start; both workers consume every one. */
export const CONSUME_KEYS = 50

export const claimKey = (i: number): string => `claim-${i}`
export const consumeKey = (i: number): string => `once-${i}`

export const Claim = Schema.Struct({ worker: Schema.String, n: Schema.Number })
export type Claim = typeof Claim.Type

const base = { owner: OWNER, schema: Claim as Schema.Schema<Claim, unknown>, maxEntries: 10_000 }
export const claimsNamespace: NamespaceOptions<Claim, unknown> = { ...base, namespace: "claims" }
export const oneShotNamespace: NamespaceOptions<Claim, unknown> = { ...base, namespace: "one-shot" }

/** One failed store operation, as the worker reports it. */
export interface WorkerFailure {
  readonly op: string
  readonly key: string
  readonly reason: string
  readonly message: string
}

/** The line a worker prints once its store is open and it waits for the start signal. */
export interface ReadyLine {
  readonly type: "ready"
  readonly worker: string
}

/** The line a worker prints when done. */
export interface ResultLine {
  readonly type: "result"
  readonly worker: string
  /** `Date.now()` when the start signal was seen and when the last operation finished. */
  readonly startedAt: number
  readonly finishedAt: number
  /** How many of the worker's racers got `true` for {@link RACE_KEY}. */
  readonly raceWins: number
  /** The distinct keys this worker claimed (`registerIfAbsent` → `true`). */
  readonly claimed: ReadonlyArray<string>
  /** The pre-registered keys whose value this worker's `consume` returned. */
  readonly consumed: ReadonlyArray<{ readonly key: string; readonly value: Claim }>
  readonly failures: ReadonlyArray<WorkerFailure>
}

/** The line a worker prints when it cannot even start (open failed, no start signal). */
export interface FatalLine {
  readonly type: "fatal"
  readonly worker: string
  readonly message: string
}

export type WorkerLine = ReadyLine | ResultLine | FatalLine
