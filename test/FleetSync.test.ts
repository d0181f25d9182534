import { assert, describe, it } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Crypto from "node:crypto"
import * as NodePathModule from "node:path"
import { Effect, Layer, Option, Redacted, Schedule } from "effect"
import * as StoreFromConfig from "../layers/StoreFromConfig.js"
import * as FleetSync from "../src/FleetSync.js"
import * as OAuthClient from "../src/OAuthClient.js"
import * as RefreshSupervisor from "../src/RefreshSupervisor.js"
import * as SessionConfig from "../src/SessionConfig.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as UserContext from "../src/UserContext.js"
import { tempDir } from "./support/FileStoreFixtures.js"
import * as RedisServer from "./support/RedisServer.js"
import { sampleRecord } from "./support/TokenStoreConformance.js"

/** One instance: Redis store and lock, Sessions, the supervisor (hourly periodic sweeps) and the change feed. */
const instance = (url: string, dir: string, key: Uint8Array) => {
  const config = SessionConfig.layerWith((s) => ({
    ...s,
    userContext: { ...s.userContext, sessionDirectory: NodePathModule.join(dir, "sessions") },
    tokenStorage: { ...s.tokenStorage, storageBackend: "redis", encryptionKeySource: "env" },
    tokenRefresh: { ...s.tokenRefresh, backgroundCheckIntervalMinutes: 60 },
    redis: { ...s.redis, url, keyPrefix: "sync-test:" }
  }), { encryptionKey: Option.some(Redacted.make(key)) })
  const base = Layer.mergeAll(config, NodeFileSystem.layer, NodePath.layer)
  const withUser = Layer.merge(base, UserContext.layer.pipe(Layer.provide(base)))
  const storage = StoreFromConfig.layer.pipe(Layer.provideMerge(withUser))
  const lock = StoreFromConfig.lock.pipe(Layer.provide(storage))
  const oauth = OAuthClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
  const sessions = Sessions.layer.pipe(Layer.provideMerge(Layer.mergeAll(storage, lock, oauth)))
  const supervisor = RefreshSupervisor.layerWith({ cleanup: false }).pipe(Layer.provideMerge(sessions))
  return FleetSync.layer.pipe(
    Layer.provideMerge(supervisor),
    Layer.provide(StoreFromConfig.redisConnection),
    Layer.provide(withUser)
  )
}

const scheduledIds = Effect.map(
  Effect.flatMap(RefreshSupervisor.RefreshSupervisor, (s) => s.status),
  (status) => status.sessions.filter((s) => Option.isSome(s.nextRefreshAt)).map((s) => s.id).sort()
)

describe("FleetSync", () => {
  it.live("sessions another instance adds or removes are (un)scheduled here at once, not at the next periodic sweep", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const dir = yield* tempDir("mts-sync-")
      const key = new Uint8Array(Crypto.randomBytes(32))
      const here = yield* Layer.build(instance(server.url, dir, key))
      const there = yield* Layer.build(instance(server.url, dir, key))
      const ask = <A, E>(e: Effect.Effect<A, E, RefreshSupervisor.RefreshSupervisor>) => Effect.provideContext(e, here)
      assert.deepStrictEqual(yield* ask(scheduledIds), [])

      const otherStore = yield* Effect.provideContext(TokenStore.TokenStore, there)
      yield* otherStore.put(sampleRecord(1))
      yield* otherStore.put(sampleRecord(2))
      const until = <A>(check: (a: A) => boolean, e: Effect.Effect<A, never, RefreshSupervisor.RefreshSupervisor>) =>
        ask(e).pipe(
          Effect.filterOrFail(check, () => "not yet" as const),
          Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 60 })
        )
      assert.deepStrictEqual(yield* until((ids) => ids.length === 2, scheduledIds), ["provider-1", "provider-2"])

      yield* otherStore.remove("provider-1")
      assert.deepStrictEqual(yield* until((ids) => ids.length === 1, scheduledIds), ["provider-2"])
      assert.isAbove(yield* Effect.provideContext(Effect.flatMap(FleetSync.FleetSync, (f) => f.sweeps), here), 0)
    }).pipe(Effect.scoped))
})
