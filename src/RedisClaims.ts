/**
 * RedisClaims: the background refresh claims of a fleet in Redis (the
 * `RefreshClaims` service; the algorithm is described there).
 *
 * A claim is `<prefix>{<ns>}:claim:<fileKey>` holding the instance's name
 * with a lease (`PX`, `redis.lock_lease_seconds`); live instances are a
 * sorted set `<prefix>{<ns>}:instances` scored by the end of their lease. One
 * Lua script renews, claims and releases in one step on Redis's clock, so
 * instances with skewed clocks agree on who is alive. The layer releases
 * this instance's claims when its scope closes; a killed instance's claims
 * expire after one lease.
 */
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import { Duration, Effect, Layer, Ref } from "effect"
import * as RedisClient from "./internal/RedisClient.js"
import { fileKeyOf } from "./internal/MetadataIndex.js"
import * as RedisScripts from "./internal/RedisScripts.js"
import * as RefreshClaims from "./RefreshClaims.js"
import { SessionConfig } from "./SessionConfig.js"
import { UserContext } from "./UserContext.js"

/** Builds the claims of one instance on a connection (nothing is claimed until the first `sync`). */
export const make = Effect.fnUntraced(function*(options: {
  readonly client: RedisClient.Client
  readonly namespace: string
  readonly keyPrefix: string
  readonly lease: Duration.Duration
  /** Default: host, pid and a random part. */
  readonly instance?: string | undefined
}) {
  const { client } = options
  const keys = RedisScripts.keysOf(options.keyPrefix, options.namespace)
  const instance = options.instance ?? `${Os.hostname()}:${process.pid}:${Crypto.randomUUID().slice(0, 8)}`
  const leaseMs = String(Math.max(1, Math.round(Duration.toMillis(options.lease))))
  const held = yield* Ref.make<ReadonlyArray<string>>([])
  const failed = (e: RedisClient.RedisFailure) => new RefreshClaims.RefreshClaimsError({ detail: e.message })

  const sync = (ids: ReadonlyArray<string>) =>
    client.run(RedisScripts.claimSync, [keys.instances, ...ids.map((id) => keys.claim(fileKeyOf(id)))], [
      instance,
      leaseMs,
      ...ids
    ]).pipe(
      Effect.mapError(failed),
      Effect.map((reply) => (Array.isArray(reply) ? reply.map(String) : [])),
      Effect.tap((now) => Ref.set(held, now)),
      Effect.map((now): ReadonlySet<string> => new Set(now))
    )

  const release = Effect.flatMap(Ref.get(held), (ids) =>
    client.run(RedisScripts.claimRelease, [keys.instances, ...ids.map((id) => keys.claim(fileKeyOf(id)))], [instance]).pipe(
      Effect.andThen(Ref.set(held, [])),
      // Not released now: the leases free them.
      Effect.catch((e) => Effect.logWarning(`refresh claims: release failed (${e.message}); they expire after one lease`))
    ))

  return RefreshClaims.RefreshClaims.of({ instance, lease: options.lease, sync, release })
})

/** The claims of this process over its `RedisConnection`; released when the layer's scope closes. */
export const layer: Layer.Layer<RefreshClaims.RefreshClaims, never, RedisClient.RedisConnection | SessionConfig | UserContext> =
  Layer.effect(
    RefreshClaims.RefreshClaims,
    Effect.gen(function*() {
      const config = yield* SessionConfig
      const user = yield* UserContext
      const claims = yield* make({
        client: yield* RedisClient.RedisConnection,
        namespace: user.namespace,
        keyPrefix: config.settings.redis.keyPrefix,
        lease: Duration.seconds(config.settings.redis.lockLeaseSeconds)
      })
      yield* Effect.addFinalizer(() => claims.release)
      return claims
    })
  )
