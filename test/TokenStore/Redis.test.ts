import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import { Deferred, Duration, Effect, Exit, Fiber, Option, Redacted, Schedule } from "effect"
import * as EncryptionKey from "../../src/EncryptionKey.js"
import * as Envelope from "../../src/internal/Envelope.js"
import * as Keyset from "../../src/internal/Keyset.js"
import * as RecordCodec from "../../src/internal/RecordCodec.js"
import * as RedisClient from "../../src/internal/RedisClient.js"
import * as RedisLock from "../../src/RedisLock.js"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as TokenStore from "../../src/TokenStore.js"
import * as Redis from "../../src/TokenStore/Redis.js"
import * as RedisServer from "../support/RedisServer.js"
import { conformance, sampleRecord } from "../support/TokenStoreConformance.js"

const namespace = "tester@testhost:1000"
const prefix = "mts-test:"

/** A data key held the way `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY` provides it. */
const keyOf = (bytes: Uint8Array): EncryptionKey.Shape => {
  const keyset: EncryptionKey.Keyset = Keyset.single(Redacted.make(bytes))
  return EncryptionKey.EncryptionKey.of({
    source: "env",
    description: "test key",
    keyset: Effect.succeed(keyset),
    reload: Effect.succeed(keyset),
    rotate: Effect.die("no rotation in tests"),
    retire: () => Effect.succeed(keyset)
  })
}

const connect = (url: string, timeout: Duration.Input = "2 seconds") =>
  RedisClient.make({ url, tls: false, username: Option.none(), password: Option.none(), commandTimeout: Duration.fromInputUnsafe(timeout) })

/** A store as one instance of a fleet opens it: its own connection to the shared Redis. */
const openStore = (url: string, key: Uint8Array, ns = namespace) =>
  Effect.gen(function*() {
    const client = yield* connect(url)
    const store = yield* Redis.makeWith({ client, codec: RecordCodec.sealed(keyOf(key), ns), namespace: ns, keyPrefix: prefix })
    return { client, store }
  })

const openLock = (url: string, lease: Duration.Input = "15 seconds") =>
  Effect.gen(function*() {
    const client = yield* connect(url)
    return yield* RedisLock.make({ client, namespace, keyPrefix: prefix, lease: Duration.fromInputUnsafe(lease) })
  })

const reasonOf = <A>(exit: Exit.Exit<A, TokenStore.TokenStoreError>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const r = exit.cause.reasons.find((x) => x._tag === "Fail")
  return r?._tag === "Fail" ? `${r.error.reason._tag}${"detail" in r.error.reason ? `: ${r.error.reason.detail}` : ""}` : "defect"
}

conformance("redis", {
  backend: "redis",
  persistent: true,
  fresh: Effect.gen(function*() {
    const server = yield* RedisServer.acquire()
    const key = new Uint8Array(Crypto.randomBytes(32))
    return Effect.map(openStore(server.url, key), (s) => s.store)
  })
})

