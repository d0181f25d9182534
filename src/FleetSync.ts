/**
 * FleetSync: how an instance of a fleet learns what the others changed.
 *
 * Every change the Redis store makes (a put, a removal) is published, inside
 * the same Lua script, on the namespace's channel `<prefix>{<ns>}:events`.
 * This service subscribes to it for as long as its layer lives (node-redis
 * resubscribes after a reconnect). Each event goes at once to the `Sessions`
 * access-token cache of this process (`Sessions.CacheInvalidation`, when
 * present): a session written elsewhere with a newer generation is dropped
 * from the cache and read from the store on its next use, a removed one is
 * forgotten, so an instance stops serving a token another instance replaced
 * or logged out within the delivery time of one message. For each burst of
 * events it also asks the `RefreshSupervisor` (when present) to sweep: one
 * read of the metadata hash, no record opened, so the background refresh
 * schedule follows sessions added, refreshed or removed elsewhere within
 * {@link debounce} instead of at the next `background_check_interval_minutes`.
 * The events are also offered as a stream for embedders that keep their own
 * state.
 */
import { Context, Duration, Effect, Layer, Option, PubSub, Queue, Ref, Stream } from "effect"
import * as RedisClient from "./internal/RedisClient.js"
import * as RedisScripts from "./internal/RedisScripts.js"
import { RefreshSupervisor } from "./RefreshSupervisor.js"
import { SessionConfig } from "./SessionConfig.js"
import * as Sessions from "./Sessions.js"
import * as Redis from "./TokenStore/Redis.js"
import { UserContext } from "./UserContext.js"

/** Events closer together than this cause one sweep. */
export const debounce: Duration.Duration = Duration.millis(100)

/** What the service offers. */
export interface Shape {
  /** Changes published by any instance (this one included), from subscription on. */
  readonly events: Stream.Stream<Redis.Event>
  /** How many sweeps events have caused so far. */
  readonly sweeps: Effect.Effect<number>
}

/** The change feed of this instance. */
export class FleetSync extends Context.Service<FleetSync, Shape>()("magictunnel-session/FleetSync") {}

/** Subscribes and keeps the supervisor's schedule in step with the shared store. */
export const make = Effect.gen(function*() {
  const config = yield* SessionConfig
  const user = yield* UserContext
  const client = yield* RedisClient.RedisConnection
  const supervisor = yield* Effect.serviceOption(RefreshSupervisor)
  const invalidation = yield* Effect.serviceOption(Sessions.CacheInvalidation)
  const keys = RedisScripts.keysOf(config.settings.redis.keyPrefix, user.namespace)
  const hub = yield* PubSub.unbounded<Redis.Event>()
  const wake = yield* Queue.sliding<void>(1)
  const changes = yield* Queue.unbounded<Redis.Event>()
  const count = yield* Ref.make(0)

  yield* client.subscribe(keys.events, (message) => {
    const event = Redis.decodeEvent(message)
    if (Option.isNone(event)) return
    PubSub.publishUnsafe(hub, event.value)
    Queue.offerUnsafe(changes, event.value)
    Queue.offerUnsafe(wake, undefined)
  }).pipe(
    // Without the feed the instance still works: the periodic sweep catches up.
    Effect.catch((e) => Effect.logWarning(`fleet sync: cannot subscribe to changes (${e.message}); relying on the periodic sweep`))
  )

  if (Option.isSome(invalidation)) {
    // Not debounced: a token replaced elsewhere should stop being served now.
    yield* Queue.take(changes).pipe(
      Effect.flatMap((event) =>
        invalidation.value.invalidate(event.id, event.op === "remove" ? Option.none() : Option.fromUndefinedOr(event.generation))
      ),
      Effect.forever,
      Effect.forkScoped
    )
  }

  if (Option.isSome(supervisor)) {
    yield* Queue.take(wake).pipe(
      Effect.andThen(Effect.sleep(debounce)),
      Effect.andThen(Queue.clear(wake)),
      Effect.andThen(Ref.update(count, (n) => n + 1)),
      Effect.andThen(supervisor.value.sweep.pipe(
        Effect.catch((e) => Effect.logWarning(`fleet sync: sweep failed: ${e.message}`))
      )),
      Effect.forever,
      Effect.forkScoped
    )
  }

  return FleetSync.of({
    events: Stream.fromPubSub(hub),
    sweeps: Ref.get(count)
  })
})

/**
 * The change feed; needs the Redis connection, and feeds the `Sessions` cache
 * and the `RefreshSupervisor` of this instance when they are in the context.
 */
export const layer: Layer.Layer<FleetSync, never, RedisClient.RedisConnection | SessionConfig | UserContext> = Layer
  .effect(FleetSync, make)
