/**
 * TokenStore: where sessions are kept between runs.
 *
 * One contract for every backend (memory, encrypted file, macOS Keychain,
 * Windows Credential Manager, Linux Secret Service): get, put, remove, list and
 * a health probe, failing only with {@link TokenStoreError} whose `reason` says
 * what went wrong and whether retrying may help. A store instance is bound to
 * one user context (namespace) when it is built, so callers never pass a user
 * and can never see another namespace's sessions.
 *
 * Records are versioned {@link SessionRecord}s with an absolute expiry and
 * secrets held as `Redacted`; the metadata of a record ({@link SessionMetadata})
 * carries no secret and is what `list` returns, so listing never needs a secret
 * to leave its store.
 */
import * as Crypto from "node:crypto"
import { Clock, Context, Data, DateTime, Duration, Effect, Layer, Option, Ref, Schema } from "effect"
import type * as Redacted from "effect/Redacted"

/** The concrete backends. `auto` is a selection rule, not a backend. */
export type Backend = "memory" | "filesystem" | "keychain" | "credential_manager" | "secret_service" | "redis"

/** How long a backend keeps what it is given (after keyring-rs). */
export type Durability = "process" | "persistent"

/** Lifecycle state stored with a record. `expired` is derived from the clock, never stored. */
export const RecordState = Schema.Literals(["active", "needs_reauth"])
export type RecordState = typeof RecordState.Type

/**
 * The reserved provider name of client registrations (RFC 7591) kept in the
 * store beside the sessions (see `mcp/Registration.ts`): not a session, so
 * lists, recovery and cleanup leave such records out.
 */
export const clientRegistrationProvider = "dcr"

/** Whether a stored record is a session (and not a client registration). */
export const isSession = (m: { readonly provider: string }): boolean => m.provider !== clientRegistrationProvider

/** A provider name: used in session ids, file names and CLI arguments. */
export const providerNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/**
 * A stored session (format version 1). `refreshToken` is optional everywhere:
 * providers that do not rotate, or omit it on refresh, are normal. A record in
 * `needs_reauth` keeps its metadata and has its secrets dropped.
 */
export class SessionRecord extends Schema.Class<SessionRecord>("magictunnel-session/SessionRecord")({
  version: Schema.Literal(1),
  id: Schema.String,
  provider: Schema.String,
  /** Issuer identifier (RFC 8414), when known: enough to rediscover endpoints. */
  issuer: Schema.optional(Schema.String),
  /** Token endpoint, so a refresh needs neither discovery nor the config. */
  tokenEndpoint: Schema.optional(Schema.String),
  clientId: Schema.String,
  /** Scopes granted (not merely requested). */
  scopes: Schema.Array(Schema.String),
  /** RFC 8707 resource indicator the grant is bound to. */
  resource: Schema.optional(Schema.String),
  tokenType: Schema.String,
  accessToken: Schema.optional(Schema.Redacted(Schema.String)),
  refreshToken: Schema.optional(Schema.Redacted(Schema.String)),
  idToken: Schema.optional(Schema.Redacted(Schema.String)),
  /** Absolute expiry of the access token; absent when the server gave none. */
  expiresAt: Schema.optional(Schema.DateTimeUtcFromMillis),
  subject: Schema.optional(Schema.String),
  state: RecordState,
  /** Incremented on every refresh: orders writes and names rotations. */
  generation: Schema.Int,
  createdAt: Schema.DateTimeUtcFromMillis,
  updatedAt: Schema.DateTimeUtcFromMillis,
  lastRefreshAt: Schema.optional(Schema.DateTimeUtcFromMillis),
  /** Secret-free description of the last failure. */
  lastError: Schema.optional(Schema.String)
}) {}

/** What `list` returns for one session: no secret, plus what the store knows of its health. */
export interface SessionMetadata {
  readonly id: string
  readonly provider: string
  readonly issuer: Option.Option<string>
  readonly clientId: string
  readonly scopes: ReadonlyArray<string>
  readonly resource: Option.Option<string>
  readonly expiresAt: Option.Option<DateTime.Utc>
  readonly subject: Option.Option<string>
  readonly state: RecordState | "corrupted"
  readonly hasRefreshToken: boolean
  readonly generation: number
  readonly updatedAt: DateTime.Utc
  readonly lastRefreshAt: Option.Option<DateTime.Utc>
  readonly lastError: Option.Option<string>
  readonly backend: Backend
}

