/**
 * Authorization server metadata: where a provider's endpoints are.
 *
 * With an issuer, RFC 8414 discovery (`/.well-known/oauth-authorization-server`)
 * and, when that yields nothing, OpenID Connect discovery
 * (`/.well-known/openid-configuration`); endpoints given explicitly in the
 * configuration override what was discovered. Without an issuer, or when
 * the issuer publishes no metadata, the explicit endpoints are all there
 * is. Every URL must be https, or http on a loopback host.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8414#section-3
 */
import { Cache, Duration, Effect, Exit, Option, Redacted } from "effect"
import type { HttpClient } from "effect/http"
import * as oauth from "oauth4webapi"
import type { ProviderSettings } from "../SessionConfig.js"
import { call, transportOf } from "./Fetch.js"
import { describe, OAuthError, type Operation, type Reason } from "./OAuthError.js"

/** The bound on one discovery request. */
export const discoveryTimeout = Duration.seconds(30)

/** How many issuers' metadata one process keeps. */
export const cacheCapacity = 256

/**
 * Enough to reach a provider: a whole {@link ProviderSettings} fits, and so
 * does what a stored session remembers (issuer, token endpoint, client id).
 */
export type Target =
  & Pick<ProviderSettings, "name" | "issuer" | "clientId" | "clientSecret">
  & Partial<
    Pick<
      ProviderSettings,
      | "authorizationEndpoint"
      | "tokenEndpoint"
      | "deviceAuthorizationEndpoint"
      | "revocationEndpoint"
      | "introspectionEndpoint"
      | "userinfoEndpoint"
    >
  >

/** A provider's endpoints, secret-free. */
export interface Metadata {
  readonly issuer: string
  /** True when the endpoints came (at least partly) from discovery. */
  readonly discovered: boolean
  readonly authorizationEndpoint: Option.Option<string>
  readonly tokenEndpoint: Option.Option<string>
  readonly deviceAuthorizationEndpoint: Option.Option<string>
  readonly revocationEndpoint: Option.Option<string>
  readonly introspectionEndpoint: Option.Option<string>
  readonly userinfoEndpoint: Option.Option<string>
  /** RFC 9207: the server sends `iss` with authorization responses. */
  readonly issParameterSupported: boolean
}

/** A provider ready for oauth4webapi calls. */
export interface Resolved {
  readonly name: string
  readonly as: oauth.AuthorizationServer
  readonly client: oauth.Client
  readonly clientAuth: oauth.ClientAuth
  /** Secret values to keep out of errors (the client secret). */
  readonly secrets: ReadonlyArray<string>
  /** Some URL is plain http on loopback: oauth4webapi must be told to allow it. */
  readonly insecureLoopback: boolean
}

/** The metadata of a resolved provider. */
export const metadataOf = (resolved: Resolved, discovered: boolean): Metadata => {
  const as = resolved.as
  return {
    issuer: as.issuer,
    discovered,
    authorizationEndpoint: Option.fromUndefinedOr(as.authorization_endpoint),
    tokenEndpoint: Option.fromUndefinedOr(as.token_endpoint),
    deviceAuthorizationEndpoint: Option.fromUndefinedOr(as.device_authorization_endpoint),
    revocationEndpoint: Option.fromUndefinedOr(as.revocation_endpoint),
    introspectionEndpoint: Option.fromUndefinedOr(as.introspection_endpoint),
    userinfoEndpoint: Option.fromUndefinedOr(as.userinfo_endpoint),
    issParameterSupported: as.authorization_response_iss_parameter_supported === true
  }
}

const endpointKeys = [
  "authorization_endpoint",
  "token_endpoint",
  "device_authorization_endpoint",
  "revocation_endpoint",
  "introspection_endpoint",
  "userinfo_endpoint"
] as const

/** Every URL of the metadata that oauth4webapi may call or hand to a browser. */
const urlsOf = (as: oauth.AuthorizationServer): ReadonlyArray<string> => [
  as.issuer,
  ...endpointKeys.flatMap((k) => (as[k] === undefined ? [] : [as[k]]))
]

/** The first URL that is neither https nor loopback http. */
const firstRefused = (urls: ReadonlyArray<string>): Option.Option<string> =>
  Option.fromUndefinedOr(urls.find((u) => transportOf(u) === "refused"))

/**
 * Client authentication at the token endpoint: none for a public client
 * (it sends `client_id` in the body), `client_secret_post` for a
 * confidential one unless the server lists only `client_secret_basic`.
 */
const clientAuthOf = (as: oauth.AuthorizationServer, secret: Option.Option<Redacted.Redacted<string>>) =>
  Option.match(secret, {
    onNone: () => oauth.None(),
    onSome: (s) => {
      const methods = as.token_endpoint_auth_methods_supported
      return methods !== undefined && methods.includes("client_secret_basic") && !methods.includes("client_secret_post")
        ? oauth.ClientSecretBasic(Redacted.value(s))
        : oauth.ClientSecretPost(Redacted.value(s))
    }
  })

