/**
 * Group commit: concurrent requests of one kind on one namespace run as one batch. The
 * requests wait in a queue; one fiber takes every request waiting (up to `maxBatch`), runs
 * them as one batch — one transaction, one lock, one multi-row statement — and answers each.
 * While a batch runs, the next one gathers, so a burst costs a few transactions instead of
 * one per request. A lone request — nothing queued, no batch running — runs at once as a batch
 * of one in the caller's own fiber, with no hop to the batching fiber and back.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { makeMutex } from "./mutex.js"

interface Waiting<Req, Res, E> {
  readonly request: Req
  readonly answer: Deferred.Deferred<Res, E>
}

/**
 * Starts the batching fiber in `scope`; `submit(request)` waits for its answer. `run` answers
 * a batch, one result per request in order; if it fails, every request of the batch fails
 * with that error. One batch runs at a time, queued or inline. When the scope closes, the
 * queued batch running and the requests still waiting fail with `closed`, and later requests
 * fail with it at once: every waiter is answered. A request running inline belongs to its
 * caller: interrupting the caller interrupts it (its transaction rolls back).
 */
export const makeCoalescer = <Req, Res, E>(
  run: (batch: ReadonlyArray<Req>) => Effect.Effect<ReadonlyArray<Res>, E>,
  options: {
    readonly maxBatch: number
    readonly closed: E
    readonly scope: Scope.Scope
    /** Wraps a queued request's wait, in the caller's fiber (its span: the batch itself runs on the batching fiber). */
    readonly whileQueued?: (wait: Effect.Effect<Res, E>) => Effect.Effect<Res, E>
    /** How a lone request runs, inline (default: as a batch of one). */
    readonly alone?: (request: Req) => Effect.Effect<Res, E>
    /** Runs in the caller's fiber before a request joins the queue: `Some` answers it there and then, and it never waits for the others. */
    readonly beforeQueued?: (request: Req) => Effect.Effect<Option.Option<Res>, E>
  }
) =>
  Effect.gen(function* () {
    const queue = yield* Queue.unbounded<Waiting<Req, Res, E>>()
    // One batch at a time, queued or inline: the batching fiber holds it while it runs a batch,
    // a lone request while it runs as one. `batchPending` is written only by the batching fiber
    // (a batch taken, until it is answered), `closed` only by the finalizer.
    const running = makeMutex()
    let batchPending = false
    let closed = false
    // Every queued request not answered yet, written only by `enqueue` (adds) and `answerAll`
    // (removes): closing answers what is left here, wherever it was — in the queue, in a batch,
    // or in hand to a batching fiber interrupted as the queue passed it over.
    const unanswered = new Set<Waiting<Req, Res, E>>()
    const answerAll = (batch: Iterable<Waiting<Req, Res, E>>, exit: Exit.Exit<ReadonlyArray<Res>, E>) =>
      Effect.sync(() => {
        let i = 0
        // Deleting the entry just visited is safe while iterating the set itself.
        for (const waiting of batch) {
          const at = i++
          unanswered.delete(waiting)
          Deferred.unsafeDone(waiting.answer, Exit.map(exit, (results) => results[at] as Res))
        }
      })
    const closedExit = Exit.fail(options.closed)
    // A batch taken is answered however the fiber ends: it is taken, and from then on handled,
    // with interruption masked (interrupted between the two, its callers would wait forever).
    const loop = Effect.forever(
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(Queue.takeBetween(queue, 1, options.maxBatch)), (taken) => {
          const batch = Chunk.toReadonlyArray(taken)
          batchPending = true
          return Effect.flatMap(
            Effect.exit(restore(running.withLock(run(batch.map((waiting) => waiting.request)))).pipe(Effect.onInterrupt(() => answerAll(batch, closedExit)))),
            (exit) => (Exit.isInterrupted(exit) ? Effect.interrupt : answerAll(batch, exit))
          ).pipe(
            Effect.ensuring(
              Effect.sync(() => {
                batchPending = false
              })
            )
          )
        })
      )
    )
    yield* Scope.addFinalizer(
      options.scope,
      Effect.suspend(() => {
        closed = true
        return Effect.zipRight(answerAll(unanswered, closedExit), Queue.shutdown(queue))
      })
    )
    yield* Effect.forkIn(Effect.interruptible(loop), options.scope)
    const enqueue = (request: Req): Effect.Effect<Res, E> =>
      Effect.flatMap(Deferred.make<Res, E>(), (answer) => {
        // Closed since `submit` looked: the finalizer has answered everyone it will.
        if (closed) return Effect.fail(options.closed)
        const waiting = { request, answer }
        unanswered.add(waiting)
        return Effect.zipRight(Queue.offer(queue, waiting), Deferred.await(answer))
      })
    const { whileQueued, beforeQueued } = options
    const inQueue = whileQueued === undefined ? enqueue : (request: Req) => whileQueued(enqueue(request))
    const queued =
      beforeQueued === undefined
        ? inQueue
        : (request: Req) => Effect.flatMap(beforeQueued(request), (answer) => (Option.isSome(answer) ? Effect.succeed(answer.value) : inQueue(request)))
    const runAlone = options.alone ?? ((request: Req) => Effect.map(run([request]), (results) => results[0] as Res))
    /** The request alone, in the caller's fiber, if nothing else is queued or running; `None` otherwise. */
    const alone = (request: Req) => running.withLockIfFree(runAlone(request))
    return {
      /**
       * Answers `request`: at once in the caller's fiber when it is alone (`alone`), otherwise
       * in the next batch (unless `beforeQueued` answers it first). Fails with `closed` once the
       * scope has closed.
       */
      submit: (request: Req): Effect.Effect<Res, E> =>
        Effect.suspend(() => {
          if (closed) return Effect.fail(options.closed)
          if (batchPending || Option.getOrElse(queue.unsafeSize(), () => 1) > 0) return queued(request)
          return Effect.flatMap(alone(request), (answered) => (Option.isSome(answered) ? Effect.succeed(answered.value) : queued(request)))
        })
    }
  })
