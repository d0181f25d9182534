/**
 * OAuthClient: the protocol side of sessions. Signs in (authorization code
 * with PKCE on a loopback redirect, or the device grant), refreshes,
 * revokes, introspects and reads userinfo, against any OAuth 2.1 / OpenID
 * Connect provider.
 *
 * Every protocol message is built and checked by oauth4webapi; every byte
 * goes through the Effect `HttpClient` (see `oauth/Fetch.ts`), so each call
 * to an authorization server is a traced request under the operation's span.
 * Spans carry the provider, the grant type and the outcome, never a token,
 * code, verifier, state or client secret; neither do errors.
 *
 * Failures are {@link OAuthError}s whose `reason` says what to do next:
 * `InvalidGrant` / `InvalidClient` mean sign in again, transient reasons
 * mean retry later and keep the token. Retrying is the caller's business
 * (its `Schedule`, its `Retry-After` handling through {@link retryAfterOf}).
 *
 * @see https://datatracker.ietf.org/doc/draft-ietf-oauth-v2-1/
 * @see https://www.rfc-editor.org/rfc/rfc8252 (native apps)
 */
import { Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import { HttpClient } from "effect/http"
import * as oauth from "oauth4webapi"
import * as Device from "./oauth/Device.js"
import { call } from "./oauth/Fetch.js"
import * as Metadata from "./oauth/Metadata.js"
import { OAuthError, type Operation } from "./oauth/OAuthError.js"
import * as TokenInfo from "./oauth/TokenInfo.js"
import type { ProviderSettings } from "./SessionConfig.js"
import * as TokenResponse from "./TokenResponse.js"

export type { CodeInfo } from "./oauth/Device.js"
export { defaultInterval as defaultDeviceInterval, pollSchedule as devicePollSchedule } from "./oauth/Device.js"
export type { Metadata, Target } from "./oauth/Metadata.js"
export type { Introspection, RevokeOutcome, TokenTypeHint, UserInfo } from "./oauth/TokenInfo.js"
export {
  classify,
  classifyAt,
  isRetryable,
  OAuthError,
  type Operation,
  parseRetryAfter,
  type Reason,
  requiresReauth,
  retryAfterOf
} from "./oauth/OAuthError.js"

/** The bound on one request to an authorization server, where the caller gives none. */
export const requestTimeout = Duration.seconds(30)

/** A completed sign-in. */
export interface Login {
  readonly response: TokenResponse.TokenResponse
  /** The user: the ID token's `sub`, else userinfo's, when either is available. */
  readonly subject: Option.Option<string>
}

/** How an authorization code sign-in reaches the user. */
export interface AuthorizationCodeOptions {
  /** Defaults to the provider's configured scopes. */
  readonly scopes?: ReadonlyArray<string> | undefined
  /** RFC 8707 resource indicator; defaults to the provider's. */
  readonly resource?: string | undefined
  /** Shows the URL (printed first, so a failed browser launch still leaves a way in). */
  readonly onUrl: (url: string) => Effect.Effect<void>
  /** Opens a browser; runs in the background, and its failure is ignored. */
  readonly openBrowser: (url: string) => Effect.Effect<void, unknown>
  /** How long to wait for the browser's redirect. */
  readonly timeout: Duration.Input
}

/** How a device sign-in shows its code. */
export interface DeviceOptions {
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly resource?: string | undefined
  readonly onCode: (info: Device.CodeInfo) => Effect.Effect<void>
}

/** A refresh of one grant. */
export interface RefreshRequest {
  /** A configured provider, or what a stored session remembers (its token endpoint spares a discovery). */
  readonly provider: Metadata.Target
  readonly refreshToken: Redacted.Redacted<string>
  /** Narrower scopes than granted (RFC 6749 §6); absent means the same scopes. */
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly resource?: string | undefined
  /** The bound on this attempt, discovery included (`refresh_timeout_seconds`). */
  readonly timeout: Duration.Input
}

/** The operations. */
export interface Shape {
  /** Endpoints of a provider: RFC 8414, then OpenID discovery, then the configuration's explicit endpoints. Cached per issuer. */
  readonly discover: (provider: ProviderSettings) => Effect.Effect<Metadata.Metadata, OAuthError>
  /** Browser sign-in: PKCE S256, state, loopback redirect, RFC 9207 `iss` check. */
  readonly authorizationCode: (
    provider: ProviderSettings,
    options: AuthorizationCodeOptions
  ) => Effect.Effect<Login, OAuthError>
  /** Device sign-in (RFC 8628). */
  readonly deviceAuthorization: (provider: ProviderSettings, options: DeviceOptions) => Effect.Effect<Login, OAuthError>
  /** One refresh attempt. A response without `refresh_token` is normal: keep the old one. */
  readonly refresh: (request: RefreshRequest) => Effect.Effect<TokenResponse.TokenResponse, OAuthError>
  /** RFC 7009 revocation. */
  readonly revoke: (
    provider: Metadata.Target,
    token: Redacted.Redacted<string>,
    hint: TokenInfo.TokenTypeHint
  ) => Effect.Effect<TokenInfo.RevokeOutcome, OAuthError>
  /** RFC 7662 introspection. */
  readonly introspect: (
    provider: Metadata.Target,
    token: Redacted.Redacted<string>
  ) => Effect.Effect<TokenInfo.Introspection, OAuthError>
  /** OpenID Connect userinfo. */
  readonly userinfo: (
    provider: Metadata.Target,
    accessToken: Redacted.Redacted<string>
  ) => Effect.Effect<TokenInfo.UserInfo, OAuthError>
}

/** The OAuth protocol client. */
export class OAuthClient extends Context.Service<OAuthClient, Shape>()("magictunnel-session/OAuthClient") {}

const annotate = (provider: string, grantType: string) =>
  Effect.annotateCurrentSpan({ "oauth.provider": provider, "oauth.grant_type": grantType })

/** Records the outcome on the operation's span: `success`, or the failure's reason tag. */
const withOutcome = <A, R>(effect: Effect.Effect<A, OAuthError, R>): Effect.Effect<A, OAuthError, R> =>
  effect.pipe(
    Effect.tapError((error) =>
      Effect.annotateCurrentSpan({ "oauth.outcome": error.reason._tag, "oauth.retryable": error.retryable })
    ),
    Effect.tap(() => Effect.annotateCurrentSpan("oauth.outcome", "success"))
  )

const timeoutError = (provider: string, operation: Operation, after: Duration.Duration, detail: string) =>
  new OAuthError({ provider, operation, reason: { _tag: "Timeout", after, detail } })

const malformed = (provider: string, operation: Operation) => (error: TokenResponse.TokenResponseError) =>
  new OAuthError({ provider, operation, reason: { _tag: "MalformedResponse", detail: error.detail } })

/** Builds the client on an `HttpClient`. */
export const make = Effect.gen(function*() {
  const http = yield* HttpClient.HttpClient
  const metadata = yield* Metadata.make(http)

  const deps = (resolved: Metadata.Resolved): TokenInfo.Deps => ({ client: http, resolved, requestTimeout })

  /** Turns a processed token response into a {@link Login}: decoded into `Redacted`, subject found. */
  const finish = (resolved: Metadata.Resolved, operation: Operation, result: oauth.TokenEndpointResponse) =>
    Effect.gen(function*() {
      const response = yield* TokenResponse.fromUnknown(result).pipe(Effect.mapError(malformed(resolved.name, operation)))
      const fromIdToken = Option.fromUndefinedOr(oauth.getValidatedIdTokenClaims(result)?.sub)
      // No ID token (no `openid` scope, or a plain OAuth server): ask userinfo, and do without if it cannot say.
      const subject = Option.isSome(fromIdToken) || resolved.as.userinfo_endpoint === undefined
        ? fromIdToken
        : yield* TokenInfo.userinfo(deps(resolved), result.access_token).pipe(
          Effect.map((info) => Option.some(info.subject)),
          Effect.orElseSucceed(() => Option.none<string>())
        )
      return { response, subject } satisfies Login
    })

  const scopesOf = (provider: ProviderSettings, scopes: ReadonlyArray<string> | undefined) =>
    scopes ?? provider.scopes

  const resourceOf = (provider: ProviderSettings, resource: string | undefined) =>
    resource === undefined ? provider.resource : Option.some(resource)

  const discover = Effect.fn("OAuthClient.discover")(function*(provider: ProviderSettings) {
    yield* Effect.annotateCurrentSpan("oauth.provider", provider.name)
    const { discovered, resolved } = yield* metadata.resolve(provider, "discover", { discover: true })
    return Metadata.metadataOf(resolved, discovered)
  }, withOutcome)

  // The browser flow (its loopback HTTP server: node:http alone is 3 ms of a start) is loaded when
  // a login runs: `mtsession token` and every refresh never evaluate it.
  const loadAuthorizationCode = () => import("./oauth/AuthorizationCode.js")

  const authorizationCode = Effect.fn("OAuthClient.authorizationCode")(function*(
    provider: ProviderSettings,
    options: AuthorizationCodeOptions
  ) {
    yield* annotate(provider.name, "authorization_code")
    const { resolved } = yield* metadata.resolve(provider, "authorizationCode", { discover: true })
    const AuthorizationCode = yield* Effect.promise(loadAuthorizationCode)
    return yield* AuthorizationCode.run({ client: http, resolved, requestTimeout }, {
      clientId: provider.clientId,
      scopes: scopesOf(provider, options.scopes),
      resource: resourceOf(provider, options.resource),
      redirectPort: provider.redirectPort,
      onUrl: options.onUrl,
      openBrowser: options.openBrowser,
      timeout: options.timeout
    }, (result) => finish(resolved, "authorizationCode", result))
  }, Effect.scoped, withOutcome)

  const deviceAuthorization = Effect.fn("OAuthClient.deviceAuthorization")(function*(
    provider: ProviderSettings,
    options: DeviceOptions
  ) {
    yield* annotate(provider.name, "urn:ietf:params:oauth:grant-type:device_code")
    const { resolved } = yield* metadata.resolve(provider, "deviceAuthorization", { discover: true })
    const result = yield* Device.run({ client: http, resolved, requestTimeout }, {
      scopes: scopesOf(provider, options.scopes),
      resource: resourceOf(provider, options.resource),
      onCode: options.onCode
    })
    return yield* finish(resolved, "deviceAuthorization", result)
  }, withOutcome)

  const refresh = Effect.fn("OAuthClient.refresh")(function*(request: RefreshRequest) {
    yield* annotate(request.provider.name, "refresh_token")
    const timeout = Duration.fromInputUnsafe(request.timeout)
    const attempt = Effect.gen(function*() {
      const { resolved } = yield* metadata.resolve(request.provider, "refresh", { discover: false })
      yield* Metadata.endpoint(resolved, "refresh", "token_endpoint")
      const refreshToken = Redacted.value(request.refreshToken)
      const additionalParameters: Record<string, string> = {}
      if (request.scopes !== undefined) additionalParameters["scope"] = request.scopes.join(" ")
      if (request.resource !== undefined) additionalParameters["resource"] = request.resource
      const result = yield* call(
        {
          client: http,
          provider: resolved.name,
          operation: "refresh",
          insecureLoopback: resolved.insecureLoopback,
          secrets: [...resolved.secrets, refreshToken],
          timeout
        },
        async (options) =>
          oauth.processRefreshTokenResponse(
            resolved.as,
            resolved.client,
            await oauth.refreshTokenGrantRequest(
              resolved.as,
              resolved.client,
              resolved.clientAuth,
              refreshToken,
              { ...options, additionalParameters }
            )
          )
      )
      return yield* TokenResponse.fromUnknown(result).pipe(Effect.mapError(malformed(resolved.name, "refresh")))
    })
    return yield* attempt.pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => Effect.fail(timeoutError(request.provider.name, "refresh", timeout, "refresh did not complete"))
      })
    )
  }, withOutcome)

  const revoke = Effect.fn("OAuthClient.revoke")(function*(
    provider: Metadata.Target,
    token: Redacted.Redacted<string>,
    hint: TokenInfo.TokenTypeHint
  ) {
    yield* annotate(provider.name, "revocation")
    const { resolved } = yield* metadata.resolve(provider, "revoke", { discover: true })
    const outcome = yield* TokenInfo.revoke(deps(resolved), Redacted.value(token), hint)
    yield* Effect.annotateCurrentSpan("oauth.revocation", outcome)
    return outcome
  }, withOutcome)

  const introspect = Effect.fn("OAuthClient.introspect")(function*(
    provider: Metadata.Target,
    token: Redacted.Redacted<string>
  ) {
    yield* annotate(provider.name, "introspection")
    const { resolved } = yield* metadata.resolve(provider, "introspect", { discover: true })
    return yield* TokenInfo.introspect(deps(resolved), Redacted.value(token))
  }, withOutcome)

  const userinfo = Effect.fn("OAuthClient.userinfo")(function*(
    provider: Metadata.Target,
    accessToken: Redacted.Redacted<string>
  ) {
    yield* Effect.annotateCurrentSpan("oauth.provider", provider.name)
    const { resolved } = yield* metadata.resolve(provider, "userinfo", { discover: true })
    return yield* TokenInfo.userinfo(deps(resolved), Redacted.value(accessToken))
  }, withOutcome)

  return OAuthClient.of({ discover, authorizationCode, deviceAuthorization, refresh, revoke, introspect, userinfo })
})

/** The client, on whatever `HttpClient` the application provides (`NodeHttpClient.layerUndici` in Node). */
export const layer: Layer.Layer<OAuthClient, never, HttpClient.HttpClient> = Layer.effect(OAuthClient, make)
