/**
 * Sessions: what embedding applications call. `getAccessToken` returns a token
 * valid for at least `minTtl`, from memory when it is, else refreshed: once
 * per grant at a time in the process (a thousand concurrent callers cause one
 * refresh and all get its result) and across processes (the `RefreshLock`;
 * under it the store is re-read, and a token another process already obtained
 * is reused). A rotated refresh token is persisted before any caller sees the
 * new access token; if persisting fails, the refresh fails closed and the
 * previous record stays.
 *
 * Refresh outcomes are classified: `invalid_grant` / `invalid_client` put the
 * session in `needs_reauth` (metadata kept, secrets dropped, never retried);
 * 5xx, 429, network errors and timeouts are retried with `retrySchedule`
 * and the refresh token is kept.
 *
 * The contract is at the top of this module; the implementation follows it.
 * Serving a token (cache, selection, single flight) is `internal/TokenAccess.ts`;
 * the errors are `SessionsError.ts`, re-exported here.
 */
import { Clock, Context, Duration, Effect, Layer, Option } from "effect"
import type * as Redacted from "effect/Redacted"
import * as AuditLog from "./AuditLog.js"
import * as Refresher from "./internal/Refresher.js"
import * as RefreshRetry from "./internal/RefreshRetry.js"
import * as SessionCache from "./internal/SessionCache.js"
import * as SessionLifecycle from "./internal/SessionLifecycle.js"
import * as TokenAccess from "./internal/TokenAccess.js"
import * as Metrics from "./Metrics.js"
import * as OAuthClient from "./OAuthClient.js"
import * as RefreshLock from "./RefreshLock.js"
import * as SessionConfig from "./SessionConfig.js"
import * as Errors from "./SessionsError.js"
import type { ReauthRequired, SessionsError } from "./SessionsError.js"
import * as TokenStore from "./TokenStore.js"
import * as UserContext from "./UserContext.js"

export { ReauthRequired, type Reason, SessionsError } from "./SessionsError.js"

/** What a caller asks a token for. */
export interface TokenRequest {
  /** Scopes the token must carry; a session whose granted scopes cover them serves the request. */
  readonly scopes?: ReadonlyArray<string> | undefined
  /** RFC 8707 resource the token must be bound to. */
  readonly resource?: string | undefined
  /** The token must stay valid at least this long (default `defaultMinTtl`). */
  readonly minTtl?: Duration.Input | undefined
  /**
   * The provider's settings, for a provider that is not configured (an MCP
   * server's discovered authorization server, see `Mcp.ts`); default: the
   * configured provider of that name.
   */
  readonly settings?: SessionConfig.ProviderSettings | undefined
}

/** How a login reaches the user (the CLI prints these, an app may show them). */
export type LoginEvent =
  | { readonly _tag: "AuthorizationUrl"; readonly url: string }
  | {
    readonly _tag: "DeviceCode"
    readonly verificationUri: string
    readonly verificationUriComplete: Option.Option<string>
    readonly userCode: string
    readonly expiresIn: number
    readonly interval: number
  }

/** Options of a login. */
export interface LoginOptions {
  readonly device?: boolean | undefined
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly resource?: string | undefined
  /** Opens a browser on the authorization URL (authorization code only); failures are ignored. */
  readonly openBrowser?: ((url: string) => Effect.Effect<void, unknown>) | undefined
  readonly onEvent: (event: LoginEvent) => Effect.Effect<void>
  /** How long to wait for the browser or the device approval. */
  readonly timeout?: Duration.Input | undefined
  /** Sign in with these settings instead of the configured provider of that name (MCP, dynamic registration). */
  readonly settings?: SessionConfig.ProviderSettings | undefined
}

/** The result of one refresh of one session. */
export type RefreshOutcome =
  /** The server issued new tokens; `rotated` when it also issued a new refresh token. */
  | { readonly _tag: "Refreshed"; readonly rotated: boolean; readonly generation: number }
  /** Another process had already refreshed: its token was reused, nothing was sent. */
  | { readonly _tag: "Reused"; readonly generation: number }
  /** Still valid beyond the threshold: nothing to do. */
  | { readonly _tag: "Fresh" }
  /** The grant is dead (`invalid_grant` / `invalid_client`): the session is now `needs_reauth`. */
  | { readonly _tag: "NeedsReauth"; readonly reason: string }
  /** Transient failures outlasted the retry schedule; the refresh token is kept. */
  | { readonly _tag: "Failed"; readonly reason: string; readonly retryable: boolean }

