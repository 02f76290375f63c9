/**
 * One of the pool's connections, kept by a PostgreSQL store for the statements it runs
 * outside transactions. Taking a pooled connection for every statement and giving it back
 * costs about as much as the statement's round trip itself (measured: a point SELECT 202 µs
 * through the pool's reservation, 112 µs on a connection already held, 101 µs raw `pg`); a
 * store whose operations come one after another runs them all on this one instead.
 *
 * It serves one statement at a time: a statement that finds it busy (or the store closing)
 * runs on a pooled connection of its own, as before, so concurrent operations never queue
 * behind each other here. A failed or interrupted statement gives the connection back to the
 * pool (which drops one that lost its server) and the next statement takes a fresh one; a
 * statement the driver refused to send because the connection had already died ("… is not
 * queryable": nothing reached the server) runs again on a pooled connection, so a connection
 * the server dropped while idle never fails an operation. With `maxAgeMillis` (the pool's
 * `connectionTTL`) the connection is given back once it is that old; with `maxIdleMillis` (the
 * pool's `idleTimeout`) it is closed once it has been idle that long, as the pool would close it.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { makeMutex } from "./mutex.js"
import { discard, discardIfBusy, executePooled, executePreparedOn } from "./pgPrepared.js"
import type { SqlText } from "./sqlStatements.js"
import type { Execute } from "./sqlTransaction.js"

interface Held {
  readonly connection: Connection
  /** The reservation's own scope: closing it gives the connection back to the pool. */
  readonly scope: Scope.CloseableScope
  readonly since: number
  /** When its last statement ended (see `maxIdleMillis`). */
  lastUsed: number
}

/** Whether the driver refused `error`'s statement before sending it: its connection had died or been closed. */
const neverSent = (error: SqlError): boolean => {
  const cause = error.cause
  return cause instanceof Error && cause.message.endsWith("is not queryable")
}

/**
 * Runs statements outside transactions (see `makePgExecute`), built in the store's scope: the
 * held connection is given back when it closes. A statement runs on the held connection when
 * it is free, else on a pooled connection reserved for it alone, as a named prepared
 * statement (see pgPrepared). Taking a connection is never interrupted (the client's `reserve`
 * cannot give back one that arrives after its waiter was interrupted); the statement itself
 * is (the driver cancels it).
 */
export const makeHeldConnection = (
  sql: SqlClient,
  options: { readonly maxAgeMillis?: number | undefined; readonly maxIdleMillis?: number | undefined } = {}
): Effect.Effect<Execute, never, Scope.Scope> =>
  Effect.gen(function* () {
    const storeScope = yield* Effect.scope
    // One statement at a time on the held connection: `held` is written only under `lock`;
    // `closed` only by the finalizer.
    const lock = makeMutex()
    let held: Held | undefined
    let closed = false
    const retire = Effect.suspend(() => {
      const last = held
      held = undefined
      return last === undefined ? Effect.void : Scope.close(last.scope, Exit.void)
    })
    // The held connection's own scope is a child of the store's: it is given back when the store
    // closes, and no statement takes a new one after that.
    yield* Scope.addFinalizer(
      storeScope,
      Effect.sync(() => {
        closed = true
      })
    )
    const reserve: Effect.Effect<Held, SqlError> = Effect.flatMap(Scope.fork(storeScope, ExecutionStrategy.sequential), (scope) =>
      Scope.extend(sql.reserve, scope).pipe(
        Effect.map((connection): Held => {
          const now = performance.now()
          return { connection, scope, since: now, lastUsed: now }
        }),
        Effect.tapErrorCause(() => Scope.close(scope, Exit.void))
      )
    )
    /** The held connection, taken (or renewed, when too old) first when needed. */
    const current: Effect.Effect<Held, SqlError> = Effect.suspend(() => {
      const now = performance.now()
      // Idle longer than the pool keeps an idle connection: closed, as the pool would have closed
      // it (given back, the pool would hand this very one out again) — a connection idle that
      // long is the one a firewall or NAT may have forgotten without a word, and a statement sent
      // on it could only fail "may or may not have been applied".
      const idleTooLong = held !== undefined && options.maxIdleMillis !== undefined && now - held.lastUsed >= options.maxIdleMillis
      if (held !== undefined && !idleTooLong && (options.maxAgeMillis === undefined || now - held.since < options.maxAgeMillis)) return Effect.succeed(held)
      return Effect.zipRight(
        idleTooLong && held !== undefined ? Effect.zipRight(discard(held.connection), retire) : retire,
        Effect.map(reserve, (fresh) => {
          held = fresh
          return fresh
        })
      )
    })
    /** Runs `statement` on the held connection (the lock is held); only the statement itself is interruptible. */
    const onHeld = <R extends object>(statement: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.exit(Effect.flatMap(current, (h) => restore(executePreparedOn<R>(h.connection, statement)))), (exit) => {
          if (Exit.isSuccess(exit)) {
            if (held !== undefined) held.lastUsed = performance.now()
            return exit
          }
          const interrupted = Cause.isInterrupted(exit.cause)
          const unsent = Option.exists(Cause.failureOption(exit.cause), neverSent) && !interrupted
          // Interrupted with the statement still running on it: ended, not given back (see discardIfBusy).
          const discard = interrupted && held !== undefined ? discardIfBusy(held.connection) : Effect.void
          return Effect.zipRight(Effect.zipRight(discard, retire), unsent ? restore(executePooled<R>(sql, statement)) : exit)
        })
      )
    return <R extends object = Record<string, unknown>>(statement: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
      Effect.suspend(() =>
        closed
          ? executePooled<R>(sql, statement)
          : Effect.flatMap(lock.withLockIfFree(onHeld<R>(statement)), (ran) => (Option.isSome(ran) ? Effect.succeed(ran.value) : executePooled<R>(sql, statement)))
      )
  })
