import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as SingleFlight from "../../src/internal/SingleFlight.js"

describe("SingleFlight", () => {
  it.effect("1000 concurrent callers of one key: the effect is built and run once, all get its value", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const flights = SingleFlight.make<number, never>(scope)
      const gate = yield* Deferred.make<void>()
      let built = 0
      let ran = 0
      const make = () => {
        built++
        return Effect.andThen(Deferred.await(gate), Effect.sync(() => ++ran))
      }
      const callers = yield* Effect.forEach(Array.from({ length: 1000 }), () => flights.run("k", make), {
        concurrency: "unbounded"
      }).pipe(Effect.forkChild)
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      const results = yield* Fiber.join(callers)
      assert.strictEqual(built, 1)
      assert.strictEqual(ran, 1)
      assert.deepStrictEqual(new Set(results.map((r) => r.value)), new Set([1]))
      assert.strictEqual(results.filter((r) => !r.joined).length, 1)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a flight is forgotten when it ends: the next caller starts a new one", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const flights = SingleFlight.make<number, never>(scope)
      let ran = 0
      const make = () => Effect.sync(() => ++ran)
      const first = yield* flights.run("k", make)
      const second = yield* flights.run("k", make)
      assert.deepStrictEqual([first.value, second.value, first.joined, second.joined], [1, 2, false, false])
      yield* Scope.close(scope, Exit.void)
    }))
})
