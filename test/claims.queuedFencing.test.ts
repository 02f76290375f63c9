/**
 * Tried to break ("queued ones stay fenced"; "a late release never deletes ... ";
 * finalize/release act only while the id still holds that claim, else "stale"): while the
 * store is out of reach, a finalize is queued (fenced: it lands only where the claim still
 * is), then a late release of that same claim is queued. With the store reachable the release
 * answers "stale" (the claim was finalized) and the message stays a duplicate. Out of reach,
 * the queued release replaces the queued finalize (one change per key) and, when the store is
 * back, deletes the claim row: the finalized message is claimable again — handled twice.
 */
import { expect, it } from "@effect/vitest"
import { type Context, Effect, Exit, Layer, Logger, Scope } from "effect"
import { BlueBubblesInboundDedupe } from "../src/channels/BlueBubblesInboundDedupe.js"
import * as PluginRuntime from "../src/PluginRuntime.js"
import { freshPgDatabase, pgUrl } from "./support/backends.js"
import { describePg } from "./support/describePg.js"
import { eventually } from "./support/eventually.js"
import { tcpProxy } from "./support/outages.js"
import { pgRowReader } from "./support/storedRows.js"

const configOn = (pluginId: string) => ({ plugins: { entries: { [pluginId]: { config: { experimentalPersistentState: true } } } } })

const openInstance = (url: string) =>
  Effect.gen(function* () {
    const scope = yield* Effect.acquireRelease(Scope.make(), (scope, exit) => Scope.close(scope, exit))
    const layer = Layer.provide(
      PluginRuntime.layer({
        pluginId: "bluebubbles",
        config: configOn("bluebubbles"),
        store: { pgUrl: url },
        mirror: { flushInterval: "10 millis", backoffBase: "50 millis", backoffMax: "100 millis" }
      }),
      Logger.remove(Logger.defaultLogger)
    )
    const context: Context.Context<PluginRuntime.ChannelServices> = yield* Layer.buildWithScope(layer, scope)
    return {
      claim: (guid: string) => Effect.provide(Effect.flatMap(BlueBubblesInboundDedupe, (b) => b.claim({ accountId: "acc", guid })), context),
      close: Scope.close(scope, Exit.void)
    }
  })

describePg("queued settles stay fenced against each other (pg)", () => {
  it.scopedLive("finalize (queued) then a late release (queued): the message stays a duplicate", () =>
    Effect.gen(function* () {
      const { url } = yield* freshPgDatabase(pgUrl!)
      const proxy = yield* tcpProxy(url)
      const rows = yield* pgRowReader(url)
      const gateway = yield* openInstance(proxy.url)

      const outcome = yield* gateway.claim("guid-1")
      if (outcome._tag !== "Claimed") return expect.unreachable(`first claim answered ${outcome._tag}`)
      yield* eventually(rows.rows("bluebubbles"), (r) => r.length === 1)

      yield* proxy.down
      const finalized = yield* outcome.finalize
      const released = yield* outcome.release // late: e.g. an error path after the handler had finished
      yield* proxy.up
      // Let the queue land: the row stops being the in-flight claim.
      const landed = yield* eventually(rows.rows("bluebubbles"), (r) => r.length === 0 || !r[0]!.valueJson.includes('"claimed"'))

      // The same message, redelivered to a fresh instance.
      const other = yield* openInstance(url)
      const redelivered = yield* other.claim("guid-1")
      expect({ finalized, released, stored: landed.map((r) => JSON.parse(r.valueJson).status), redelivered: redelivered._tag }).toEqual({
        finalized: "queued",
        released: "stale",
        stored: ["committed"],
        redelivered: "Duplicate"
      })
    })
  , 60_000)
})
