/**
 * Group commit: concurrent requests of one kind on one namespace run as one batch. The
 * requests wait in a queue; one fiber takes every request waiting (up to `maxBatch`), runs
 * them as one batch — one transaction, one lock, one multi-row statement — and answers each.
 * While a batch runs, the next one gathers, so a burst costs a few transactions instead of
 * one per request; a lone request runs at once, with no window to wait for.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"

interface Waiting<Req, Res, E> {
  readonly request: Req
  readonly answer: Deferred.Deferred<Res, E>
}

/**
 * Starts the batching fiber in `scope`; `submit(request)` waits for its answer. `run` answers
 * a batch, one result per request in order; if it fails, every request of the batch fails
 * with that error. When the scope closes, the batch running and the requests still waiting
 * fail with `closed`: every waiter is answered.
 */
export const makeCoalescer = <Req, Res, E>(
  run: (batch: ReadonlyArray<Req>) => Effect.Effect<ReadonlyArray<Res>, E>,
  options: { readonly maxBatch: number; readonly closed: E; readonly scope: Scope.Scope }
) =>
  Effect.gen(function* () {
    const queue = yield* Queue.unbounded<Waiting<Req, Res, E>>()
    const answerAll = (batch: ReadonlyArray<Waiting<Req, Res, E>>, exit: Exit.Exit<ReadonlyArray<Res>, E>) =>
      Effect.forEach(batch, (waiting, i) => Deferred.done(waiting.answer, Exit.map(exit, (results) => results[i] as Res)), { discard: true })
    const closedExit = Exit.fail(options.closed)
    const loop = Effect.forever(
      Effect.flatMap(Queue.takeBetween(queue, 1, options.maxBatch), (taken) => {
        const batch = Chunk.toReadonlyArray(taken)
        return Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(
            Effect.exit(restore(run(batch.map((waiting) => waiting.request))).pipe(Effect.onInterrupt(() => answerAll(batch, closedExit)))),
            (exit) => (Exit.isInterrupted(exit) ? Effect.interrupt : answerAll(batch, exit))
          )
        )
      })
    )
    yield* Scope.addFinalizer(
      options.scope,
      Effect.flatMap(Queue.takeAll(queue), (left) => Effect.zipRight(answerAll(Chunk.toReadonlyArray(left), closedExit), Queue.shutdown(queue)))
    )
    yield* Effect.forkIn(Effect.interruptible(loop), options.scope)
    return {
      /** Queues `request` for the next batch and waits for its answer. */
      submit: (request: Req): Effect.Effect<Res, E> =>
        Effect.flatMap(Deferred.make<Res, E>(), (answer) => Effect.zipRight(Queue.offer(queue, { request, answer }), Deferred.await(answer)))
    }
  })
