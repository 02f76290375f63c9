/**
 * Fencing of late settles: instance A claims a message, its lease expires while its handler
 * is still running, and B claims the redelivery. A's late `release` must not delete B's
 * claim (it answers `stale`), so a third claimer C is told `InFlight`; A's late `finalize`
 * is `stale` too and leaves B's claim alone; B's `finalize` is `done`, and from then on every
 * instance sees a `Duplicate`.
 *
 * - Across OS processes on one SQLite file and one PostgreSQL database, in real time: A is a
 *   worker whose claims expire after 3 s (test/support/claimCommandWorker.ts, `--claim-ttl`);
 *   B and C are the production Feishu channel (5-minute leases). What the database holds is
 *   read after every step.
 * - In one process, with the memory layer (one instance, today's behaviour) and with three
 *   persistent instances over one in-memory store, on `TestClock`: BlueBubbles and Feishu.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, TestClock } from "effect"
import * as BlueBubbles from "../src/channels/BlueBubblesInboundDedupe.js"
import * as Feishu from "../src/channels/FeishuMessageDedupe.js"
import { KeyedStore } from "../src/KeyedStore.js"
import type { ClaimOutcome, ClaimState } from "../src/layers/ClaimLedger.js"
import type { CacheSpec } from "../src/layers/channelCache.js"
import * as MemoryStore from "../src/layers/store/MemoryStore.js"
import type { StateStoreError } from "../src/StateStoreError.js"
import { type BackendFactory, sqlBackends } from "./support/backends.js"
import { COMMAND_PLUGIN, type CommandWorkerLine, commandClient, feishuStoreKey } from "./support/claimCommandWorker.js"
import { type EntryRow, entryRows } from "./support/entryRows.js"
import { spawnGroup } from "./support/workerGroup.js"

const NAMESPACE = Feishu.spec.namespace
/** A's lease: long enough to be live when B first asks, short enough to wait out. */
const SHORT_LEASE_MS = 3000

const statusOf = (row: EntryRow | undefined) => (row === undefined ? "absent" : (JSON.parse(row.valueJson) as { status: string }).status)

