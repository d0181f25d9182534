/**
 * What a client may ask about, or do to, a token it holds: revoke it
 * (RFC 7009), introspect it (RFC 7662), or read the user's claims with it
 * (OpenID Connect userinfo). Results carry no token.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7009
 * @see https://www.rfc-editor.org/rfc/rfc7662
 * @see https://openid.net/specs/openid-connect-core-1_0.html#UserInfo
 */
import { DateTime, type Duration, Effect, Option } from "effect"
import type { HttpClient } from "effect/http"
import * as oauth from "oauth4webapi"
import { call } from "./Fetch.js"
import { endpoint, type Resolved } from "./Metadata.js"
import type { OAuthError, Operation } from "./OAuthError.js"

/** RFC 7009 §2.1 `token_type_hint`. */
export type TokenTypeHint = "access_token" | "refresh_token"

/** `revoked`, or `unsupported` when the provider has no revocation endpoint (nothing was sent). */
export type RevokeOutcome = "revoked" | "unsupported"

/** An RFC 7662 introspection answer, without the token. */
export interface Introspection {
  readonly active: boolean
  readonly scope: Option.Option<string>
  readonly clientId: Option.Option<string>
  readonly subject: Option.Option<string>
  readonly expiresAt: Option.Option<DateTime.Utc>
  readonly tokenType: Option.Option<string>
}

/** The userinfo claims (OpenID Connect Core §5.3). */
export interface UserInfo {
  readonly subject: string
  readonly claims: Readonly<Record<string, unknown>>
}

/** What every call here needs. */
export interface Deps {
  readonly client: HttpClient.HttpClient
  readonly resolved: Resolved
  readonly requestTimeout: Duration.Duration
}

const options = (deps: Deps, operation: Operation, token: string) => ({
  client: deps.client,
  provider: deps.resolved.name,
  operation,
  insecureLoopback: deps.resolved.insecureLoopback,
  secrets: [...deps.resolved.secrets, token],
  timeout: deps.requestTimeout
})

/** Revokes `token`; a provider without a revocation endpoint is `unsupported`, not a failure. */
export const revoke = (deps: Deps, token: string, hint: TokenTypeHint): Effect.Effect<RevokeOutcome, OAuthError> => {
  const { as, client, clientAuth } = deps.resolved
  if (as.revocation_endpoint === undefined) return Effect.succeed("unsupported")
  return call(
    options(deps, "revoke", token),
    async (request) =>
      oauth.processRevocationResponse(
        await oauth.revocationRequest(as, client, clientAuth, token, {
          ...request,
          additionalParameters: { token_type_hint: hint }
        })
      )
  ).pipe(Effect.as("revoked" as const))
}

/** Introspects `token`. */
export const introspect = (deps: Deps, token: string): Effect.Effect<Introspection, OAuthError> =>
  Effect.gen(function*() {
    const { as, client, clientAuth } = deps.resolved
    yield* endpoint(deps.resolved, "introspect", "introspection_endpoint")
    const answer = yield* call(
      options(deps, "introspect", token),
      async (request) =>
        oauth.processIntrospectionResponse(
          as,
          client,
          await oauth.introspectionRequest(as, client, clientAuth, token, request)
        )
    )
    return {
      active: answer.active,
      scope: Option.fromUndefinedOr(answer.scope),
      clientId: Option.fromUndefinedOr(answer.client_id),
      subject: Option.fromUndefinedOr(answer.sub),
      expiresAt: Option.fromUndefinedOr(answer.exp).pipe(Option.map((exp) => DateTime.makeUnsafe(exp * 1000))),
      tokenType: Option.fromUndefinedOr(answer.token_type)
    }
  })

/** Reads the userinfo claims with `accessToken`. */
export const userinfo = (deps: Deps, accessToken: string): Effect.Effect<UserInfo, OAuthError> =>
  Effect.gen(function*() {
    const { as, client } = deps.resolved
    yield* endpoint(deps.resolved, "userinfo", "userinfo_endpoint")
    const info = yield* call(
      options(deps, "userinfo", accessToken),
      async (request) =>
        oauth.processUserInfoResponse(
          as,
          client,
          oauth.skipSubjectCheck,
          await oauth.userInfoRequest(as, client, accessToken, request)
        )
    )
    return { subject: info.sub, claims: { ...info } }
  })
