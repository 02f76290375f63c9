/**
 * Concurrent lookups of one PostgreSQL namespace, coalesced: a lone lookup runs at once as
 * itself (its own statement, in its caller's fiber); lookups that arrive while one is out on
 * the network wait and go together as one `lookupMany` statement. A burst of a thousand costs
 * a few round trips instead of a thousand, each on a pooled connection. On SQLite a lookup
 * never suspends (the reader answers synchronously), so nothing could ever wait to be
 * coalesced: there lookups run as themselves.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Option from "effect/Option"
import { StateStoreError } from "../../StateStoreError.js"
import { makeCoalescer } from "./coalescer.js"
import { CHUNK, type SqlHandleCore } from "./sqlHandleCore.js"
import { checkKey } from "./storeRules.js"

type Lookup<A> = (key: string) => Effect.Effect<Option.Option<A>, StateStoreError>
type LookupMany<A> = (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Either.Either<Option.Option<A>, StateStoreError>>, StateStoreError>

/** A coalesced lookup's error, named for what its caller called. */
const asLookup = (error: StateStoreError) => (error.operation === "lookup" ? error : new StateStoreError({ ...error, operation: "lookup" }))

/**
 * The namespace's `lookup`: `single` itself on SQLite; on PostgreSQL, `single` for a lookup
 * that is alone and one `many` for those that waited together (each caller gets its own
 * value, or its own error: a row that no longer decodes fails only the lookups of its key).
 */
export const makeLookupCoalescing = <A>(core: SqlHandleCore<A>, single: Lookup<A>, many: LookupMany<A>): Effect.Effect<Lookup<A>> =>
  core.ctx.dialect.backend === "sqlite"
    ? Effect.succeed(single)
    : Effect.map(
        makeCoalescer(
          (keys: ReadonlyArray<string>) =>
            keys.length === 1
              ? Effect.map(Effect.either(single(keys[0]!)), (answer) => [answer])
              : Effect.mapBoth(many(keys), { onFailure: asLookup, onSuccess: (answers) => answers.map(Either.mapLeft(asLookup)) }),
          {
            maxBatch: CHUNK,
            scope: core.ctx.scope,
            closed: new StateStoreError({ reason: "Unavailable", operation: "lookup", detail: "the store was closed", ...core.at })
          }
        ),
        (lookups) =>
          (key: string) => {
            // Checked before it joins others: one bad key must not fail the lookups it would wait with.
            const problem = checkKey(core.ns, "lookup", key)
            return problem ? Effect.fail(problem) : Effect.flatMap(lookups.submit(key), (answer) => answer)
          }
      )
