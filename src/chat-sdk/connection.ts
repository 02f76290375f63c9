/**
 * The adapter's connection: `connect()` opens the database and its namespaces (one Effect
 * runtime per connection), every member runs on it, `disconnect()` waits for the calls in
 * flight and closes it. A member called while not connected rejects with `NotConnected`;
 * one called while `connect()` is still opening waits for it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import type { KeyedStore } from "../KeyedStore.js"
import { StateStoreError } from "../StateStoreError.js"
import { ChatStateError, type ChatStateOperation, fromStoreError } from "./ChatStateError.js"
import { type Namespaces, openNamespaces } from "./namespaces.js"

interface Open {
  readonly runtime: ManagedRuntime.ManagedRuntime<KeyedStore, StateStoreError>
  readonly namespaces: Promise<Namespaces>
  readonly inFlight: Set<Promise<unknown>>
}

/** Runs members' programs on the current connection. */
export interface Connection {
  /** Opens the database (again after a `disconnect`); concurrent calls share one opening. Rejects with `OpenFailed`, `InvalidArgument`, `Unavailable` or `Busy`, leaving it closed. */
  readonly connect: () => Promise<void>
  /** Waits for the calls in flight, then closes the database. New calls reject with `NotConnected` from its start. Never rejects. */
  readonly disconnect: () => Promise<void>
  /**
   * Runs `build()`'s program on the namespaces: a synchronous throw of `build` (a refused
   * argument) becomes the rejection, as does a store failure (mapped to a {@link ChatStateError}).
   */
  readonly run: <R>(operation: ChatStateOperation, build: () => (namespaces: Namespaces) => Effect.Effect<R, StateStoreError>) => Promise<R>
}

const rejection = (operation: ChatStateOperation, cause: Cause.Cause<StateStoreError>): ChatStateError => {
  const failure = Option.getOrUndefined(Cause.failureOption(cause))
  if (failure === undefined) return new ChatStateError("StoreFailed", operation, Cause.pretty(cause))
  if (operation === "connect" && failure.reason === "InvalidInput") return new ChatStateError("InvalidArgument", operation, failure.message, failure)
  // Opening failed for good (a database or role that does not exist, a refused login): the server answered.
  if (operation === "connect" && failure.reason !== "Unavailable" && failure.reason !== "Busy") return new ChatStateError("OpenFailed", operation, failure.message, failure)
  return fromStoreError(failure, operation)
}

/** A connection over `store` (built afresh on every `connect`), its rows owned by `owner`. */
export const makeConnection = (store: () => Layer.Layer<KeyedStore, StateStoreError>, owner: string): Connection => {
  let open: Open | undefined

  const connect = (): Promise<void> => {
    if (open === undefined) {
      const runtime = ManagedRuntime.make(store())
      const opening = runtime.runPromiseExit(openNamespaces(owner)).then((exit) => {
        if (Exit.isSuccess(exit)) return exit.value
        if (open?.runtime === runtime) open = undefined
        void runtime.dispose()
        throw rejection("connect", exit.cause)
      })
      open = { runtime, namespaces: opening, inFlight: new Set() }
    }
    return open.namespaces.then(() => undefined)
  }

  const disconnect = async (): Promise<void> => {
    const closing = open
    open = undefined
    if (closing === undefined) return
    // An opening still under way finishes first (closing the runtime under it would interrupt it mid-migration).
    await closing.namespaces.catch(() => undefined)
    await Promise.allSettled([...closing.inFlight])
    await closing.runtime.dispose().catch(() => undefined)
  }

  const run = <R>(operation: ChatStateOperation, build: () => (namespaces: Namespaces) => Effect.Effect<R, StateStoreError>): Promise<R> => {
    const current = open
    if (current === undefined) return Promise.reject(new ChatStateError("NotConnected", operation, "the state adapter is not connected: call connect() first"))
    let program: (namespaces: Namespaces) => Effect.Effect<R, StateStoreError>
    try {
      program = build()
    } catch (error) {
      return Promise.reject(error instanceof ChatStateError ? error : new ChatStateError("InvalidArgument", operation, `its arguments could not be read (${String(error)})`))
    }
    const call = current.namespaces.then(
      (namespaces) =>
        current.runtime.runPromiseExit(program(namespaces)).then((exit) => {
          if (Exit.isSuccess(exit)) return exit.value
          throw rejection(operation, exit.cause)
        }),
      // The opening this call waited for failed: the call rejects with that reason, named for itself.
      (failed: ChatStateError) => Promise.reject(new ChatStateError(failed.reason, operation, failed.message, failed))
    )
    current.inFlight.add(call)
    const forget = () => current.inFlight.delete(call)
    call.then(forget, forget)
    return call
  }

  return { connect, disconnect, run }
}

/** A store layer that fails every `connect` with `detail` (options that cannot be used). */
export const unusable = (detail: string): (() => Layer.Layer<KeyedStore, StateStoreError>) => {
  const error = new StateStoreError({ reason: "InvalidInput", operation: "open", detail })
  return () => Layer.fail(error)
}