/** The secret-free view of a record. */
export const metadataOf = (record: SessionRecord, backend: Backend): SessionMetadata => ({
  id: record.id,
  provider: record.provider,
  issuer: Option.fromUndefinedOr(record.issuer),
  clientId: record.clientId,
  scopes: record.scopes,
  resource: Option.fromUndefinedOr(record.resource),
  expiresAt: Option.fromUndefinedOr(record.expiresAt),
  subject: Option.fromUndefinedOr(record.subject),
  state: record.state,
  hasRefreshToken: record.refreshToken !== undefined,
  generation: record.generation,
  updatedAt: record.updatedAt,
  lastRefreshAt: Option.fromUndefinedOr(record.lastRefreshAt),
  lastError: Option.fromUndefinedOr(record.lastError),
  backend
})

/**
 * The id of a session: the provider name alone for its default session, or
 * `provider~<hash>` for a session bound to a resource or a non-default scope
 * set (multi-level auth: server, capability and tool level coexist).
 */
export const sessionIdOf = (key: {
  readonly provider: string
  readonly resource?: string | undefined
  readonly scopes?: ReadonlyArray<string> | undefined
}): string => {
  if (key.resource === undefined && (key.scopes === undefined || key.scopes.length === 0)) return key.provider
  const scopes = [...new Set(key.scopes ?? [])].sort().join(" ")
  const digest = Crypto.createHash("sha256").update(`${key.resource ?? ""}\n${scopes}`).digest("hex").slice(0, 12)
  return `${key.provider}~${digest}`
}

/** A short, stable, non-reversible name for a session, safe for logs and spans. */
export const fingerprint = (namespace: string, id: string): string =>
  Crypto.createHash("sha256").update(`${namespace}\n${id}`).digest("hex").slice(0, 12)

/** Why a store operation failed. `retryable` says whether trying again may succeed. */
export type Reason =
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "Unavailable"; readonly detail: string }
  | { readonly _tag: "AccessDenied"; readonly detail: string }
  | { readonly _tag: "Timeout"; readonly afterMs: number }
  | { readonly _tag: "Corrupted"; readonly detail: string; readonly quarantinedAs?: string | undefined }
  | { readonly _tag: "Io"; readonly detail: string }
  | { readonly _tag: "Conflict"; readonly detail: string }

/** Whether an operation failing for `reason` may succeed when retried. */
export const isRetryable = (reason: Reason): boolean =>
  reason._tag === "Unavailable" || reason._tag === "Timeout" || reason._tag === "Io" || reason._tag === "Conflict"

/** A failed store operation. The message names the backend, operation and session, never a secret. */
export class TokenStoreError extends Data.TaggedError("TokenStoreError")<{
  readonly backend: Backend
  readonly operation: "get" | "put" | "remove" | "list" | "health" | "open"
  readonly sessionId?: string | undefined
  readonly reason: Reason
}> {
  get retryable(): boolean {
    return isRetryable(this.reason)
  }
  override get message(): string {
    const r = this.reason
    const what = `${this.backend} ${this.operation}${this.sessionId === undefined ? "" : ` ${this.sessionId}`}`
    switch (r._tag) {
      case "NotFound":
        return `${what}: no such session`
      case "Timeout":
        return `${what}: timed out after ${r.afterMs} ms`
      case "Corrupted":
        return `${what}: record is corrupted (${r.detail})${
          r.quarantinedAs === undefined ? "" : `; kept aside as ${r.quarantinedAs}`
        }`
      default:
        return `${what}: ${r._tag.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase()}: ${r.detail}`
    }
  }
}

/** The result of a health probe. */
export interface Health {
  readonly backend: Backend
  readonly available: boolean
  readonly detail: string
  readonly latencyMs: number
}

/**
 * Runs a backend's health probe bounded by `timeout` and reports it: never
 * fails, and measures the latency with the `Clock`.
 */