/** Explicit endpoints from the configuration, as metadata members. */
const explicitOf = (target: Target): Partial<Record<typeof endpointKeys[number], string>> => {
  const out: Partial<Record<typeof endpointKeys[number], string>> = {}
  const set = (key: typeof endpointKeys[number], value: Option.Option<string> | undefined) => {
    if (value !== undefined && Option.isSome(value)) out[key] = value.value
  }
  set("authorization_endpoint", target.authorizationEndpoint)
  set("token_endpoint", target.tokenEndpoint)
  set("device_authorization_endpoint", target.deviceAuthorizationEndpoint)
  set("revocation_endpoint", target.revocationEndpoint)
  set("introspection_endpoint", target.introspectionEndpoint)
  set("userinfo_endpoint", target.userinfoEndpoint)
  return out
}

/** Whether discovery could help after a failure: not when the server was unreachable or slow. */
const worthFallback = (reason: Reason): boolean =>
  reason._tag !== "Network" && reason._tag !== "Timeout" && reason._tag !== "InsecureIssuer"

/** A discovery service: `resolve` looks a provider up, discovering (once per issuer) when needed. */
export const make = (client: HttpClient.HttpClient) =>
  Effect.gen(function*() {
    const fetchMetadata = (issuer: string, algorithm: "oauth2" | "oidc") =>
      call(
        {
          client,
          provider: issuer,
          operation: "discover",
          insecureLoopback: transportOf(issuer) === "loopback",
          secrets: [],
          timeout: discoveryTimeout
        },
        async (request) =>
          oauth.processDiscoveryResponse(
            new URL(issuer),
            await oauth.discoveryRequest(new URL(issuer), { ...request, algorithm })
          )
      )

    const discover = (issuer: string): Effect.Effect<oauth.AuthorizationServer, Reason> =>
      fetchMetadata(issuer, "oauth2").pipe(
        Effect.catch((first) =>
          worthFallback(first.reason)
            ? fetchMetadata(issuer, "oidc").pipe(Effect.catch((second) =>
              Effect.fail<Reason>(
                worthFallback(second.reason)
                  ? {
                    _tag: "Discovery",
                    detail: `RFC 8414 metadata: ${describe(first.reason)}; OpenID metadata: ${describe(second.reason)}`
                  }
                  : second.reason
              )
            ))
            : Effect.fail(first.reason)
        )
      )

    // Keyed by issuer (metadata depends on nothing else); failures are not kept.
    const cache = yield* Cache.makeWith(discover, {
      capacity: cacheCapacity,
      timeToLive: (exit) => (Exit.isSuccess(exit) ? Duration.infinity : Duration.zero)
    })

    /**
     * Resolves a provider for `operation`. With `discover: false` and the
     * token endpoint known (a stored grant), no request is made.
     */
    const resolve = (
      target: Target,
      operation: Operation,
      options: { readonly discover: boolean }
    ): Effect.Effect<{ readonly resolved: Resolved; readonly discovered: boolean }, OAuthError> => {
      const fail = (reason: Reason) => new OAuthError({ provider: target.name, operation, reason })
      return Effect.gen(function*() {
        const explicit = explicitOf(target)
        const issuer = Option.getOrUndefined(target.issuer)
        const configured = firstRefused([...(issuer === undefined ? [] : [issuer]), ...Object.values(explicit)])
        if (Option.isSome(configured)) return yield* Effect.fail(fail({ _tag: "InsecureIssuer", url: configured.value }))
        const useDiscovery = issuer !== undefined && (options.discover || explicit.token_endpoint === undefined)
        const discovered = useDiscovery
          ? yield* Cache.get(cache, issuer).pipe(
            // A provider that publishes no metadata (GitHub) works from its explicit endpoints.
            Effect.catch((reason) =>
              reason._tag === "Discovery" && explicit.token_endpoint !== undefined
                ? Effect.succeed(undefined)
                : Effect.fail(fail(reason))
            )
          )
          : undefined
        const base = issuer ?? explicit.token_endpoint ?? explicit.authorization_endpoint
        if (base === undefined) {
          return yield* Effect.fail(fail({
            _tag: "Discovery",
            detail: "neither an issuer nor a token endpoint is configured"
          }))
        }
        // Without an issuer there is nothing to discover; ID tokens are then checked against the endpoint's origin.
        const as: oauth.AuthorizationServer = {
          ...(discovered ?? { issuer: issuer ?? new URL(base).origin }),
          ...explicit
        }
        const refused = firstRefused(urlsOf(as))
        if (Option.isSome(refused)) return yield* Effect.fail(fail({ _tag: "InsecureIssuer", url: refused.value }))
        return {
          discovered: discovered !== undefined,
          resolved: {
            name: target.name,
            as,
            client: { client_id: target.clientId },
            clientAuth: clientAuthOf(as, target.clientSecret),
            secrets: Option.match(target.clientSecret, { onNone: () => [], onSome: (s) => [Redacted.value(s)] }),
            insecureLoopback: urlsOf(as).some((u) => transportOf(u) === "loopback")
          }
        }
      })
    }

    return { resolve }
  })

/** The endpoint an operation needs, or a `Discovery` failure naming it. */
export const endpoint = (
  resolved: Resolved,
  operation: Operation,
  key: typeof endpointKeys[number]
): Effect.Effect<string, OAuthError> => {
  const url = resolved.as[key]
  return url === undefined
    ? Effect.fail(
      new OAuthError({
        provider: resolved.name,
        operation,
        reason: { _tag: "Discovery", detail: `the provider has no ${key}` }
      })
    )
    : Effect.succeed(url)
}