describe("Redis store", () => {
  it.live("records in Redis are sealed: no secret and no key in any stored value", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const key = new Uint8Array(Crypto.randomBytes(32))
      const { client, store } = yield* openStore(server.url, key)
      yield* store.put(sampleRecord(3))
      const names = (yield* client.send(["KEYS", "*"])) as Array<string>
      assert.isAbove(names.length, 0)
      const everything: Array<string> = []
      for (const name of names) {
        const type = yield* client.send(["TYPE", name])
        if (type === "hash") everything.push(JSON.stringify(yield* client.send(["HGETALL", name])))
        else if (type === "string") everything.push(String(yield* client.send(["GET", name])))
      }
      const dump = everything.join("\n")
      const decodedValues = everything.map((v) => v).join("")
      assert.notInclude(dump, "AT-secret-3")
      assert.notInclude(dump, "RT-secret-3")
      assert.notInclude(dump, Buffer.from(key).toString("base64"))
      assert.notInclude(decodedValues, Buffer.from(key).toString("hex"))
      // The same envelope as the file store: MTS magic and the key's id.
      const raw = yield* client.send(["HGET", names.find((n) => n.includes(":rec:"))!, "data"])
      const bytes = new Uint8Array(Buffer.from(String(raw), "base64"))
      assert.isTrue(Envelope.isSealed(bytes))
      assert.strictEqual(Envelope.keyIdOfSealed(bytes), Envelope.keyIdOf(key))
      // Another namespace on the same Redis sees nothing, and a different key opens nothing.
      const other = yield* openStore(server.url, key, "someone@else:1001")
      assert.deepStrictEqual(yield* other.store.list, [])
      const wrongKey = yield* openStore(server.url, new Uint8Array(Crypto.randomBytes(32)))
      assert.strictEqual(reasonOf(yield* Effect.exit(wrongKey.store.get("provider-3"))).split(":")[0], "Corrupted")
    }).pipe(Effect.scoped))

  it.live("a put older than the stored generation is refused and changes nothing", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const key = new Uint8Array(Crypto.randomBytes(32))
      const a = yield* openStore(server.url, key)
      const b = yield* openStore(server.url, key)
      yield* a.store.put(sampleRecord(1, { generation: 5, accessToken: Redacted.make("AT-new") }))
      const exit = yield* Effect.exit(b.store.put(sampleRecord(1, { generation: 4, accessToken: Redacted.make("AT-late") })))
      assert.match(reasonOf(exit), /^Conflict: stale/)
      const back = yield* a.store.get("provider-1")
      assert.strictEqual(back.generation, 5)
      assert.strictEqual(Redacted.value(back.accessToken!), "AT-new")
    }).pipe(Effect.scoped))

  it.live("a holder whose lock expired and was taken cannot overwrite the new holder's rotation", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const key = new Uint8Array(Crypto.randomBytes(32))
      const a = yield* openStore(server.url, key)
      const b = yield* openStore(server.url, key)
      const lockA = yield* openLock(server.url)
      const lockB = yield* openLock(server.url)
      yield* a.store.put(sampleRecord(1, { generation: 1 }))
      const bWrote = yield* Deferred.make<void>()
      const aRead = yield* Deferred.make<void>()
      const lateWriter = yield* lockA.withLock("provider-1", Effect.gen(function*() {
        const record = yield* a.store.get("provider-1")
        yield* Deferred.succeed(aRead, undefined)
        yield* Deferred.await(bWrote)
        return yield* Effect.exit(a.store.put(sampleRecord(1, { generation: record.generation + 1, accessToken: Redacted.make("AT-A") })))
      })).pipe(Effect.forkChild)
      yield* Deferred.await(aRead)
      // A's lease "expires" (a long pause): its key vanishes, and B takes the lock and rotates.
      const lockKeys = (yield* a.client.send(["KEYS", "*:lock:*"])) as Array<string>
      assert.strictEqual(lockKeys.length, 1)
      yield* a.client.send(["DEL", lockKeys[0]!])
      yield* lockB.withLock("provider-1", Effect.gen(function*() {
        const record = yield* b.store.get("provider-1")
        yield* b.store.put(sampleRecord(1, { generation: record.generation + 1, accessToken: Redacted.make("AT-B") }))
      }))
      yield* Deferred.succeed(bWrote, undefined)
      const late = yield* Fiber.join(lateWriter)
      assert.match(reasonOf(late), /^Conflict: fenced/)
      const stored = yield* a.store.get("provider-1")
      assert.strictEqual(Redacted.value(stored.accessToken!), "AT-B")
      assert.strictEqual(stored.generation, 2)
    }).pipe(Effect.scoped))

  it.live("a refresh that ends after a logout does not bring the session back", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const key = new Uint8Array(Crypto.randomBytes(32))
      const { store } = yield* openStore(server.url, key)
      const lock = yield* openLock(server.url)
      yield* store.put(sampleRecord(1, { generation: 1 }))
      const exit = yield* lock.withLock("provider-1", Effect.gen(function*() {
        yield* store.remove("provider-1")
        return yield* Effect.exit(store.put(sampleRecord(1, { generation: 2 })))
      }))
      assert.match(reasonOf(exit), /^Conflict: gone/)
      assert.strictEqual(reasonOf(yield* Effect.exit(store.get("provider-1"))), "NotFound")
    }).pipe(Effect.scoped))

  it.live("a damaged record is set aside in Redis and reported; the others are untouched", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const key = new Uint8Array(Crypto.randomBytes(32))
      const { client, store } = yield* openStore(server.url, key)
      yield* Effect.forEach([1, 2], (n) => store.put(sampleRecord(n)))
      const names = (yield* client.send(["KEYS", "*:rec:*"])) as Array<string>
      const victim = names[0]!
      const data = Buffer.from(String(yield* client.send(["HGET", victim, "data"])), "base64")
      data[data.length - 20] = data[data.length - 20]! ^ 1
      yield* client.send(["HSET", victim, "data", data.toString("base64")])
      const listed = yield* store.list
      const damagedId = (yield* Effect.forEach(listed, (m) => Effect.map(Effect.exit(store.get(m.id)), (e) => [m.id, reasonOf(e)] as const)))
        .filter(([, r]) => r.startsWith("Corrupted"))
      assert.strictEqual(damagedId.length, 1)
      const corrupt = (yield* client.send(["KEYS", "*:corrupt:*"])) as Array<string>
      assert.strictEqual(corrupt.length, 1, "moved aside, not deleted")
      const after = yield* store.list
      assert.strictEqual(after.find((m) => m.id === damagedId[0]![0])?.state, "corrupted")
      assert.strictEqual(after.filter((m) => m.state === "active").length, 1)
    }).pipe(Effect.scoped))

  it.live("Redis down: operations fail Unavailable (retryable), health says so; back up: everything is there", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire({ appendonly: true })
      const key = new Uint8Array(Crypto.randomBytes(32))
      const { store } = yield* openStore(server.url, key)
      yield* store.put(sampleRecord(1))
      yield* Effect.promise(() => server.stop())
      const down = yield* Effect.exit(store.get("provider-1"))
      assert.match(reasonOf(down), /^(Unavailable|Timeout)/)
      assert.isFalse((yield* store.health).available)
      yield* Effect.promise(() => server.start())
      // The client reconnects in the background.
      const back = yield* store.get("provider-1").pipe(Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 100 }))
      assert.strictEqual(Redacted.value(back.refreshToken!), "RT-secret-1")
      assert.isTrue((yield* store.health).available)
    }).pipe(Effect.scoped))
})

