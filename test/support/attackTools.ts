/** Tools the attack suites share: a replayable random source and a bound that turns a hang into a failure. */
import { Effect, Option } from "effect"

/** A deterministic PRNG (mulberry32): `random(n)` is a whole number below `n`; a failing mix can be replayed from its seed. */
export const prng = (seed: number) => {
  let a = seed >>> 0
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n)
  }
}

/**
 * A bound on a wait that a leaked lock or a lost wake-up would make endless: a hang fails the
 * test (a defect naming `what`) instead of timing it out. Disconnected: a wait that cannot be
 * interrupted (a transaction waiting for the writer lock, which `@effect/sql` acquires
 * uninterruptibly) is left behind, not waited for.
 */
export const bounded = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>, seconds = 60) =>
  Effect.flatMap(Effect.timeoutOption(Effect.disconnect(effect), `${seconds} seconds`), (answer) =>
    Option.isSome(answer) ? Effect.succeed(answer.value) : Effect.dieMessage(`hung: ${what} did not finish within ${seconds} s (a lock never released?)`)
  )
