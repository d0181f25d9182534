/**
 * The Redis token store (fleet mode): the sessions of one namespace shared by
 * every instance of a deployment through one Redis.
 *
 * Records are sealed exactly as the encrypted file store seals them (the
 * AES-256-GCM envelope of `RecordCodec`, bound to the namespace and the
 * record's file key), with the data key from `EncryptionKey`
 * (`MAGICTUNNEL_TOKEN_ENCRYPTION_KEY` or a key service): Redis only ever holds
 * ciphertext and secret-free metadata, never the key. Every change is one Lua
 * script (`internal/RedisScripts.ts`): the record, the metadata hash and the
 * change notification move together, and a put is a compare-and-set on the
 * record's generation, fenced by the refresh lock when made under it, so a
 * late writer can never overwrite a newer rotation (it fails with `Conflict`).
 *
 * Damage stays local as in the file store: a record that does not open is
 * renamed aside (`...:corrupt:<fileKey>:<ms>`, never deleted) and reported as
 * `Corrupted`. Redis being unreachable is `Unavailable` (retryable), a slow
 * Redis is `Timeout`, an ACL refusal is `AccessDenied`.
 */
import { Clock, DateTime, Duration, Effect, Layer, Option, Result, Schema } from "effect"
import * as EncryptionKey from "../EncryptionKey.js"
import * as MetadataIndex from "../internal/MetadataIndex.js"
import * as RecordCodec from "../internal/RecordCodec.js"
import * as RedisClient from "../internal/RedisClient.js"
import { CurrentFence } from "../internal/RedisFence.js"
import * as RedisScripts from "../internal/RedisScripts.js"
import { SessionConfig } from "../SessionConfig.js"
import * as TokenStore from "../TokenStore.js"
import { UserContext } from "../UserContext.js"

/** The health probe gives up after this long. */
export const healthTimeout = Duration.seconds(5)

const backend = "redis" as const
const EntryJson = Schema.fromJsonString(Schema.toCodecJson(MetadataIndex.IndexEntry))
const encodeEntry = (entry: MetadataIndex.IndexEntry) => Schema.encodeEffect(EntryJson)(entry).pipe(Effect.orDie)

/** A change another instance (or this one) made, as published on the namespace's channel. */
export const Event = Schema.Struct({
  op: Schema.Literals(["put", "remove"]),
  id: Schema.String,
  generation: Schema.optional(Schema.Int)
})
export type Event = typeof Event.Type
const EventJson = Schema.fromJsonString(Event)
const encodeEvent = (event: Event) => Schema.encodeEffect(EventJson)(event).pipe(Effect.orDie)
/** Decodes a message of the events channel (None for anything else). */
export const decodeEvent = (message: string): Option.Option<Event> =>
  Result.getSuccess(Schema.decodeUnknownResult(EventJson)(message))

/** The reason of a failed command. */
export const reasonOf = (e: RedisClient.RedisFailure): TokenStore.Reason =>
  e.kind === "Timeout"
    ? { _tag: "Timeout", afterMs: 0 }
    : e.kind === "AccessDenied"
    ? { _tag: "AccessDenied", detail: e.detail }
    : e.kind === "Rejected"
    ? { _tag: "Io", detail: e.detail }
    : { _tag: "Unavailable", detail: e.detail }

/** The provider part of a session id (`provider` or `provider~hash`). */
const providerOf = (id: string) => id.split("~")[0] ?? id