export const timedProbe = (options: {
  readonly backend: Backend
  readonly probe: Effect.Effect<void, { readonly message: string }>
  readonly timeout: Duration.Duration
  /** Where the store is, e.g. `files in /path` or `redis at host:port`. */
  readonly where: string
  /** How records are kept there, e.g. `sealed with AES-256-GCM; key: ...`. */
  readonly how: string
}): Effect.Effect<Health> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const failure = yield* options.probe.pipe(
      Effect.timeoutOption(options.timeout),
      Effect.map(Option.match({
        onNone: () => Option.some(`no answer within ${Duration.toMillis(options.timeout)} ms`),
        onSome: () => Option.none<string>()
      })),
      Effect.catch((e) => Effect.succeed(Option.some(e.message)))
    )
    return {
      backend: options.backend,
      available: Option.isNone(failure),
      detail: Option.match(failure, {
        onNone: () => `${options.where}, ${options.how}`,
        onSome: (why) => `${options.where}: not usable: ${why}`
      }),
      latencyMs: (yield* Clock.currentTimeMillis) - start
    }
  })

/** The store contract every backend implements. */
export interface Shape {
  readonly backend: Backend
  readonly durability: Durability
  /** True when secrets are kept unencrypted outside an OS keyring (plaintext file store). */
  readonly insecure: boolean
  /** Fails with `NotFound`, or `Corrupted` after the damaged record was set aside. */
  readonly get: (id: string) => Effect.Effect<SessionRecord, TokenStoreError>
  /** Replaces the whole record atomically: afterwards it is fully the new record or still the old one. */
  readonly put: (record: SessionRecord) => Effect.Effect<void, TokenStoreError>
  /** Removes the record and its metadata; removing a missing session succeeds. */
  readonly remove: (id: string) => Effect.Effect<void, TokenStoreError>
  /** Metadata of every session of this namespace, including ones known to be corrupted. */
  readonly list: Effect.Effect<ReadonlyArray<SessionMetadata>, TokenStoreError>
  /**
   * True when `list` opens every record, so a damaged one is already listed as
   * `corrupted` and callers need no `get` per session to verify them (recovery,
   * `mtsession list`). Absent means false.
   */
  readonly listVerifies?: boolean | undefined
  /** A bounded probe: never fails, reports. */
  readonly health: Effect.Effect<Health>
}

/** The token store of this process's user context. */
export class TokenStore extends Context.Service<TokenStore, Shape>()("magictunnel-session/TokenStore") {}

/** Reads a secret for the one place that must see it (the wire, or `mtsession token`). */
export type Secret = Redacted.Redacted<string>

/** An in-memory store: nothing survives the process. For tests and ephemeral use. */
export const makeMemory = Effect.gen(function*() {
  const records = yield* Ref.make(new Map<string, SessionRecord>())
  const fail = (operation: TokenStoreError["operation"], sessionId: string, reason: Reason) =>
    new TokenStoreError({ backend: "memory", operation, sessionId, reason })
  return TokenStore.of({
    backend: "memory",
    durability: "process",
    insecure: false,
    listVerifies: true,
    get: (id) =>
      Effect.flatMap(Ref.get(records), (m) => {
        const r = m.get(id)
        return r === undefined ? Effect.fail(fail("get", id, { _tag: "NotFound" })) : Effect.succeed(r)
      }),
    put: (record) => Ref.update(records, (m) => new Map(m).set(record.id, record)),
    remove: (id) =>
      Ref.update(records, (m) => {
        const next = new Map(m)
        next.delete(id)
        return next
      }),
    list: Effect.map(Ref.get(records), (m) => Array.from(m.values(), (r) => metadataOf(r, "memory"))),
    health: Effect.succeed({ backend: "memory", available: true, detail: "in process memory", latencyMs: 0 })
  })
})

/** The in-memory store. */
export const layerMemory = Layer.effect(TokenStore, makeMemory)

/** A new record for a fresh grant, generation 0, timestamps from the `Clock`. */
export const newRecord = Effect.fnUntraced(function*(fields: {
  readonly id: string
  readonly provider: string
  readonly issuer?: string | undefined
  readonly tokenEndpoint?: string | undefined
  readonly clientId: string
  readonly scopes: ReadonlyArray<string>
  readonly resource?: string | undefined
  readonly tokenType: string
  readonly accessToken: Secret
  readonly refreshToken?: Secret | undefined
  readonly idToken?: Secret | undefined
  readonly expiresAt?: DateTime.Utc | undefined
  readonly subject?: string | undefined
}) {
  const now = yield* DateTime.now
  return new SessionRecord({
    version: 1,
    ...fields,
    scopes: [...fields.scopes],
    state: "active",
    generation: 0,
    createdAt: now,
    updatedAt: now
  })
})
