/**
 * One of the pool's connections, kept by a PostgreSQL store for the statements it runs
 * outside transactions. Taking a pooled connection for every statement and giving it back
 * costs about as much as the statement's round trip itself (measured: a point SELECT 202 µs
 * through the pool's reservation, 112 µs on a connection already held, 101 µs raw `pg`); a
 * store whose operations come one after another runs them all on this one instead.
 *
 * It serves one statement at a time: a statement that finds it busy (or the store closing)
 * runs on a pooled connection of its own, as before, so concurrent operations never queue
 * behind each other here. A failed statement gives the connection back to the pool and the
 * next statement takes a fresh one; an interrupted one still running there, or one whose
 * connection was lost, ends it first (see `executeEndingOn`), so the pool never hands it out
 * again. A statement the driver refused to send because the connection had already died
 * ("… is not queryable": nothing reached the server) runs again on a pooled connection. One the
 * driver sent before it read the server's goodbye fails with the server's SQLSTATE (57P01: the
 * command did not run), which the store retries as it retries any dropped connection. With `maxAgeMillis` (the pool's
 * `connectionTTL`) the connection is given back once held that long (the pool then retires it:
 * within twice its `connectionTTL` of being opened); with `maxIdleMillis` (the pool's
 * `idleTimeout`) it is closed once idle that long, as the pool closes an idle connection — one
 * idle longer may have been forgotten by a firewall or NAT on the way.
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
import { discard, executeEndingOn, executePooled } from "./pgPrepared.js"
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
    // Every held connection's scope is forked from this one, made before the finalizer below:
    // closing the store runs that finalizer first (no statement takes the held connection, or
    // a new one, from then on), and only then gives the held connection back.
    const reservations = yield* Scope.fork(storeScope, ExecutionStrategy.sequential)
    // One statement at a time on the held connection: `held` is written only under `lock`, and
    // by the finalizer, which also alone writes `closed`.
    const lock = makeMutex()
    let held: Held | undefined
    let closed = false
    yield* Scope.addFinalizer(
      storeScope,
      Effect.sync(() => {
        closed = true
        held = undefined
      })
    )
    const retire = Effect.suspend(() => {
      const last = held
      held = undefined
      return last === undefined ? Effect.void : Scope.close(last.scope, Exit.void)
    })
    const reserve: Effect.Effect<Held, SqlError> = Effect.flatMap(Scope.fork(reservations, ExecutionStrategy.sequential), (scope) =>
      Scope.extend(sql.reserve, scope).pipe(
        Effect.map((connection): Held => {
          const now = performance.now()
          return { connection, scope, since: now, lastUsed: now }
        }),
        Effect.tapErrorCause(() => Scope.close(scope, Exit.void))
      )
    )
    /**
     * The held connection, taken (or renewed: too old, or idle too long) first when needed;
     * `None` when the store closed meanwhile (the statement then runs as if nothing were held).
     */
    const current: Effect.Effect<Option.Option<Held>, SqlError> = Effect.suspend(() => {
      const now = performance.now()
      const idleTooLong = held !== undefined && options.maxIdleMillis !== undefined && now - held.lastUsed >= options.maxIdleMillis
      if (held !== undefined && !idleTooLong && (options.maxAgeMillis === undefined || now - held.since < options.maxAgeMillis)) return Effect.succeed(Option.some(held))
      // Idle too long: ended, not given back (the pool would hand this very one out again).
      const giveUp = idleTooLong && held !== undefined ? Effect.zipRight(discard(held.connection), retire) : retire
      return Effect.zipRight(
        giveUp,
        Effect.flatMap(reserve, (fresh) => {
          if (closed) return Effect.as(Scope.close(fresh.scope, Exit.void), Option.none())
          held = fresh
          return Effect.succeed(Option.some(fresh))
        })
      )
    })
    /** Runs `statement` on the held connection (the lock is held); only the statement itself is interruptible. */
    const onHeld = <R extends object>(statement: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(
          Effect.exit(
            Effect.flatMap(current, (h) => (Option.isSome(h) ? restore(executeEndingOn<R>(h.value.connection, statement)) : restore(executePooled<R>(sql, statement))))
          ),
          (exit) => {
            if (Exit.isSuccess(exit)) {
              if (held !== undefined) held.lastUsed = performance.now()
              return exit
            }
            const unsent = Option.exists(Cause.failureOption(exit.cause), neverSent) && !Cause.isInterrupted(exit.cause)
            return Effect.zipRight(retire, unsent ? restore(executePooled<R>(sql, statement)) : exit)
          }
        )
      )
    return <R extends object = Record<string, unknown>>(statement: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
      Effect.suspend(() =>
        closed
          ? executePooled<R>(sql, statement)
          : Effect.flatMap(lock.withLockIfFree(onHeld<R>(statement)), (ran) => (Option.isSome(ran) ? Effect.succeed(ran.value) : executePooled<R>(sql, statement)))
      )
  })