/** Builds the store on a connection and a codec. */
export const makeWith = Effect.fnUntraced(function*(options: {
  readonly client: RedisClient.Client
  readonly codec: RecordCodec.Codec
  readonly namespace: string
  readonly keyPrefix: string
}) {
  const { client, codec } = options
  const keys = RedisScripts.keysOf(options.keyPrefix, options.namespace)
  const fail = (operation: TokenStore.TokenStoreError["operation"], sessionId?: string) => (e: RedisClient.RedisFailure) =>
    new TokenStore.TokenStoreError({ backend, operation, sessionId, reason: reasonOf(e) })

  const readEntry = (id: string) =>
    client.send(["HGET", keys.meta, id]).pipe(
      Effect.map((raw) =>
        typeof raw === "string"
          ? Result.getSuccess(Schema.decodeUnknownResult(EntryJson)(raw))
          : Option.none<MetadataIndex.IndexEntry>()
      )
    )

  const quarantine = (id: string, fileKey: string, data: string, problem: RecordCodec.Problem) =>
    Effect.gen(function*() {
      if (!problem.quarantine) return undefined
      const at = yield* Clock.currentTimeMillis
      const target = keys.corrupt(fileKey, at)
      const previous = yield* readEntry(id).pipe(Effect.orElseSucceed(() => Option.none<MetadataIndex.IndexEntry>()))
      const entry = Option.isSome(previous)
        ? new MetadataIndex.IndexEntry({ ...previous.value, state: "corrupted", lastError: problem.detail, quarantinedAs: target })
        : new MetadataIndex.IndexEntry({
          version: 1,
          id,
          provider: providerOf(id),
          clientId: "",
          scopes: [],
          state: "corrupted",
          hasRefreshToken: false,
          generation: 0,
          updatedAt: yield* DateTime.now,
          lastError: problem.detail,
          backend,
          quarantinedAs: target
        })
      const moved = yield* client.run(RedisScripts.quarantine, [keys.record(fileKey), keys.meta, target], [
        data,
        id,
        yield* encodeEntry(entry)
      ]).pipe(Effect.mapError(fail("get", id)))
      if (moved !== 1) {
        return yield* new TokenStore.TokenStoreError({
          backend,
          operation: "get",
          sessionId: id,
          reason: { _tag: "Conflict", detail: "the record changed while it was read; try again" }
        })
      }
      return target
    })

  const get = Effect.fn("TokenStore.redis.get")(function*(id: string) {
    const fileKey = MetadataIndex.fileKeyOf(id)
    const data = yield* client.send(["HGET", keys.record(fileKey), "data"]).pipe(Effect.mapError(fail("get", id)))
    if (typeof data !== "string") {
      const entry = yield* readEntry(id).pipe(Effect.orElseSucceed(() => Option.none<MetadataIndex.IndexEntry>()))
      const reason: TokenStore.Reason = Option.isSome(entry) && entry.value.state === "corrupted"
        ? { _tag: "Corrupted", detail: entry.value.lastError ?? "set aside earlier", quarantinedAs: entry.value.quarantinedAs }
        : { _tag: "NotFound" }
      return yield* new TokenStore.TokenStoreError({ backend, operation: "get", sessionId: id, reason })
    }
    const bytes = new Uint8Array(Buffer.from(data, "base64"))
    return yield* codec.open(fileKey, bytes).pipe(
      Effect.flatMap((plain) => RecordCodec.decode(fileKey, plain)),
      Effect.catch((problem: RecordCodec.Problem) =>
        Effect.flatMap(quarantine(id, fileKey, data, problem), (quarantinedAs) =>
          Effect.fail(
            new TokenStore.TokenStoreError({
              backend,
              operation: "get",
              sessionId: id,
              reason: { _tag: "Corrupted", detail: problem.detail, quarantinedAs }
            })
          ))
      )
    )
  })

  const put = Effect.fn("TokenStore.redis.put")(function*(record: TokenStore.SessionRecord) {
    const fileKey = MetadataIndex.fileKeyOf(record.id)
    const sealed = yield* codec.seal(fileKey, yield* RecordCodec.encode(record))
    const entry = yield* encodeEntry(MetadataIndex.entryOf(TokenStore.metadataOf(record, backend)))
    const fence = Option.filter(yield* CurrentFence, (f) => f.key === record.id)
    const reply = yield* client.run(RedisScripts.put, [keys.record(fileKey), keys.meta, keys.lock(fileKey)], [
      Buffer.from(sealed).toString("base64"),
      String(record.generation),
      record.id,
      entry,
      Option.match(fence, { onNone: () => "", onSome: (f) => f.token }),
      Option.match(fence, { onNone: () => "", onSome: (f) => String(f.fence) }),
      keys.events,
      yield* encodeEvent({ op: "put", id: record.id, generation: record.generation })
    ]).pipe(Effect.mapError(fail("put", record.id)))
    const [outcome, detail] = Array.isArray(reply) ? reply as Array<unknown> : [reply]
    if (outcome === "ok") return
    yield* Effect.annotateCurrentSpan("store.conflict", String(outcome))
    return yield* new TokenStore.TokenStoreError({
      backend,
      operation: "put",
      sessionId: record.id,
      // Not retryable in substance: the stored record is newer. `Conflict` makes callers re-read.
      reason: { _tag: "Conflict", detail: `${String(outcome)}: ${String(detail ?? "")}` }
    })
  })

  const remove = Effect.fn("TokenStore.redis.remove")(function*(id: string) {
    yield* client.run(RedisScripts.remove, [keys.record(MetadataIndex.fileKeyOf(id)), keys.meta], [
      id,
      keys.events,
      yield* encodeEvent({ op: "remove", id })
    ]).pipe(Effect.mapError(fail("remove", id)))
  })

  const list = Effect.fn("TokenStore.redis.list")(function*() {
    const raw = yield* client.send(["HGETALL", keys.meta]).pipe(Effect.mapError(fail("list")))
    const out: Array<TokenStore.SessionMetadata> = []
    // RESP2 HGETALL: a flat array of field, value, field, value ...
    const flat = Array.isArray(raw) ? raw as Array<unknown> : []
    for (let i = 1; i < flat.length; i += 2) {
      const value = flat[i]
      const decoded = typeof value === "string" ? Schema.decodeUnknownResult(EntryJson)(value) : undefined
      if (decoded === undefined || Result.isFailure(decoded)) {
        yield* Effect.logWarning(`redis store: metadata of session ${String(flat[i - 1])} does not decode; skipped`)
        continue
      }
      out.push({ ...MetadataIndex.metadataOfEntry(decoded.success), backend })
    }
    return out
  })

  const health = TokenStore.timedProbe({
    backend,
    where: `redis at ${client.description}`,
    how: codec.describe,
    timeout: healthTimeout,
    probe: client.send(["PING"]).pipe(Effect.asVoid)
  })

  return TokenStore.TokenStore.of({
    backend,
    durability: "persistent",
    insecure: codec.insecure,
    get,
    put,
    remove,
    list: list(),
    health
  })
})

