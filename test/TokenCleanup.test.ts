import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Layer, Redacted } from "effect"
import { TestClock } from "effect/testing"
import * as SessionConfig from "../src/SessionConfig.js"
import * as TokenCleanup from "../src/TokenCleanup.js"
import * as TokenStore from "../src/TokenStore.js"
import { sampleRecord } from "./support/TokenStoreConformance.js"

const layer = (max: number) =>
  Layer.mergeAll(
    TokenStore.layerMemory,
    SessionConfig.layerWith((s) => ({ ...s, tokenStorage: { ...s.tokenStorage, maxTokensPerProvider: max } }))
  )

const at = (ms: number) => DateTime.makeUnsafe(ms)

describe("TokenCleanup", () => {
  it.effect("removes expired sessions that cannot be refreshed and long-dead re-auth ones; keeps the rest", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_900_000_000_000)
      const store = yield* TokenStore.TokenStore
      yield* store.put(sampleRecord(1, { expiresAt: at(1_899_000_000_000), refreshToken: undefined }))
      yield* store.put(sampleRecord(2, { expiresAt: at(1_899_000_000_000) })) // expired but refreshable
      yield* store.put(sampleRecord(3, { state: "needs_reauth", accessToken: undefined, refreshToken: undefined, updatedAt: at(1_900_000_000_000 - Duration.toMillis(Duration.days(31))) }))
      yield* store.put(sampleRecord(4, { state: "needs_reauth", accessToken: undefined, refreshToken: undefined, updatedAt: at(1_900_000_000_000 - Duration.toMillis(Duration.days(2))) }))
      yield* store.put(sampleRecord(5, { accessToken: Redacted.make("x"), expiresAt: at(1_901_000_000_000) }))
      const report = yield* TokenCleanup.runOnce()
      assert.deepStrictEqual(report.removedExpired, ["provider-1"])
      assert.deepStrictEqual(report.removedReauth, ["provider-3"])
      assert.deepStrictEqual((yield* store.list).map((m) => m.id).sort(), ["provider-2", "provider-4", "provider-5"])
    }).pipe(Effect.provide(layer(10))))

  it.effect("max_tokens_per_provider evicts the oldest sessions of a provider", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_800_000_000_000)
      const store = yield* TokenStore.TokenStore
      for (let i = 0; i < 5; i++) {
        yield* store.put(sampleRecord(10 + i, { id: `gh-${i}`, provider: "github", updatedAt: at(1_700_000_000_000 + i * 1000) }))
      }
      yield* store.put(sampleRecord(20, { provider: "google" }))
      const report = yield* TokenCleanup.runOnce()
      assert.deepStrictEqual([...report.evicted].sort(), ["gh-0", "gh-1"])
      assert.deepStrictEqual((yield* store.list).map((m) => m.id).sort(), ["gh-2", "gh-3", "gh-4", "provider-20"])
    }).pipe(Effect.provide(layer(3))))

  it.effect("runs again every token_cleanup_interval_hours", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_900_000_000_000)
      const store = yield* TokenStore.TokenStore
      yield* Effect.forkChild(TokenCleanup.runScheduled)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* store.put(sampleRecord(1, { expiresAt: at(1_899_000_000_000), refreshToken: undefined }))
      yield* TestClock.adjust(Duration.hours(23))
      assert.strictEqual((yield* store.list).length, 1, "not yet")
      yield* TestClock.adjust(Duration.hours(1))
      assert.strictEqual((yield* store.list).length, 0, "the 24 h pass removed it")
    }).pipe(Effect.provide(layer(10))))
})