describe("Redis lock", () => {
  it.live("two instances exclude each other; a live holder keeps its lock past the lease by renewing it", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const a = yield* openLock(server.url, "300 millis")
      const b = yield* openLock(server.url, "300 millis")
      const holding = yield* Deferred.make<void>()
      const holder = yield* a.withLock("s", Effect.andThen(Deferred.succeed(holding, undefined), Effect.sleep("1 second")))
        .pipe(Effect.forkChild)
      yield* Deferred.await(holding)
      const info = yield* b.inspect("s")
      assert.isTrue(info.held)
      assert.strictEqual(Option.getOrUndefined(info.lastHolder)?.pid, process.pid)
      const waited = yield* Effect.exit(b.withLock("s", Effect.void, { waitTimeout: "600 millis" }))
      assert.isTrue(Exit.isFailure(waited), "still held after two leases: renewed")
      yield* Fiber.join(holder)
      yield* b.withLock("s", Effect.void, { waitTimeout: "1 second" })
      assert.isFalse((yield* a.inspect("s")).held)
    }).pipe(Effect.scoped))

  it.live("a holder that died (stopped renewing) frees its lock within one lease", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const a = yield* openLock(server.url, "400 millis")
      const client = yield* connect(server.url)
      // A dead instance's lock: a holder record that nobody renews.
      const keys = (yield* Effect.gen(function*() {
        const taken = yield* Deferred.make<void>()
        const f = yield* a.withLock("s", Effect.andThen(Deferred.succeed(taken, undefined), Effect.never)).pipe(Effect.forkChild)
        yield* Deferred.await(taken)
        const names = (yield* client.send(["KEYS", "*:lock:*"])) as Array<string>
        const value = yield* client.send(["GET", names[0]!])
        yield* Fiber.interrupt(f)
        return { name: names[0]!, value: String(value) }
      }))
      yield* client.send(["SET", keys.name, keys.value, "PX", "400"])
      const b = yield* openLock(server.url, "400 millis")
      assert.isTrue((yield* b.inspect("s")).held)
      yield* b.withLock("s", Effect.void, { waitTimeout: "3 seconds" })
    }).pipe(Effect.scoped))

  it.live("the lock reports Unavailable, not a hang, when Redis is down", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.acquire()
      const a = yield* openLock(server.url)
      yield* Effect.promise(() => server.stop())
      const exit = yield* Effect.exit(a.withLock("s", Effect.void, { waitTimeout: "2 seconds" }))
      assert.isTrue(Exit.isFailure(exit))
      const e = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      assert.isTrue(e?._tag === "Fail" && e.error instanceof RefreshLock.RefreshLockError && e.error.reason._tag === "Unavailable")
    }).pipe(Effect.scoped))
})
