/**
 * RedisLock: the refresh lock of a fleet, one refresh per grant at a time
 * across every instance that shares a Redis (the `RefreshLock` service over a
 * Redis `RefreshLock.Backend`; `withLock` and `inspect` behave as documented
 * in docs/locking.md).
 *
 * An attempt is one Lua script: when the lock key is free it takes a new
 * fencing token (`INCR`) and sets the key to the holder (owner token, pid,
 * host, fence) with a lease of `redis.lock_lease_seconds` (`PX`). What the
 * kernel does for the file lock, the lease does here: a holder that dies
 * stops renewing, and its lock is free again within one lease. A live holder
 * renews every third of the lease while its refresh runs; release deletes the
 * key only if it still holds our token.
 *
 * The effect run under the lock sees the fence (`internal/RedisFence.ts`),
 * and the Redis store's put checks it in Redis at write time: a holder whose
 * lease ran out (a long pause, a partition) and whose lock another instance
 * took cannot overwrite what that instance wrote.
 */
import { DateTime, Duration, Effect, Fiber, Layer, Option, Schedule, Schema } from "effect"
import * as RedisClient from "./internal/RedisClient.js"
import { CurrentFence, type Fence } from "./internal/RedisFence.js"
import * as RedisScripts from "./internal/RedisScripts.js"
import { fileKeyOf } from "./internal/MetadataIndex.js"
import * as RefreshLock from "./RefreshLock.js"
import { SessionConfig } from "./SessionConfig.js"
import { UserContext } from "./UserContext.js"

/** How often a holder renews its lease: three times per lease. */
export const renewalsPerLease = 3

const Holder = Schema.fromJsonString(Schema.Struct({
  token: Schema.String,
  pid: Schema.Number,
  hostname: Schema.String,
  acquiredAt: Schema.Number,
  fence: Schema.Number
}))

/** Builds the lock on a connection; renewals run in the layer's scope. */
export const make = Effect.fnUntraced(function*(options: {
  readonly client: RedisClient.Client
  readonly namespace: string
  readonly keyPrefix: string
  readonly lease: Duration.Duration
}) {
  const { client } = options
  const keys = RedisScripts.keysOf(options.keyPrefix, options.namespace)
  const leaseMs = Math.max(1, Math.round(Duration.toMillis(options.lease)))
  const scope = yield* Effect.scope
  // The fence of each key this process holds: the per-key queue in front admits one fiber per key.
  const held = new Map<string, Fence>()
  const unavailable = (key: string) => (e: RedisClient.RedisFailure) =>
    new RefreshLock.RefreshLockError({ key, reason: { _tag: "Unavailable", detail: e.message } })

  const renewal = (key: string, lockKey: string, token: string) =>
    client.run(RedisScripts.renew, [lockKey], [token, String(leaseMs)]).pipe(
      // A passing outage is not a loss: the next renewal may still be within the lease.
      Effect.catch((e) => Effect.as(Effect.logWarning(`refresh lock ${key}: renewal failed: ${e.message}`), 1)),
      Effect.repeat({
        schedule: Schedule.spaced(Duration.millis(Math.max(1, Math.floor(leaseMs / renewalsPerLease)))),
        while: (renewed) => renewed === 1
      }),
      Effect.tap(() => Effect.logWarning(`refresh lock ${key}: lost (lease expired and taken); its writes will be refused`))
    )

  const base = yield* RefreshLock.make({
    name: "redis",
    tryAcquire: (key, owner) =>
      Effect.gen(function*() {
        const lockKey = keys.lock(fileKeyOf(key))
        const fence = yield* client.run(RedisScripts.acquire, [lockKey, keys.fence], [
          owner.token,
          String(owner.pid),
          owner.hostname,
          String(DateTime.toEpochMillis(owner.acquiredAt)),
          String(leaseMs)
        ]).pipe(Effect.mapError(unavailable(key)))
        if (typeof fence !== "number") return Option.none()
        held.set(key, { key, token: owner.token, fence })
        const renewing = yield* Effect.forkIn(Effect.delay(renewal(key, lockKey, owner.token), Duration.millis(leaseMs / renewalsPerLease)), scope)
        const release = Effect.gen(function*() {
          held.delete(key)
          yield* Fiber.interrupt(renewing)
          yield* client.run(RedisScripts.release, [lockKey], [owner.token]).pipe(
            // Not deleted now: the lease frees it.
            Effect.catch((e) => Effect.logWarning(`refresh lock ${key}: release failed (${e.message}); the lease frees it`))
          )
        })
        return Option.some(release)
      }),
    inspect: (key) =>
      Effect.gen(function*() {
        const lockKey = keys.lock(fileKeyOf(key))
        const raw = yield* client.send(["GET", lockKey]).pipe(Effect.mapError(unavailable(key)))
        const holder = typeof raw === "string" ? Schema.decodeUnknownOption(Holder)(raw) : Option.none()
        return {
          key,
          held: typeof raw === "string",
          lastHolder: Option.map(holder, (h) => ({
            pid: h.pid,
            hostname: h.hostname,
            token: h.token,
            acquiredAt: DateTime.makeUnsafe(h.acquiredAt),
            releasedAt: Option.none()
          })),
          location: Option.some(`redis ${client.description} key ${lockKey}`)
        } satisfies RefreshLock.LockInfo
      })
  })

  return RefreshLock.RefreshLock.of({
    ...base,
    withLock: (key, effect, withOptions) =>
      base.withLock(
        key,
        Effect.suspend(() => {
          const fence = held.get(key)
          return fence === undefined ? effect : Effect.provideService(effect, CurrentFence, Option.some(fence))
        }),
        withOptions
      )
  })
})

/** The fleet lock over the process's `RedisConnection`, in the user context's namespace. */
export const layer: Layer.Layer<RefreshLock.RefreshLock, never, RedisClient.RedisConnection | SessionConfig | UserContext> =
  Layer.effect(
    RefreshLock.RefreshLock,
    Effect.gen(function*() {
      const config = yield* SessionConfig
      const user = yield* UserContext
      return yield* make({
        client: yield* RedisClient.RedisConnection,
        namespace: user.namespace,
        keyPrefix: config.settings.redis.keyPrefix,
        lease: Duration.seconds(config.settings.redis.lockLeaseSeconds)
      })
    })
  )
