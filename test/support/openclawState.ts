/**
 * What the OpenClaw adapter suites share: the plugin state on a test database of any backend
 * (memory through `store`, SQLite through `sqlitePath`, PostgreSQL through `pgUrl`: the paths a
 * user takes), closed when the test ends.
 */
import { Effect } from "effect"
import { createOpenClawState, type OpenClawState } from "../../src/openclaw/index.js"
import type { BackendFactory, TestDatabase } from "./backends.js"

/** The plugin state of `pluginId` on `db`. */
export const stateOn = (db: TestDatabase, pluginId = "discord"): OpenClawState =>
  db.backend === "memory"
    ? createOpenClawState({ pluginId, store: db.store() })
    : db.backend === "sqlite"
      ? createOpenClawState({ pluginId, sqlitePath: db.location! })
      : createOpenClawState({ pluginId, pgUrl: db.location! })

/** Runs `body` with a fresh database of `backend` and the plugin state "discord" on it (closed afterwards). */
export const withState = (backend: BackendFactory, body: (state: OpenClawState, db: TestDatabase) => Promise<void>) =>
  Effect.scoped(
    Effect.flatMap(backend.fresh, (db) =>
      Effect.acquireUseRelease(
        Effect.sync(() => stateOn(db)),
        (state) => Effect.promise(() => body(state, db)),
        (state) => Effect.promise(() => state.close())
      )
    )
  )