/** The store as configured: sealed with `EncryptionKey`, or plaintext (marked insecure) when encryption is off. */
export const make = Effect.gen(function*() {
  const config = yield* SessionConfig
  const user = yield* UserContext
  const client = yield* RedisClient.RedisConnection
  const codec = config.settings.tokenStorage.encryptionEnabled
    ? RecordCodec.sealed(yield* EncryptionKey.EncryptionKey, user.namespace)
    : RecordCodec.plaintext
  return yield* makeWith({ client, codec, namespace: user.namespace, keyPrefix: config.settings.redis.keyPrefix })
})

/** The Redis connection configured by `auth.session_persistence.redis`; an unreachable Redis fails the `open`. */
export const layerConnection: Layer.Layer<RedisClient.RedisConnection, TokenStore.TokenStoreError, SessionConfig> = Layer
  .effect(
    RedisClient.RedisConnection,
    Effect.gen(function*() {
      const config = yield* SessionConfig
      const redis = config.settings.redis
      return yield* RedisClient.make({
        url: redis.url,
        tls: redis.tls,
        username: config.redisCredentials?.username ?? Option.none(),
        password: config.redisCredentials?.password ?? Option.none(),
        commandTimeout: Duration.seconds(redis.commandTimeoutSeconds)
      }).pipe(
        Effect.mapError((e) => new TokenStore.TokenStoreError({ backend, operation: "open", reason: reasonOf(e) }))
      )
    })
  )

/** The store over a `RedisConnection`; needs `EncryptionKey` when encryption is enabled. */
export const layer = Layer.effect(TokenStore.TokenStore, make)

/** The store with the data key from the configured source (none when encryption is off). */
export const layerConfig = Layer.unwrap(Effect.map(SessionConfig, (config) =>
  config.settings.tokenStorage.encryptionEnabled
    ? layer.pipe(Layer.provide(EncryptionKey.layer))
    : Layer.effect(
      TokenStore.TokenStore,
      Effect.gen(function*() {
        const user = yield* UserContext
        const client = yield* RedisClient.RedisConnection
        return yield* makeWith({ client, codec: RecordCodec.plaintext, namespace: user.namespace, keyPrefix: config.settings.redis.keyPrefix })
      })
    )))
