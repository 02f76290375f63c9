/**
 * A plugin id the store cannot use as an owner name (an npm-scoped id, or one with a capital
 * letter), with persistence on: the plugin must not start half-persistent. It once fell back
 * to memory only, and a memory-only cache decides every claim locally — two gateway instances
 * on one database then both got `Claimed` for the same message. Now building the runtime
 * fails with a typed `PluginStateConfigError` naming `pluginId` (before anything is opened), and
 * no claim is ever answered.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Logger } from "effect"
import { BlueBubblesInboundDedupe } from "../src/channels/BlueBubblesInboundDedupe.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { sqlBackends, type TestDatabase } from "./support/backends.js"

const storeOf = (db: TestDatabase): PluginRuntime.StoreLocation => (db.backend === "pg" ? { pgUrl: db.location } : { sqlitePath: db.location })
const configOn = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

/** Builds one gateway instance's runtime and claims one message with it; the build's failure, if any. */
const claimOnce = (db: TestDatabase, pluginId: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const layer = Layer.provide(
        PluginRuntime.layer({ pluginId, config: configOn(pluginId), store: storeOf(db), channels: ["bluebubbles"], whenUnreachable: "in-flight" }),
        Logger.remove(Logger.defaultLogger)
      )
      const context = yield* Layer.build(layer)
      return yield* Effect.provide(Effect.flatMap(BlueBubblesInboundDedupe, (b) => b.claim({ accountId: "acc", guid: "guid-1" })), context)
    })
  ).pipe(Effect.exit)

for (const backend of sqlBackends) {
  describe(`plugin ids the store cannot use (${backend.name})`, () => {
    for (const pluginId of ["@acme/bluebubbles", "BlueBubbles"]) {
      it.scoped(`plugin "${pluginId}" with persistence on does not start (a PluginStateConfigError naming pluginId, nothing opened), so it never claims locally`, () =>
        Effect.gen(function* () {
          const db = yield* backend.fresh
          const exits = [yield* claimOnce(db, pluginId), yield* claimOnce(db, pluginId)]
          for (const exit of exits) {
            expect(Exit.isFailure(exit)).toBe(true)
            const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
            expect(error).toMatchObject({ _tag: "PluginStateConfigError", path: "pluginId" })
            expect(String((error as Error).message)).toContain(`pluginId is ${JSON.stringify(pluginId)}: expected an owner name`)
          }
        })
      )
    }
  })
}