/** The operations embedders call. */
export interface Shape {
  /** A token valid for at least `minTtl`; refreshes (once per grant) when needed. */
  readonly getAccessToken: (
    provider: string,
    request?: TokenRequest
  ) => Effect.Effect<Redacted.Redacted<string>, ReauthRequired | SessionsError>
  /** Logs in (authorization code + PKCE, or the device grant) and stores the session. */
  readonly login: (
    provider: string,
    options: LoginOptions
  ) => Effect.Effect<TokenStore.SessionMetadata, SessionsError>
  /** Revokes (unless `revoke: false`) and removes the session(s) of a provider that match. */
  readonly logout: (
    provider: string,
    options: { readonly revoke: boolean; readonly scopes?: ReadonlyArray<string> | undefined; readonly resource?: string | undefined }
  ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly revoked: "revoked" | "unsupported" | "skipped" | "failed" }>, SessionsError>
  /** Refreshes one stored session now (`force`: even when still fresh). */
  readonly refresh: (id: string, options?: { readonly force?: boolean | undefined }) => Effect.Effect<RefreshOutcome, SessionsError>
}

/** The sessions of this process's user context. */
export class Sessions extends Context.Service<Sessions, Shape>()("magictunnel-session/Sessions") {}

/**
 * What another instance of a fleet changed, told to this process's `Sessions`
 * (by `FleetSync`): not part of {@link Shape}, and built by {@link layer} beside it.
 */
export class CacheInvalidation extends Context.Service<CacheInvalidation, {
  /**
   * A session was written with `generation` elsewhere (its cached token is
   * dropped when older), or removed (`None`: forgotten).
   */
  readonly invalidate: (id: string, generation: Option.Option<number>) => Effect.Effect<void>
}>()("magictunnel-session/Sessions/CacheInvalidation") {}

// -----------------------------------------------------------------------------
// Implementation
// -----------------------------------------------------------------------------

/** What `getAccessToken` guarantees by default: the token stays valid at least this long. */
export const defaultMinTtl: Duration.Duration = Duration.seconds(60)

/** How long a browser sign-in waits for the redirect when the caller gives no timeout. */
export const defaultLoginTimeout: Duration.Duration = Duration.minutes(5)

/** Retries of a transiently failed refresh; see `internal/RefreshRetry.ts`. */
export const retrySchedule = RefreshRetry.retrySchedule

/** Retries of storing a refreshed record before failing closed with `PersistFailed`. */
export const persistRetrySchedule = RefreshRetry.persistRetrySchedule

const defaultMinTtlMs = Duration.toMillis(defaultMinTtl)

/** The provider part of a session id (`provider` or `provider~hash`). */
const providerOfId = (id: string) => id.split("~")[0] ?? id

