import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as RefreshClaims from "../src/RefreshClaims.js"
import * as TokenStore from "../src/TokenStore.js"
import { expireAll, makeCalls, session, startInstance } from "./support/ClaimsFleet.js"

const T0 = 1_900_000_000_000
const lease = Duration.seconds(15)
const tick = Duration.toMillis(RefreshClaims.renewalInterval(lease))

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})
const advance = (ms: number) => TestClock.adjust(Duration.millis(ms)).pipe(Effect.andThen(settle))

const countBy = (calls: ReadonlyArray<{ readonly instance: string; readonly id: string }>, key: "instance" | "id") =>
  calls.reduce((m, c) => m.set(c[key], (m.get(c[key]) ?? 0) + 1), new Map<string, number>())

describe("RefreshClaims", () => {
  it("step: a fair share each, renewals kept, the excess given up when an instance joins", () => {
    const ids = ["a", "b", "c", "d"]
    const [first, s1] = RefreshClaims.step({ claims: new Map(), instances: new Map() }, { instance: "A", ids, now: 0, leaseMs: 100 })
    assert.deepStrictEqual([...first], ids, "alone: everything")
    const [second, s2] = RefreshClaims.step(s1, { instance: "B", ids, now: 10, leaseMs: 100 })
    assert.deepStrictEqual([...second], [], "nothing free yet")
    const [third, s3] = RefreshClaims.step(s2, { instance: "A", ids, now: 20, leaseMs: 100 })
    assert.deepStrictEqual([...third], ["a", "b"], "two instances: half each")
    const [fourth] = RefreshClaims.step(s3, { instance: "B", ids, now: 30, leaseMs: 100 })
    assert.deepStrictEqual([...fourth], ["c", "d"])
    const [afterDeath] = RefreshClaims.step(s3, { instance: "B", ids, now: 130, leaseMs: 100 })
    assert.deepStrictEqual([...afterDeath], ids, "A's claims and presence expired: B takes everything")
  })

  it.effect("three supervisors on shared claims: each due session refreshed once, spread; a killed instance's sessions move within lease + one renewal", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      const ids = [1, 2, 3, 4, 5, 6].map((n) => `s-${n}`)
      for (let n = 1; n <= 6; n++) yield* store.put(session(n, DateTime.makeUnsafe(T0 + Duration.toMillis(Duration.minutes(30)))))
      const board = yield* RefreshClaims.makeBoard
      const calls = yield* makeCalls
      const [a, b, c] = yield* Effect.forEach(["A", "B", "C"], (instance) =>
        startInstance({ instance, store, calls, claims: RefreshClaims.makeMemory({ board, instance, lease }) }))
      yield* settle

      // Two renewals: the first instance gives up what is over its share, the others claim it.
      yield* advance(2 * tick + 1)
      const owned = yield* Effect.forEach([a!, b!, c!], (i) => i.scheduled)
      assert.deepStrictEqual(owned.map((o) => o.length), [2, 2, 2], JSON.stringify(owned))
      assert.deepStrictEqual(owned.flat().sort(), ids, "every session scheduled by exactly one instance")

      yield* advance(Duration.toMillis(Duration.minutes(16)))
      const first = yield* Ref.get(calls)
      assert.strictEqual(first.length, 6)
      assert.deepStrictEqual([...countBy(first, "id").values()], [1, 1, 1, 1, 1, 1], "each session once")
      assert.deepStrictEqual([...countBy(first, "instance").entries()].sort(), [["A", 2], ["B", 2], ["C", 2]])

      const orphans = owned[2]!
      yield* c!.kill
      // Due again at once: A and B refresh theirs now, C's only once its claims have expired.
      yield* expireAll(store, ids, DateTime.makeUnsafe(T0 + Duration.toMillis(Duration.minutes(20))))
      yield* a!.supervisor.sweep
      yield* b!.supervisor.sweep
      yield* settle
      const early = (yield* Ref.get(calls)).slice(6)
      assert.deepStrictEqual(early.map((x) => x.id).sort(), ids.filter((id) => !orphans.includes(id)))

      yield* advance(Duration.toMillis(lease) + tick + 1)
      const second = (yield* Ref.get(calls)).slice(6)
      assert.strictEqual(second.length, 6, JSON.stringify(second))
      assert.deepStrictEqual([...countBy(second, "id").values()], [1, 1, 1, 1, 1, 1], "each session once")
      assert.isFalse(second.some((x) => x.instance === "C"), "nothing by the dead instance")
      assert.deepStrictEqual(second.filter((x) => orphans.includes(x.id)).length, 2, "its sessions taken over")
    }).pipe(Effect.scoped))
})
