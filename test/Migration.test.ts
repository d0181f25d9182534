import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import { Duration, Effect, Option, Redacted } from "effect"
import * as EncryptionKey from "../src/EncryptionKey.js"
import * as Keyset from "../src/internal/Keyset.js"
import * as RecordCodec from "../src/internal/RecordCodec.js"
import * as RedisClient from "../src/internal/RedisClient.js"
import * as Migration from "../src/Migration.js"
import * as TokenStore from "../src/TokenStore.js"
import * as Redis from "../src/TokenStore/Redis.js"
import * as RedisServer from "./support/RedisServer.js"
import { sampleRecord } from "./support/TokenStoreConformance.js"

const namespace = "tester@testhost:1000"

const redisStore = (url: string) =>
  Effect.gen(function*() {
    const keyset = Keyset.single(Redacted.make(new Uint8Array(Crypto.randomBytes(32))))
    const key = EncryptionKey.EncryptionKey.of({
      source: "env",
      description: "test key",
      keyset: Effect.succeed(keyset),
      reload: Effect.succeed(keyset),
      rotate: Effect.die("no rotation"),
      retire: () => Effect.succeed(keyset)
    })
    const client = yield* RedisClient.make({
      url,
      tls: false,
      username: Option.none(),
      password: Option.none(),
      commandTimeout: Duration.seconds(2)
    })
    return yield* Redis.makeWith({ client, codec: RecordCodec.sealed(key, namespace), namespace, keyPrefix: "mig:" })
  })

/** Wraps a store, logging every put and remove, to check their order. */
const logged = (store: TokenStore.Shape, name: string, log: Array<string>): TokenStore.Shape => ({
  ...store,
  put: (r) => Effect.tap(store.put(r), () => Effect.sync(() => log.push(`${name} put ${r.id}`))),
  remove: (id) => Effect.tap(store.remove(id), () => Effect.sync(() => log.push(`${name} remove ${id}`)))
})

const secrets = (r: TokenStore.SessionRecord) => [Redacted.value(r.accessToken!), Redacted.value(r.refreshToken!)]

describe("Migration", () => {
  it.live("moves every session to Redis and back: all there, secrets intact, each written before it is removed", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const log: Array<string> = []
      const file = logged(yield* TokenStore.makeMemory, "memory", log)
      const redis = logged(yield* redisStore(server.url), "redis", log)
      yield* Effect.forEach([1, 2, 3], (n) => file.put(sampleRecord(n, { generation: n })))
      log.length = 0

      const there = yield* Migration.migrate(file, redis)
      assert.deepStrictEqual(there.outcomes.map((o) => o._tag), ["Moved", "Moved", "Moved"])
      assert.deepStrictEqual(yield* file.list, [])
      for (const n of [1, 2, 3]) {
        const r = yield* redis.get(`provider-${n}`)
        assert.deepStrictEqual(secrets(r), secrets(sampleRecord(n)))
        assert.strictEqual(r.generation, n)
        assert.isBelow(log.indexOf(`redis put provider-${n}`), log.indexOf(`memory remove provider-${n}`))
      }

      const back = yield* Migration.migrate(redis, file)
      assert.strictEqual(back.outcomes.filter((o) => o._tag === "Moved").length, 3)
      assert.deepStrictEqual(yield* redis.list, [])
      assert.strictEqual((yield* file.list).length, 3)
    }).pipe(Effect.scoped))

  it.live("a newer copy already in the target is kept; --keep-source and --dry-run leave the source alone", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const file = yield* TokenStore.makeMemory
      const redis = yield* redisStore(server.url)
      yield* file.put(sampleRecord(1, { generation: 1 }))
      yield* file.put(sampleRecord(2, { generation: 1 }))
      yield* redis.put(sampleRecord(1, { generation: 4, accessToken: Redacted.make("AT-newer") }))

      const dry = yield* Migration.migrate(file, redis, { dryRun: true })
      assert.strictEqual(dry.outcomes.length, 2)
      assert.strictEqual((yield* file.list).length, 2)
      assert.strictEqual((yield* redis.list).length, 1)

      const copy = yield* Migration.migrate(file, redis, { keepSource: true })
      assert.deepStrictEqual(copy.outcomes.map((o) => o._tag).sort(), ["AlreadyInTarget", "Moved"])
      assert.strictEqual((yield* file.list).length, 2)
      assert.strictEqual(Redacted.value((yield* redis.get("provider-1")).accessToken!), "AT-newer")
      assert.strictEqual((yield* redis.get("provider-2")).generation, 1)
    }).pipe(Effect.scoped))
})
