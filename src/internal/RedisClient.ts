/**
 * RedisClient: the one connection of a process to the fleet's Redis, over
 * node-redis (the client `@effect/platform-node/NodeRedis` builds on; used
 * directly here because the fleet needs a reconnect strategy that never gives
 * up and commands that fail fast while Redis is away, where NodeRedis stops
 * reconnecting after a socket timeout and queues commands while offline).
 *
 * Every command is bounded by `redis.command_timeout_seconds` and fails with
 * a {@link RedisFailure} that says whether Redis was unreachable, too slow, or
 * refused (ACL, wrong password). While the connection is down, commands fail
 * at once (`disableOfflineQueue`), so a caller with a cached token keeps
 * serving it and a health probe reports the outage; the client reconnects in
 * the background with a capped, jittered backoff ({@link reconnectDelayMs}).
 * Scripts run by SHA and are re-sent when Redis restarted and forgot them.
 *
 * `redis` is imported lazily, so processes that never use the fleet store
 * never load it. Credentials come from the environment (never the URL) and
 * never reach a message: {@link describeUrl} strips them.
 */
import * as Crypto from "node:crypto"
import { Context, Data, Duration, Effect, Option, Redacted, type Scope } from "effect"

/** Why a Redis command failed. */
export type Kind = "Unavailable" | "Timeout" | "AccessDenied" | "Rejected"

/** A failed Redis command; the detail never carries a credential or a stored value. */
export class RedisFailure extends Data.TaggedError("RedisFailure")<{
  readonly kind: Kind
  readonly detail: string
}> {
  override get message(): string {
    return `redis ${this.kind.toLowerCase()}: ${this.detail}`
  }
}

/** A Lua script and its SHA-1 (the name Redis caches it under). */
export interface Script {
  readonly source: string
  readonly sha: string
}

/** Declares a script. */
export const script = (source: string): Script => ({
  source,
  sha: Crypto.createHash("sha1").update(source).digest("hex")
})

/** What the fleet modules need of a connection. */
export interface Client {
  /** The URL without credentials, for messages and `doctor`. */
  readonly description: string
  /** One command; the reply as node-redis decodes it (RESP2: strings, numbers, arrays, null). */
  readonly send: (args: ReadonlyArray<string>) => Effect.Effect<unknown, RedisFailure>
  /** Runs a script by SHA, loading it when Redis does not know it (after a restart). */
  readonly run: (script: Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string>) => Effect.Effect<unknown, RedisFailure>
  /** Subscribes to a channel for as long as the scope lives; resubscribes after reconnects. */
  readonly subscribe: (channel: string, onMessage: (message: string) => void) => Effect.Effect<void, RedisFailure, Scope.Scope>
  /** Whether the connection is up right now. */
  readonly isReady: () => boolean
}

/** Connection settings. */
export interface Options {
  readonly url: string
  readonly tls: boolean
  readonly username: Option.Option<string>
  readonly password: Option.Option<Redacted.Redacted<string>>
  readonly commandTimeout: Duration.Duration
}

/** The delay before reconnect attempt `retries`: 50 ms doubling up to 2 s, plus up to 200 ms of jitter. */
export const reconnectDelayMs = (retries: number): number =>
  Math.min(50 * 2 ** Math.min(retries, 10), 2_000) + Math.floor(Math.random() * 200)

/** The URL with any user or password removed. */
export const describeUrl = (raw: string): string => {
  try {
    const url = new URL(raw)
    url.username = ""
    url.password = ""
    return url.toString()
  } catch {
    return "(unparsable redis URL)"
  }
}

const kindOf = (cause: unknown, isReply: boolean): Kind => {
  const text = cause instanceof Error ? cause.message : String(cause)
  if (!isReply) return "Unavailable"
  return /^(NOPERM|WRONGPASS|NOAUTH)/.test(text) ? "AccessDenied" : "Rejected"
}

/**
 * A failure from a thrown node-redis error: a reply of the server (`isReply`,
 * short and never echoing values) or a connection problem.
 */
export const failureOf = (cause: unknown, isReply: boolean): RedisFailure => {
  const kind = kindOf(cause, isReply)
  const text = cause instanceof Error ? cause.message : String(cause)
  return new RedisFailure({ kind, detail: kind === "Unavailable" ? `not connected (${text.slice(0, 120)})` : text.slice(0, 200) })
}

/** Connects; the connection is closed when the scope closes. Fails when Redis does not answer within the command timeout. */
export const make = Effect.fnUntraced(function*(options: Options) {
  const redis = yield* Effect.promise(() => import("redis"))
  const description = describeUrl(options.url)
  const timeoutMs = Duration.toMillis(options.commandTimeout)
  const clientOptions = {
    url: options.url,
    ...(Option.isSome(options.username) ? { username: options.username.value } : {}),
    ...(Option.isSome(options.password) ? { password: Redacted.value(options.password.value) } : {}),
    // Fail commands while disconnected instead of queueing them behind an outage.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: timeoutMs,
      reconnectStrategy: reconnectDelayMs,
      ...(options.tls || options.url.toLowerCase().startsWith("rediss:") ? { tls: true as const } : {})
    }
  }
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => redis.createClient(clientOptions)),
    (c) => Effect.sync(() => c.destroy())
  )
  // node-redis rethrows `error` events without a listener; reconnection is its own business.
  client.on("error", () => {})

  const bounded = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, RedisFailure> =>
    // By class, not by name: a bundler renames classes.
    Effect.tryPromise({ try: f, catch: (cause) => failureOf(cause, cause instanceof redis.ErrorReply) }).pipe(
      Effect.timeoutOrElse({
        duration: options.commandTimeout,
        orElse: () => Effect.fail(new RedisFailure({ kind: "Timeout", detail: `${what}: no answer within ${timeoutMs} ms` }))
      })
    )

  yield* bounded(`connect to ${description}`, () => client.connect()).pipe(
    Effect.mapError((e) => new RedisFailure({ kind: e.kind, detail: `${description}: ${e.detail}` }))
  )

  const send = (args: ReadonlyArray<string>) => bounded(args[0] ?? "command", () => client.sendCommand([...args]))

  const run = (s: Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string>) =>
    send(["EVALSHA", s.sha, String(keys.length), ...keys, ...args]).pipe(
      Effect.catchIf(
        (e) => e.kind === "Rejected" && e.detail.startsWith("NOSCRIPT"),
        () => send(["EVAL", s.source, String(keys.length), ...keys, ...args])
      )
    )

  const subscribe = (channel: string, onMessage: (message: string) => void) =>
    Effect.gen(function*() {
      const subscriber = yield* Effect.acquireRelease(
        Effect.sync(() => client.duplicate()),
        (s) => Effect.sync(() => s.destroy())
      )
      subscriber.on("error", () => {})
      yield* bounded(`subscribe to ${channel}`, async () => {
        await subscriber.connect()
        await subscriber.subscribe(channel, (message: string) => onMessage(message))
      })
    })

  const connection: Client = {
    description,
    send,
    run,
    subscribe,
    isReady: () => client.isReady
  }
  return connection
})

/** The Redis connection of this process, shared by the fleet store and the fleet lock. */
export class RedisConnection extends Context.Service<RedisConnection, Client>()("magictunnel-session/RedisConnection") {}