const acrossProcesses = (backend: BackendFactory) =>
  it.scopedLive(
    `Feishu on ${backend.name}, three OS processes: A's lease expires mid-handler, B claims the redelivery; A's late release and finalize are stale and leave B's claim, C is told InFlight, B's finalize makes it a Duplicate everywhere`,
    () =>
      Effect.gen(function* () {
        const db = yield* backend.fresh
        const rows = yield* entryRows(db)
        const names = ["instance-a", "instance-b", "instance-c"]
        const group = yield* spawnGroup<CommandWorkerLine>(path.join("test", "support", "claimCommandWorker.ts"), names, (_go, name) => [
          backend.name,
          db.location!,
          name,
          ...(name === "instance-a" ? ["--claim-ttl", String(SHORT_LEASE_MS)] : [])
        ])
        yield* group.ready
        const [a, b, c] = group.members.map((m) => commandClient(m.process)) as [ReturnType<typeof commandClient>, ReturnType<typeof commandClient>, ReturnType<typeof commandClient>]
        const id = "om_fenced"
        const key = feishuStoreKey(id)
        const rowNow = rows.row(COMMAND_PLUGIN, NAMESPACE, key)

        expect(yield* a.claim(id)).toBe("Claimed")
        const rowA = yield* rowNow
        expect(statusOf(rowA)).toBe("claimed")
        // (PostgreSQL reads its clock once for created_at and once for expires_at: they may be a millisecond apart.)
        expect(rowA!.expiresAt! - rowA!.createdAt, "A's lease as stored").toBeGreaterThanOrEqual(SHORT_LEASE_MS)
        expect(rowA!.expiresAt! - rowA!.createdAt, "A's lease as stored").toBeLessThan(SHORT_LEASE_MS + 100)

        // B asks until A's lease has run out (A's handler is "still running": it never settles before).
        const answersOfB: Array<string> = []
        for (let attempt = 0; attempt < 300; attempt++) {
          const answer = yield* b.claim(id)
          answersOfB.push(answer)
          if (answer !== "InFlight") break
          yield* Effect.sleep("200 millis")
        }
        expect(answersOfB.at(-1), `B's answers: ${answersOfB.join(", ")}`).toBe("Claimed")
        const rowB = yield* rowNow
        expect(rowB?.valueJson, "B's claim replaced A's in the store").not.toBe(rowA!.valueJson)
        // B got it only once A's lease was over, by the clock the store decides with.
        expect(rowB!.createdAt, "B's claim was stamped before A's lease ran out").toBeGreaterThanOrEqual(rowA!.expiresAt!)

        const lateRelease = yield* a.release(id)
        const afterRelease = yield* rowNow
        const fromC = yield* c.claim(id)
        const lateFinalize = yield* a.finalize(id)
        const afterLateFinalize = yield* rowNow
        const fromCAgain = yield* c.claim(id)
        const finalOfB = yield* b.finalize(id)
        const afterB = yield* rowNow
        const everyone = [yield* a.claim(id), yield* b.claim(id), yield* c.claim(id)]
        const problems = [yield* a.problems, yield* b.problems, yield* c.problems]
        console.info(
          `[channel-state fencing] ${backend.name}: B asked ${answersOfB.length} times (${answersOfB.filter((x) => x === "InFlight").length} InFlight); ` +
            `A release ${lateRelease}, C ${fromC}, A finalize ${lateFinalize}, C ${fromCAgain}, B finalize ${finalOfB}, then ${everyone.join("/")}; problem lines ${problems.map((p) => p.length).join("/")}`
        )

        expect(lateRelease, "A's late release").toBe("stale")
        expect(afterRelease, "the row after A's late release").toEqual(rowB)
        expect(fromC, "C, while B holds the claim").toBe("InFlight")
        expect(lateFinalize, "A's late finalize").toBe("stale")
        expect(afterLateFinalize, "the row after A's late finalize").toEqual(rowB)
        expect(fromCAgain, "C, after A's late finalize").toBe("InFlight")
        expect(finalOfB, "B's finalize").toBe("done")
        expect(statusOf(afterB)).toBe("committed")
        expect(everyone, "A, B and C afterwards").toEqual(["Duplicate", "Duplicate", "Duplicate"])
        expect(problems.flat()).toEqual([])
      }),
    120_000
  )

// ---------------------------------------------------------------------------------------------
// One process, TestClock

/** Claims of one dedupe cache, and how long its in-flight lease lasts. */
interface Dedupe<Id, S> {
  readonly name: string
  /** The plugin id of its persistent instances (the owner of the rows), and its store namespace. */
  readonly owner: string
  readonly spec: CacheSpec<ClaimState, typeof ClaimState.Encoded>
  readonly tag: Context.Tag<Id, S>
  readonly claim: (service: S, id: string) => Effect.Effect<ClaimOutcome>
  readonly lease: Duration.Duration
  readonly memory: Layer.Layer<Id>
  readonly persistent: Layer.Layer<Id, StateStoreError, KeyedStore>
}

const bluebubbles: Dedupe<BlueBubbles.BlueBubblesInboundDedupe, BlueBubbles.BlueBubblesInboundDedupe["Type"]> = {
  name: "BlueBubbles",
  owner: "bluebubbles",
  spec: BlueBubbles.spec,
  tag: BlueBubbles.BlueBubblesInboundDedupe,
  claim: (service, id) => service.claim({ accountId: "acc", guid: id }),
  lease: Duration.decode(BlueBubbles.CLAIM_TTL),
  memory: BlueBubbles.layer,
  persistent: BlueBubbles.layerPersistent({ pluginId: "bluebubbles" })
}
const feishu: Dedupe<Feishu.FeishuMessageDedupe, Feishu.FeishuMessageDedupe["Type"]> = {
  name: "Feishu",
  owner: "feishu",
  spec: Feishu.spec,
  tag: Feishu.FeishuMessageDedupe,
  claim: (service, id) => service.beginProcessing({ namespace: "app", messageId: id }),
  lease: Duration.decode(Feishu.IN_FLIGHT_TTL),
  memory: Feishu.layer,
  persistent: Feishu.layerPersistent({ pluginId: "feishu" })
}

