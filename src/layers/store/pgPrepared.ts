/**
 * PostgreSQL statements as named prepared statements, run on a connection itself: the text is
 * parsed once per connection (pg keeps the parsed statement per connection and parses it again
 * on a new one), and the client's statement compiler, per-statement span and acquirer are
 * skipped — one round trip, as raw `pg` makes it.
 *
 * `@effect/sql-pg`'s connection hands what it is given as the statement straight to
 * `pg`'s `client.query(config, values)`, which takes a query config (`{ name, text }`) as
 * readily as a string: that is how a statement gets its name here.
 *
 * @internal
 */
import { type SqlClient, TransactionConnection } from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { classify } from "./sqlFailure.js"
import type { SqlText } from "./sqlStatements.js"
import type { Execute } from "./sqlTransaction.js"

/**
 * Distinct statement texts that get a name, process-wide. The store's statements of a fixed
 * shape are a few dozen (and short statements built per row count a few more); past this
 * bound a statement runs unnamed, so a connection never accumulates prepared statements
 * without bound.
 */
const MAX_NAMED = 256
/**
 * The longest text that gets a name: multi-row statements (a batch's upsert, claims of many
 * keys) run unnamed, so the server never keeps large plans per connection for them — their
 * parse is paid once for many rows anyway.
 */
const MAX_NAMED_TEXT = 4096
const names = new Map<string, string>()

/**
 * The name of `text`'s prepared statement, or `undefined` past {@link MAX_NAMED} or for a text
 * longer than {@link MAX_NAMED_TEXT}. One name per text for the whole process: pg refuses a
 * name prepared on a connection with another text.
 */
const nameOf = (text: string): string | undefined => {
  if (text.length > MAX_NAMED_TEXT) return undefined
  let name = names.get(text)
  if (name === undefined && names.size < MAX_NAMED) {
    name = `channel_state_${names.size + 1}`
    names.set(text, name)
  }
  return name
}

/**
 * Runs `statement` on `connection` as a named prepared statement (unnamed past the bound):
 * one round trip; a failure is the driver's, as a `SqlError`.
 */
export const executePreparedOn = <R extends object = Record<string, unknown>>(
  connection: Connection,
  statement: SqlText
): Effect.Effect<ReadonlyArray<R>, SqlError> => {
  const name = nameOf(statement.text)
  // A fresh config per call: pg stores the values on the object it is given.
  const query = name === undefined ? statement.text : ({ name, text: statement.text } as unknown as string)
  return connection.execute(query, statement.params, undefined) as Effect.Effect<ReadonlyArray<R>, SqlError>
}

/**
 * Runs `statement` on a pooled connection reserved for it alone and given back after (a
 * connection the server dropped is not given back: the pool replaces it), as a named prepared
 * statement in autocommit, exactly as the client's own `unsafe` runs it outside a transaction.
 * Interruptible while the statement runs (the driver cancels it); taking the connection is
 * not — the client's `reserve` cannot give back a connection that arrives after its waiter was
 * interrupted.
 */
export const executePooled = <R extends object = Record<string, unknown>>(sql: SqlClient, statement: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
  Effect.uninterruptibleMask((restore) => Effect.scoped(Effect.flatMap(sql.reserve, (connection) => restore(executeEndingOn<R>(connection, statement)))))

/**
 * {@link executePreparedOn} on a connection the caller reserved and will give back: interrupted
 * with the statement still running there, or failed because the connection was lost, it ends
 * the connection first (see {@link discardIfBusy}, {@link discardIfLost}), so that what is given
 * back is never handed out again by the pool.
 */
export const executeEndingOn = <R extends object = Record<string, unknown>>(connection: Connection, statement: SqlText): Effect.Effect<ReadonlyArray<R>, SqlError> =>
  executePreparedOn<R>(connection, statement).pipe(
    Effect.onInterrupt(() => discardIfBusy(connection)),
    Effect.tapError((error) => discardIfLost(connection, error))
  )

/**
 * The parts of `pg`'s client under a reserved connection that tell whether a statement still
 * runs on it, and end it: `@effect/sql-pg` 0.53 keeps the client as `pg`, whose own fields
 * (pg 8) are read as pg-pool reads them. Where they are missing, nothing is ended: the
 * connection is given back, as before.
 */
interface PgClientState {
  readonly _activeQuery?: unknown
  readonly _queryQueue?: ReadonlyArray<unknown>
  readonly end?: () => Promise<void>
}

/**
 * After a statement on `connection` was interrupted: when it still runs there (sql-pg's cancel
 * gives up after 5 s, or waits for a pooled connection it never gets, and the interruption then
 * ends with the statement still running and the cancel still queued in the pool), the
 * connection is ended instead of given back — given back, the pool would hand it on with the
 * statement still running (the next statement would wait behind it) and the late cancel would
 * cancel whatever runs on it by then. Ended, the pool drops it when it is released.
 */
export const discardIfBusy = (connection: Connection): Effect.Effect<void> => discardWhen(connection, (client) => client._activeQuery != null || (client._queryQueue?.length ?? 0) > 0)

/**
 * After a statement on `connection` failed because the connection was lost (the server ended
 * the session — 57P01 — or the socket dropped): the connection is ended, so that the pool
 * drops it when it is released. Given back at once, before the client has read the server's
 * goodbye, the pool would hand the dead connection to the next statement, which the driver
 * would then send into a closed socket — and a write sent so may or may not have landed.
 */
export const discardIfLost = (connection: Connection, error: SqlError): Effect.Effect<void> =>
  classify(error).kind === "unavailable" ? discard(connection) : Effect.void

/** Ends `connection`'s client, so that the pool drops it when it is released instead of handing it out again. */
export const discard = (connection: Connection): Effect.Effect<void> => discardWhen(connection, () => true)

const discardWhen = (connection: Connection, when: (client: PgClientState) => boolean): Effect.Effect<void> =>
  Effect.sync(() => {
    const client = (connection as { readonly pg?: PgClientState }).pg
    if (client === undefined || typeof client.end !== "function") return
    if (when(client)) client.end().catch(() => undefined)
  })

/**
 * The store's statement runner on PostgreSQL: inside a transaction, on the transaction's
 * connection; outside one, by `outside` (a store's held connection, see pgHeldConnection),
 * else on a pooled connection reserved for the statement ({@link executePooled}). Always a
 * named prepared statement: one round trip.
 */
export const makePgExecute =
  (sql: SqlClient, outside?: Execute | undefined): Execute =>
  <R extends object = Record<string, unknown>>(statement: SqlText) =>
    Effect.flatMap(Effect.serviceOption(TransactionConnection), (transaction) =>
      Option.isSome(transaction)
        ? executePreparedOn<R>(transaction.value[0], statement)
        : outside === undefined
          ? executePooled<R>(sql, statement)
          : outside<R>(statement)
    )
