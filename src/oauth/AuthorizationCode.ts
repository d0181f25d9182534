/**
 * The authorization code grant of a native app (RFC 8252): PKCE S256
 * (RFC 7636), a random `state`, a loopback redirect listener, the `iss`
 * check of RFC 9207 where the server declares it, then the code exchange.
 * The browser waits on the redirect until the exchange is over and is told
 * how it went.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8252#section-7.3
 * @see https://www.rfc-editor.org/rfc/rfc7636
 * @see https://www.rfc-editor.org/rfc/rfc9207
 */
import { Duration, Effect, Option, type Scope } from "effect"
import type { HttpClient } from "effect/http"
import * as oauth from "oauth4webapi"
import { call } from "./Fetch.js"
import * as Loopback from "./Loopback.js"
import { endpoint, type Resolved } from "./Metadata.js"
import { describe, OAuthError, type Reason } from "./OAuthError.js"

const operation = "authorizationCode"

/** Runs the grant in the current scope (which holds the listener); `finish` completes the login before the browser hears back. */
export const run = <A>(
  deps: {
    readonly client: HttpClient.HttpClient
    readonly resolved: Resolved
    readonly requestTimeout: Duration.Duration
  },
  options: {
    readonly clientId: string
    readonly scopes: ReadonlyArray<string>
    readonly resource: Option.Option<string>
    /** 0: any free port. */
    readonly redirectPort: number
    readonly onUrl: (url: string) => Effect.Effect<void>
    readonly openBrowser: (url: string) => Effect.Effect<void, unknown>
    readonly timeout: Duration.Input
  },
  finish: (result: oauth.TokenEndpointResponse) => Effect.Effect<A, OAuthError>
): Effect.Effect<A, OAuthError, Scope.Scope> =>
  Effect.gen(function*() {
    const { resolved } = deps
    const fail = (reason: Reason) => new OAuthError({ provider: resolved.name, operation, reason })
    const authorizationEndpoint = yield* endpoint(resolved, operation, "authorization_endpoint")
    yield* endpoint(resolved, operation, "token_endpoint")

    const listener = yield* Loopback.listen(options.redirectPort).pipe(Effect.mapError(fail))
    const verifier = oauth.generateRandomCodeVerifier()
    const state = oauth.generateRandomState()
    const challenge = yield* Effect.promise(() => oauth.calculatePKCECodeChallenge(verifier))

    const url = new URL(authorizationEndpoint)
    url.searchParams.set("response_type", "code")
    url.searchParams.set("client_id", options.clientId)
    url.searchParams.set("redirect_uri", listener.redirectUri)
    url.searchParams.set("scope", options.scopes.join(" "))
    url.searchParams.set("state", state)
    url.searchParams.set("code_challenge", challenge)
    url.searchParams.set("code_challenge_method", "S256")
    if (Option.isSome(options.resource)) url.searchParams.set("resource", options.resource.value)

    // The URL first, so a browser that fails to open still leaves the user a way in.
    yield* options.onUrl(url.href)
    yield* Effect.forkScoped(Effect.ignore(options.openBrowser(url.href)))

    const timeout = Duration.fromInputUnsafe(options.timeout)
    const callback = yield* listener.callback.pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(fail({ _tag: "Timeout", after: timeout, detail: "no authorization response from the browser" }))
      })
    )
    const code = callback.url.searchParams.get("code") ?? ""
    const additionalParameters: Record<string, string> = {}
    if (Option.isSome(options.resource)) additionalParameters["resource"] = options.resource.value

    const exchanged = call(
      {
        client: deps.client,
        provider: resolved.name,
        operation,
        insecureLoopback: resolved.insecureLoopback,
        secrets: [...resolved.secrets, code, verifier, state],
        timeout: deps.requestTimeout
      },
      async (request) => {
        // Checks `state` always, and `iss` when the server declares it sends it (RFC 9207).
        const parameters = oauth.validateAuthResponse(resolved.as, resolved.client, callback.url, state)
        const response = await oauth.authorizationCodeGrantRequest(
          resolved.as,
          resolved.client,
          resolved.clientAuth,
          parameters,
          listener.redirectUri,
          verifier,
          { ...request, additionalParameters }
        )
        return oauth.processAuthorizationCodeResponse(resolved.as, resolved.client, response)
      }
    ).pipe(Effect.flatMap(finish))

    return yield* exchanged.pipe(
      Effect.tapError((error) => callback.respond({ ok: false, message: `${describe(error.reason)}.` })),
      Effect.tap(() => callback.respond({ ok: true }))
    )
  })
