/**
 * Concurrent lookups of one PostgreSQL namespace, coalesced: a lone lookup runs at once as
 * itself (its own statement, in its caller's fiber); lookups that arrive while one is out on
 * the network wait and go together as one read of all their keys. A burst of a thousand costs
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
import { withOperationSpan } from "./operationSpan.js"
import { CHUNK, type SqlHandleCore } from "./sqlHandleCore.js"
import { checkKey } from "./storeRules.js"

type Lookup<A> = (key: string) => Effect.Effect<Option.Option<A>, StateStoreError>
type ReadLive<A> = (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Either.Either<Option.Option<A>, StateStoreError>>, StateStoreError>

/** A coalesced lookup's answer: its own, or that its row no longer decodes (its caller's own lookup reports and removes it). */
type Answer<A> = Either.Either<Option.Option<A>, StateStoreError> | "corrupt"

/**
 * The namespace's `lookup`: `single` itself on SQLite; on PostgreSQL, `single` for a lookup
 * that is alone and one `readLive` for those that waited together. Each caller gets exactly
 * what `single` would give it: its value, its own `Corrupt` (a row that no longer decodes is
 * looked up again by its own caller, who reports and removes it: the others never wait for
 * the namespace's lock), and a failure of the shared read named for its own key. A waiting
 * lookup's span is made in its caller's fiber. Limit: the keys read together are judged live
 * by the time of the batching fiber's clock (the store's), not each caller's `Clock`.
 */
export const makeLookupCoalescing = <A>(core: SqlHandleCore<A>, single: Lookup<A>, readLive: ReadLive<A>): Effect.Effect<Lookup<A>> =>
  core.ctx.dialect.backend === "sqlite"
    ? Effect.succeed(single)
    : Effect.map(
        makeCoalescer(
          (keys: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Answer<A>>, StateStoreError> =>
            keys.length === 1
              ? Effect.map(Effect.either(single(keys[0]!)), (answer) => [answer])
              : Effect.map(readLive(keys), (answers) => answers.map((answer) => (Either.isLeft(answer) && answer.left.reason === "Corrupt" ? "corrupt" : answer))),
          {
            maxBatch: CHUNK,
            scope: core.ctx.scope,
            closed: new StateStoreError({ reason: "Unavailable", operation: "lookup", detail: "the store was closed", ...core.at }),
            whileQueued: withOperationSpan("KeyedStore.lookup", { owner: core.ns.owner, namespace: core.ns.namespace, backend: core.ctx.dialect.backend, coalesced: true })
          }
        ),
        (lookups) =>
          (key: string) => {
            // Checked before it joins others: one bad key must not fail the lookups it would wait with.
            const problem = checkKey(core.ns, "lookup", key)
            if (problem) return Effect.fail(problem)
            return lookups.submit(key).pipe(
              Effect.mapError((error) => new StateStoreError({ ...error, operation: "lookup", key })),
              Effect.flatMap((answer) => (answer === "corrupt" ? single(key) : answer))
            )
          }
      )