/** Builds the service and its cache invalidation; refreshes run in the scope. */
const build = Effect.gen(function*() {
  const store = AuditLog.auditStore(Metrics.observeStore(yield* TokenStore.TokenStore))
  const lock = yield* RefreshLock.RefreshLock
  const oauth = yield* OAuthClient.OAuthClient
  const config = yield* SessionConfig.SessionConfig
  const user = yield* UserContext.UserContext
  // The clock in force when the layer is built (a TestClock in tests that build it), read once.
  const clock = yield* Clock.Clock
  const scope = yield* Effect.scope
  const cache = SessionCache.make()
  const refresher = Refresher.make({ store, lock, oauth, config, namespace: user.namespace, cache, scope })
  const thresholdMs = config.settings.tokenRefresh.refreshThresholdMinutes * 60_000

  const fingerprintOf = (id: string) => TokenStore.fingerprint(user.namespace, id)
  const annotate = (provider: string, id?: string) =>
    Effect.annotateCurrentSpan(
      id === undefined
        ? { "session.provider": provider }
        : { "session.provider": provider, "session.fingerprint": fingerprintOf(id) }
    )
  const failWith = Errors.failure
  const storeFailure = Errors.storeFailure
  const unknownProvider = (operation: Errors.Operation, provider: string) =>
    Errors.unknownProvider(operation, provider, [...config.providers.keys()])
  const settingsOf = (operation: Errors.Operation, provider: string) => {
    const settings = config.providers.get(provider)
    return settings === undefined ? Effect.fail(unknownProvider(operation, provider)) : Effect.succeed(settings)
  }

  const getAccessToken = TokenAccess.make({ store, config, cache, refresher, clock, scope, annotate, defaultMinTtlMs })

  const refresh = Effect.fn("Sessions.refresh")(function*(id: string, options?: { readonly force?: boolean | undefined }) {
    const provider = providerOfId(id)
    yield* annotate(provider, id)
    const record = yield* store.get(id).pipe(Effect.mapError(storeFailure("refresh", provider)))
    const force = options?.force === true
    const outcome: RefreshOutcome = record.state === "needs_reauth"
      ? { _tag: "NeedsReauth", reason: record.lastError ?? "the session needs to be signed in again" }
      : !force && SessionCache.expiresAtMsOf(record) - (yield* Clock.currentTimeMillis) >= thresholdMs
      ? { _tag: "Fresh" }
      : yield* refresher.refresh({ id, provider: record.provider, needMs: thresholdMs, force, seenGeneration: record.generation })
        .pipe(
          Effect.map((done): RefreshOutcome => done.outcome),
          Effect.catch((e) => {
            const failure = e.failure
            switch (failure._tag) {
              case "Reauth":
                return Effect.succeed<RefreshOutcome>({ _tag: "NeedsReauth", reason: failure.detail })
              case "OAuth":
                return Effect.succeed<RefreshOutcome>({
                  _tag: "Failed",
                  reason: failure.error.message,
                  retryable: failure.error.retryable
                })
              default:
                return Effect.fail(failWith("refresh", record.provider)(failure))
            }
          })
        )
    yield* Effect.annotateCurrentSpan("session.outcome", outcome._tag)
    return outcome
  })

  const lifecycle = SessionLifecycle.make({
    store,
    lock,
    oauth,
    config,
    cache,
    annotate,
    loginTimeout: defaultLoginTimeout
  })

  const invalidation = CacheInvalidation.of({
    invalidate: (id, generation) => Effect.sync(() => cache.invalidate(id, Option.getOrUndefined(generation)))
  })

  const service = Sessions.of({
    getAccessToken,
    refresh,
    login: Effect.fn("Sessions.login")(function*(provider: string, options: LoginOptions) {
      yield* annotate(provider)
      const settings = options.settings ?? (yield* settingsOf("login", provider))
      return yield* lifecycle.login(settings, options).pipe(
        Effect.mapError(failWith("login", provider)),
        Effect.tap((m) =>
          AuditLog.record({
            event: "login",
            provider,
            sessionId: m.id,
            outcome: "success",
            backend: store.backend,
            generation: m.generation,
            reason: options.device === true ? "device authorization grant" : "authorization code with PKCE"
          })
        ),
        Effect.tapError((e) =>
          AuditLog.record({ event: "login", provider, outcome: "failed", reason: Errors.reasonTag(e.reason), backend: store.backend })
        )
      )
    }),
    logout: Effect.fn("Sessions.logout")(function*(
      provider: string,
      options: { readonly revoke: boolean; readonly scopes?: ReadonlyArray<string> | undefined; readonly resource?: string | undefined }
    ) {
      yield* annotate(provider)
      const settings = config.providers.get(provider)
      const results = yield* lifecycle.logout(provider, settings, options).pipe(Effect.mapError(failWith("logout", provider)))
      for (const r of results) {
        yield* AuditLog.record({ event: "revocation", provider, sessionId: r.id, outcome: r.revoked })
        yield* AuditLog.record({ event: "logout", provider, sessionId: r.id, outcome: "removed", backend: store.backend })
      }
      if (settings === undefined && results.length === 0) {
        return yield* unknownProvider("logout", provider)
      }
      return results
    })
  })
  return { service, invalidation }
})

/** Builds the service; refreshes run in the layer's scope, so an interrupted caller never strands one. */
export const make = Effect.map(build, ({ service }) => service)

/** The sessions of this process's user context, and the hook that keeps its cache in step with a fleet. */
export const layer: Layer.Layer<
  Sessions | CacheInvalidation,
  never,
  TokenStore.TokenStore | RefreshLock.RefreshLock | OAuthClient.OAuthClient | SessionConfig.SessionConfig | UserContext.UserContext
> = Layer.effectContext(
  Effect.map(build, ({ invalidation, service }) => Context.make(Sessions, service).pipe(Context.add(CacheInvalidation, invalidation)))
)
