/**
 * What the Chat SDK adapter suites share: a state adapter on a fresh test database, with a
 * clock the test moves. Subjects: the Chat SDK's own memory adapter (the reference: its
 * `Date.now` is the one moved), and ours over SQLite and PostgreSQL (through the `store`
 * option with an explicit clock; PostgreSQL on the application clock, so the test's clock
 * decides expiry there too). Each test gets a new database.
 */
import * as path from "node:path"
import { createMemoryState } from "@chat-adapter/state-memory"
import type { QueueEntry, StateAdapter } from "chat"
import { Effect, Scope } from "effect"
import { vi } from "vitest"
import { ChatStateError, createChatState } from "../../src/chat-sdk/index.js"
import * as PgStore from "../../src/layers/store/PgStore.js"
import * as SqliteStore from "../../src/layers/store/SqliteStore.js"
import { freshPgDatabase, pgUrl, tempDir } from "./backends.js"

/** A clock a test moves by hand (epoch milliseconds). */
export interface ManualClock {
  readonly now: () => number
  readonly advance: (ms: number) => void
}

export const manualClock = (start = Date.UTC(2026, 0, 1)): ManualClock => {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    }
  }
}

/** One adapter under test, connected; `another` is a second adapter on the same database (none for memory). */
export interface Subject {
  readonly state: StateAdapter
  readonly clock: ManualClock
  /** A further adapter on the same database and clock, connected (another process, as far as the store can tell). */
  readonly another: () => Promise<StateAdapter>
}

export interface SubjectKind {
  readonly name: string
  /** Whether state survives `disconnect()` + `connect()` (ours: yes; the memory adapter clears it). */
  readonly durable: boolean
  /** A connected subject on a fresh database, disconnected when the scope closes. */
  readonly open: Effect.Effect<Subject, never, Scope.Scope>
}

const connected = (make: () => StateAdapter) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const state = make()
      await state.connect()
      return state
    }),
    (state) => Effect.promise(() => state.disconnect())
  )

/** The subject of `make` (each call one adapter on the same database), with its scope. */
const subjectOf = (clock: ManualClock, make: () => StateAdapter) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const state = yield* connected(make)
    return { state, clock, another: () => Effect.runPromise(connected(make).pipe(Scope.extend(scope))) } satisfies Subject
  })

export const memoryReference: SubjectKind = {
  name: "the memory adapter (reference)",
  durable: false,
  open: Effect.gen(function* () {
    const clock = manualClock()
    yield* Effect.acquireRelease(
      Effect.sync(() => vi.spyOn(Date, "now").mockImplementation(clock.now)),
      (spy) => Effect.sync(() => spy.mockRestore())
    )
    const state = createMemoryState()
    yield* Effect.acquireRelease(
      Effect.promise(() => state.connect()),
      () => Effect.promise(() => state.disconnect())
    )
    return { state, clock, another: () => Promise.reject(new Error("the memory adapter has no second process")) }
  })
}

export const oursOnSqlite: SubjectKind = {
  name: "ours on SQLite",
  durable: true,
  open: Effect.gen(function* () {
    const dir = yield* tempDir
    const clock = manualClock()
    const filename = path.join(dir, "chat.sqlite")
    return yield* subjectOf(clock, () => createChatState({ store: SqliteStore.layer({ filename, maxValueBytes: 8 * 1024 * 1024 }), now: clock.now }))
  })
}

export const oursOnPg = (baseUrl: string): SubjectKind => ({
  name: "ours on PostgreSQL",
  durable: true,
  open: Effect.gen(function* () {
    const { url } = yield* freshPgDatabase(baseUrl)
    const clock = manualClock()
    return yield* subjectOf(clock, () => createChatState({ store: PgStore.layer({ url, clock: "application", maxValueBytes: 8 * 1024 * 1024 }), now: clock.now }))
  })
})

/** Our adapter on every SQL backend this run reaches (PostgreSQL when CHANNEL_STATE_TEST_PG_URL is set). */
export const ours: ReadonlyArray<SubjectKind> = pgUrl ? [oursOnSqlite, oursOnPg(pgUrl)] : [oursOnSqlite]

/** Runs `body` on a fresh subject of `kind`, closed afterwards. */
export const withSubject = (kind: SubjectKind, body: (subject: Subject) => Promise<void>) =>
  Effect.scoped(Effect.flatMap(kind.open, (subject) => Effect.promise(() => body(subject))))

/** A queue entry whose message is `{ id }`, enqueued at `now` and expiring 90 s later. */
export const entry = (id: string, now: number): QueueEntry => ({ message: { id } as never, enqueuedAt: now, expiresAt: now + 90_000 })

/** The id of a dequeued entry's message (`null` for no entry). */
export const idOf = (queued: QueueEntry | null) => (queued?.message as { id?: string } | undefined)?.id ?? null

/** A rejection as `"<reason> <operation>"`, or what it was when it is not a {@link ChatStateError}. */
export const reasonOf = (error: unknown) => (error instanceof ChatStateError ? `${error.reason} ${error.operation}` : `not a ChatStateError: ${String(error)}`)