type Claim = (id: string) => Effect.Effect<ClaimOutcome>

/** The scenario, on TestClock: `a`, `b`, `c` claim as three instances (or one instance, thrice). */
const lateSettles = (lease: Duration.Duration, a: Claim, b: Claim, c: Claim) =>
  Effect.gen(function* () {
    const id = "msg-late"
    const first = yield* a(id)
    if (first._tag !== "Claimed") return expect.fail(`A's claim answered ${first._tag}`)
    expect((yield* b(id))._tag, "B, while A's lease is live").toBe("InFlight")
    // A's handler outlives its lease.
    yield* TestClock.adjust(Duration.sum(lease, Duration.seconds(1)))
    const second = yield* b(id)
    if (second._tag !== "Claimed") return expect.fail(`B's claim of the redelivery answered ${second._tag}`)
    expect(yield* first.release, "A's late release").toBe("stale")
    expect((yield* c(id))._tag, "C, after A's late release").toBe("InFlight")
    expect(yield* first.finalize, "A's late finalize").toBe("stale")
    expect((yield* c(id))._tag, "C, after A's late finalize").toBe("InFlight")
    expect(yield* second.finalize, "B's finalize").toBe("done")
    expect([(yield* a(id))._tag, (yield* b(id))._tag, (yield* c(id))._tag], "A, B and C afterwards").toEqual(["Duplicate", "Duplicate", "Duplicate"])
  })

const inProcess = <Id, S>(dedupe: Dedupe<Id, S>) => {
  it.scoped(`${dedupe.name}, memory layer (one instance): a late release and finalize of an expired claim are stale; the redelivery's claim holds`, () =>
    Effect.gen(function* () {
      const service = Context.get(yield* Layer.build(dedupe.memory), dedupe.tag)
      const claim: Claim = (id) => dedupe.claim(service, id)
      yield* lateSettles(dedupe.lease, claim, claim, claim)
    })
  )

  it.scoped(`${dedupe.name}, three persistent instances over one in-memory store: a late release and finalize of an expired claim are stale; the redelivery's claim holds`, () =>
    Effect.gen(function* () {
      const store = yield* Layer.build(MemoryStore.layer())
      const instance = Effect.map(Layer.build(Layer.provide(dedupe.persistent, Layer.succeedContext(store))), (context): Claim => {
        const service = Context.get(context, dedupe.tag)
        return (id) => dedupe.claim(service, id)
      })
      const [a, b, c] = [yield* instance, yield* instance, yield* instance]
      yield* lateSettles(dedupe.lease, a, b, c)
      // What the store holds is B's committed claim.
      const { spec } = dedupe
      const handle = yield* Effect.provide(
        Effect.flatMap(KeyedStore, (keyed) =>
          keyed.open({ owner: dedupe.owner, namespace: spec.namespace, schema: spec.schema, maxEntries: spec.storeMaxEntries, ttl: spec.ttl })
        ),
        store
      )
      const entries = yield* handle.entries
      expect(entries.map((e) => e.value.status)).toEqual(["committed"])
    })
  )
}

describe("late settles are fenced: one process", () => {
  inProcess(bluebubbles)
  inProcess(feishu)
})

for (const backend of sqlBackends) {
  describe(`late settles are fenced: OS processes on ${backend.name}`, () => {
    acrossProcesses(backend)
  })
}
