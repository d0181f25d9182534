/**
 * The background refresh claims on a real `redis-server`: three supervisors,
 * each with its own connection, share six sessions. Real time, with a lease
 * of one second, so the test takes a few seconds.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Option, Ref, Schedule, Scope } from "effect"
import * as RecordCodec from "../src/internal/RecordCodec.js"
import * as RedisClient from "../src/internal/RedisClient.js"
import * as RedisClaims from "../src/RedisClaims.js"
import * as RefreshClaims from "../src/RefreshClaims.js"
import * as Redis from "../src/TokenStore/Redis.js"
import { expireAll, makeCalls, session, startInstance } from "./support/ClaimsFleet.js"
import * as RedisServer from "./support/RedisServer.js"

const namespace = "claims@test:1000"
const keyPrefix = "claims-test:"
const lease = Duration.seconds(1)
const ids = [1, 2, 3, 4, 5, 6].map((n) => `s-${n}`)

const connect = (url: string) =>
  RedisClient.make({ url, tls: false, username: Option.none(), password: Option.none(), commandTimeout: Duration.seconds(2) })

const openStore = (client: RedisClient.Client) => Redis.makeWith({ client, codec: RecordCodec.plaintext, namespace, keyPrefix })

/** Waits (polling, bounded) until `check` holds. */
const eventually = <A, E>(what: string, effect: Effect.Effect<A, E>, check: (a: A) => boolean, attempts = 50) =>
  effect.pipe(
    Effect.filterOrFail(check, (a) => `${what}: not yet (${JSON.stringify(a)})`),
    Effect.retry({ schedule: Schedule.spaced("100 millis"), times: attempts })
  )

const countBy = (calls: ReadonlyArray<{ readonly instance: string; readonly id: string }>, key: "instance" | "id") =>
  [...calls.reduce((m, c) => m.set(c[key], (m.get(c[key]) ?? 0) + 1), new Map<string, number>()).entries()].sort()

describe("RedisClaims", () => {
  it.live("three instances: each due session refreshed by exactly one; a killed instance's sessions are refreshed by the others after its lease", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const setup = yield* openStore(yield* connect(server.url))
      const inHalfAnHour = DateTime.add(yield* DateTime.now, { minutes: 30 })
      for (let n = 1; n <= 6; n++) yield* setup.put(session(n, inHalfAnHour))
      const calls = yield* makeCalls

      const instances = yield* Effect.forEach(["A", "B", "C"], (instance) =>
        Effect.gen(function*() {
          const scope = yield* Scope.fork(yield* Effect.scope)
          const client = yield* Scope.provide(connect(server.url), scope)
          const store = yield* openStore(client)
          const claims = yield* RedisClaims.make({ client, namespace, keyPrefix, lease, instance })
          return yield* startInstance({ instance, store, claims, calls, scope })
        }))
      const [a, b, c] = instances
      const owned = Effect.forEach(instances, (i) => i.scheduled)
      const spread = yield* eventually("claims spread", owned, (o) => o.every((x) => x.length === 2))
      assert.deepStrictEqual(spread.flat().sort(), ids, "every session scheduled by exactly one instance")

      const generations = Effect.map(setup.list, (ms) => ms.map((m) => m.generation))
      const dueSoon = Effect.map(DateTime.now, (now) => DateTime.add(now, { minutes: 10 }))
      yield* expireAll(setup, ids, yield* dueSoon)
      yield* Effect.forEach(instances, (i) => i.supervisor.sweep, { discard: true })
      yield* eventually("all refreshed", generations, (g) => g.every((x) => x === 2))
      const first = yield* Ref.get(calls)
      assert.deepStrictEqual(countBy(first, "id"), ids.map((id) => [id, 1]), "each session once")
      assert.deepStrictEqual(countBy(first, "instance"), [["A", 2], ["B", 2], ["C", 2]])

      const orphans = spread[2]!
      yield* c!.kill
      yield* expireAll(setup, ids, yield* dueSoon)
      yield* a!.supervisor.sweep
      yield* b!.supervisor.sweep
      // One lease for C's claims to expire, one renewal interval for A or B to claim them, and slack.
      const bound = Duration.toMillis(lease) + Duration.toMillis(RefreshClaims.renewalInterval(lease)) + 1_500
      yield* eventually("C's sessions taken over", generations, (g) => g.every((x) => x === 4), Math.ceil(bound / 100))
      const second = (yield* Ref.get(calls)).slice(first.length)
      assert.deepStrictEqual(countBy(second, "id"), ids.map((id) => [id, 1]), "each session once")
      assert.isFalse(second.some((x) => x.instance === "C"))
      assert.strictEqual(second.filter((x) => orphans.includes(x.id)).length, 2)
    }).pipe(Effect.scoped), 30_000)
})
