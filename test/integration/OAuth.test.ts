/**
 * OAuthClient against a real authorization server (oidc-provider on
 * 127.0.0.1), and against the same server behind a fault proxy.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, layer } from "@effect/vitest"
import { Context, DateTime, Duration, Effect, Exit, Layer, Option, Redacted, Ref, Tracer } from "effect"
import * as OAuthClient from "../../src/OAuthClient.js"
import { type ProviderSettings, providerSettings } from "../../src/SessionConfig.js"
import * as TokenResponse from "../../src/TokenResponse.js"
import * as FaultProxy from "../support/FaultProxy.js"
import * as OidcServer from "../support/OidcServer.js"

class Server extends Context.Service<Server, OidcServer.OidcServer>()("test/OidcServer") {}

const TestLayer = Layer.mergeAll(
  Layer.effect(Server, OidcServer.acquire({ accessTokenTtl: 30, deviceInterval: 1 })),
  OAuthClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
)

const failureOf = <A>(exit: Exit.Exit<A, OAuthClient.OAuthError>): OAuthClient.OAuthError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error] : []))[0]
  if (error === undefined) throw new Error("expected an OAuthError")
  return error
}


/** Signs in through the loopback redirect, the server's auto-approving interaction playing the browser. */
const login = (
  provider: ProviderSettings,
  options: { readonly deny?: boolean; readonly resource?: string; readonly timeout?: Duration.Input } = {}
) =>
  Effect.gen(function*() {
    const server = yield* Server
    const client = yield* OAuthClient.OAuthClient
    const shown = yield* Ref.make<ReadonlyArray<string>>([])
    let browser: Promise<number> | undefined
    const exit = yield* client.authorizationCode(provider, {
      resource: options.resource,
      onUrl: (url) => Ref.update(shown, (urls) => [...urls, url]),
      // A browser runs on its own: start it and look at what it displayed afterwards.
      openBrowser: (url) =>
        Effect.sync(() => {
          browser = server.approve(url, { deny: options.deny === true })
        }),
      timeout: options.timeout ?? "20 seconds"
    }).pipe(Effect.exit)
    const status = browser === undefined ? undefined : yield* Effect.promise(() => browser!)
    return { exit, urls: yield* Ref.get(shown), browserStatus: status }
  })

const loggedIn = (provider?: ProviderSettings, resource?: string) =>
  Effect.gen(function*() {
    const server = yield* Server
    const { exit } = yield* login(provider ?? server.provider, resource === undefined ? {} : { resource })
    if (Exit.isFailure(exit)) return yield* Effect.die(failureOf(exit))
    return exit.value
  })

const refreshTokenOf = (response: TokenResponse.TokenResponse): Redacted.Redacted<string> => {
  if (response.refresh_token === undefined) throw new Error("no refresh token")
  return response.refresh_token
}

/** The test server's grant, its token endpoint reached through `proxy`. */
const throughProxy = (server: OidcServer.OidcServer, proxy: FaultProxy.FaultProxy): OAuthClient.Target => ({
  name: "proxied",
  issuer: Option.some(server.issuer),
  tokenEndpoint: Option.some(`${proxy.url}/token`),
  clientId: server.clientId,
  clientSecret: Option.none()
})

layer(TestLayer, { excludeTestServices: true })("OAuthClient against oidc-provider", (it) => {
  it.effect("discovers the endpoints (RFC 8414) and says the server sends iss (RFC 9207)", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const metadata = yield* client.discover(server.provider)
      assert.strictEqual(metadata.issuer, server.issuer)
      assert.isTrue(metadata.discovered)
      assert.deepStrictEqual(metadata.tokenEndpoint, Option.some(`${server.issuer}/token`))
      assert.isTrue(Option.isSome(metadata.deviceAuthorizationEndpoint))
      assert.isTrue(Option.isSome(metadata.revocationEndpoint))
      assert.isTrue(Option.isSome(metadata.introspectionEndpoint))
      assert.isTrue(metadata.issParameterSupported)

      // Explicit endpoints and no issuer: nothing to discover, the configuration is the metadata.
      const explicit = yield* client.discover(providerSettings({
        name: "explicit",
        clientId: server.clientId,
        tokenEndpoint: Option.some(`${server.issuer}/token`)
      }))
      assert.isFalse(explicit.discovered)
      assert.isTrue(Option.isNone(explicit.revocationEndpoint))
    }))

  it.effect("signs in with the authorization code flow: PKCE, loopback redirect, subject, absolute expiry", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const { exit, urls, browserStatus } = yield* login(server.provider)
      assert.isTrue(Exit.isSuccess(exit))
      if (Exit.isFailure(exit)) return
      const { response, subject } = exit.value
      assert.deepStrictEqual(subject, Option.some(server.accountId))
      assert.isDefined(response.refresh_token)
      assert.strictEqual(response.expires_in, 30)
      assert.deepStrictEqual(TokenResponse.grantedScopes(response, []), ["openid", "email"])
      const record = yield* TokenResponse.toRecord(response, {
        id: "test",
        provider: "test",
        clientId: server.clientId,
        requestedScopes: server.provider.scopes,
        subject: Option.getOrUndefined(subject)
      })
      assert.isDefined(record.expiresAt)
      // The user saw the URL, and the browser was told it may close the tab.
      assert.strictEqual(urls.length, 1)
      const shown = new URL(urls[0]!)
      assert.strictEqual(shown.searchParams.get("code_challenge_method"), "S256")
      assert.match(shown.searchParams.get("redirect_uri") ?? "", /^http:\/\/127\.0\.0\.1:\d+\/callback$/)
      assert.strictEqual(browserStatus, 200)
    }))

  it.effect("binds a sign-in to a resource (RFC 8707): the token is for that resource's scopes", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const { response } = yield* loggedIn(
        { ...server.provider, scopes: ["openid", "api:read"] },
        server.resource
      )
      assert.deepStrictEqual(TokenResponse.grantedScopes(response, []), ["api:read"])
      const introspection = yield* client.introspect(server.provider, response.access_token)
      assert.isTrue(introspection.active)
      assert.deepStrictEqual(introspection.subject, Option.some(server.accountId))
    }))

  it.effect("a refused consent is AccessDenied, and the browser is told so", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const { exit, browserStatus } = yield* login(server.provider, { deny: true })
      const error = failureOf(exit)
      assert.strictEqual(error.reason._tag, "AccessDenied")
      assert.isFalse(error.retryable)
      assert.strictEqual(browserStatus, 400)
    }))

  it.effect("a sign-in nobody completes ends with a clear timeout", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const exit = yield* client.authorizationCode(server.provider, {
        onUrl: () => Effect.void,
        openBrowser: () => Effect.void,
        timeout: "200 millis"
      }).pipe(Effect.exit)
      const error = failureOf(exit)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.include(error.message, "no authorization response from the browser")
    }))

  it.effect("signs in with the device flow (RFC 8628), polling at the server's interval", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      let approval: Promise<void> | undefined
      let shown: OAuthClient.CodeInfo | undefined
      const { response, subject } = yield* client.deviceAuthorization(server.provider, {
        onCode: (info) =>
          Effect.sync(() => {
            shown = info
            approval = server.approveDevice(info.user_code)
          })
      })
      yield* Effect.promise(() => approval!)
      assert.strictEqual(shown?.interval, 1)
      assert.match(shown?.verification_uri ?? "", /\/device$/)
      assert.deepStrictEqual(subject, Option.some(server.accountId))
      assert.isDefined(response.refresh_token)
    }))

  it.effect("a refused device is AccessDenied", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      let approval: Promise<void> | undefined
      const exit = yield* client.deviceAuthorization(server.provider, {
        onCode: (info) =>
          Effect.sync(() => {
            approval = server.approveDevice(info.user_code, { deny: true })
          })
      }).pipe(Effect.exit)
      yield* Effect.promise(() => approval!)
      assert.strictEqual(failureOf(exit).reason._tag, "AccessDenied")
    }))

  it.effect("refresh rotates the refresh token; the old one is then invalid_grant and reuse revokes the grant", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const { response } = yield* loggedIn()
      const before = server.counters()
      const first = refreshTokenOf(response)

      const refreshed = yield* client.refresh({ provider: server.provider, refreshToken: first, timeout: "10 seconds" })
      const second = refreshTokenOf(refreshed)
      assert.notStrictEqual(Redacted.value(second), Redacted.value(first))
      assert.strictEqual(refreshed.expires_in, 30)

      const reused = failureOf(
        yield* client.refresh({ provider: server.provider, refreshToken: first, timeout: "10 seconds" }).pipe(Effect.exit)
      )
      assert.strictEqual(reused.reason._tag, "InvalidGrant")
      assert.isFalse(reused.retryable)
      assert.isTrue(OAuthClient.requiresReauth(reused.reason))
      assert.notInclude(reused.message, Redacted.value(first))

      // RFC 9700 §4.14.2: reuse of a rotated token revokes the grant, so the newest token is dead too.
      const revoked = failureOf(
        yield* client.refresh({ provider: server.provider, refreshToken: second, timeout: "10 seconds" }).pipe(Effect.exit)
      )
      assert.strictEqual(revoked.reason._tag, "InvalidGrant")

      const after = server.counters()
      assert.strictEqual(after.refreshSucceeded - before.refreshSucceeded, 1)
      assert.strictEqual(after.refreshInvalidGrant - before.refreshInvalidGrant, 2)
      assert.strictEqual(after.refreshReuseDetected - before.refreshReuseDetected, 1)
    }))

  it.effect("a stored grant refreshes without discovery (token endpoint remembered)", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const proxy = yield* FaultProxy.acquire(server.issuer)
      const { response } = yield* loggedIn()
      const refreshed = yield* client.refresh({
        provider: throughProxy(server, proxy),
        refreshToken: refreshTokenOf(response),
        timeout: "10 seconds"
      })
      assert.isDefined(refreshed.refresh_token)
      assert.deepStrictEqual(proxy.counts(), { received: 1, forwarded: 1 })
    }))

  it.effect("revocation (RFC 7009) and introspection (RFC 7662)", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const { response } = yield* loggedIn()

      const active = yield* client.introspect(server.provider, response.access_token)
      assert.isTrue(active.active)
      assert.deepStrictEqual(active.clientId, Option.some(server.clientId))
      assert.isTrue(Option.isSome(active.expiresAt))

      const info = yield* client.userinfo(server.provider, response.access_token)
      assert.strictEqual(info.subject, server.accountId)
      assert.strictEqual(info.claims["email"], `${server.accountId}@example.test`)

      assert.strictEqual(yield* client.revoke(server.provider, refreshTokenOf(response), "refresh_token"), "revoked")
      const dead = failureOf(
        yield* client.refresh({ provider: server.provider, refreshToken: refreshTokenOf(response), timeout: "10 seconds" })
          .pipe(Effect.exit)
      )
      assert.strictEqual(dead.reason._tag, "InvalidGrant")
      assert.isFalse((yield* client.introspect(server.provider, response.access_token)).active)

      // A provider without a revocation endpoint: nothing to send, and said so.
      const bare = providerSettings({ name: "bare", clientId: server.clientId, tokenEndpoint: Option.some(`${server.issuer}/token`) })
      assert.strictEqual(yield* client.revoke(bare, response.access_token, "access_token"), "unsupported")
    }))

  it.effect("a confidential client authenticates with its secret; a wrong one is InvalidClient without the secret", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const confidential: ProviderSettings = {
        ...server.provider,
        name: "confidential",
        clientId: server.confidentialClientId,
        clientSecret: Option.some(Redacted.make(server.confidentialClientSecret))
      }
      const { response } = yield* loggedIn(confidential)
      const wrong = "wrong-secret-value-1234"
      const error = failureOf(
        yield* client.refresh({
          provider: { ...confidential, clientSecret: Option.some(Redacted.make(wrong)) },
          refreshToken: refreshTokenOf(response),
          timeout: "10 seconds"
        }).pipe(Effect.exit)
      )
      assert.strictEqual(error.reason._tag, "InvalidClient")
      assert.isTrue(OAuthClient.requiresReauth(error.reason))
      assert.notInclude(error.message, wrong)
      assert.notInclude(error.message, Redacted.value(refreshTokenOf(response)))
      // The right secret still works: the failed attempt did not consume the grant.
      const refreshed = yield* client.refresh({
        provider: confidential,
        refreshToken: refreshTokenOf(response),
        timeout: "10 seconds"
      })
      assert.isDefined(refreshed.access_token)
    }))

  it.effect("through a faulty network: each failure is classified, transient ones keep the token usable", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const proxy = yield* FaultProxy.acquire(server.issuer)
      const { response } = yield* loggedIn()
      const refresh = (timeout: Duration.Input = "5 seconds") =>
        client.refresh({ provider: throughProxy(server, proxy), refreshToken: refreshTokenOf(response), timeout }).pipe(
          Effect.exit,
          Effect.map(failureOf)
        )

      proxy.next(FaultProxy.Faults.status(500))
      const serverError = yield* refresh()
      assert.deepStrictEqual(serverError.reason, { _tag: "ServerError", status: 500 })
      assert.isTrue(serverError.retryable)

      proxy.next(FaultProxy.Faults.oauthError(503, "temporarily_unavailable", { "retry-after": "7" }))
      const unavailable = yield* refresh()
      assert.strictEqual(unavailable.reason._tag, "RateLimited")
      assert.deepStrictEqual(OAuthClient.retryAfterOf(unavailable.reason), Option.some(Duration.seconds(7)))

      const later = DateTime.add(yield* DateTime.now, { minutes: 10 })
      proxy.next(FaultProxy.Faults.status(429, { "retry-after": new Date(DateTime.toEpochMillis(later)).toUTCString() }))
      const limited = yield* refresh()
      assert.strictEqual(limited.reason._tag, "RateLimited")
      assert.isTrue(Option.isSome(OAuthClient.retryAfterOf(limited.reason)))
      assert.isTrue(limited.retryable)

      proxy.next(FaultProxy.Faults.hang)
      const hung = yield* refresh("300 millis")
      assert.strictEqual(hung.reason._tag, "Timeout")
      assert.isTrue(hung.retryable)

      proxy.next(FaultProxy.Faults.reset)
      const reset = yield* refresh()
      assert.strictEqual(reset.reason._tag, "Network")
      assert.isTrue(reset.retryable)

      proxy.next(FaultProxy.Faults.malformed)
      const malformed = yield* refresh()
      assert.strictEqual(malformed.reason._tag, "MalformedResponse")
      assert.isTrue(malformed.retryable)

      yield* Effect.promise(() => proxy.down())
      const refused = yield* refresh()
      assert.strictEqual(refused.reason._tag, "Network")
      assert.include(refused.message, "ECONNREFUSED")
      yield* Effect.promise(() => proxy.up())

      // None of that reached the server, so the refresh token still works.
      assert.strictEqual(proxy.counts().forwarded, 0)
      const refreshed = yield* client.refresh({
        provider: throughProxy(server, proxy),
        refreshToken: refreshTokenOf(response),
        timeout: "5 seconds"
      })
      assert.isDefined(refreshed.refresh_token)
      assert.strictEqual(proxy.counts().forwarded, 1)
    }))

  it.effect("plain http is refused for an issuer that is not loopback, before any request", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const remote = { ...server.provider, name: "remote", issuer: Option.some("http://auth.example.test") }
      const discovered = failureOf(yield* client.discover(remote).pipe(Effect.exit))
      assert.deepStrictEqual(discovered.reason, { _tag: "InsecureIssuer", url: "http://auth.example.test" })
      assert.isFalse(discovered.retryable)

      const stored = failureOf(
        yield* client.refresh({
          provider: {
            name: "stored",
            issuer: Option.none(),
            tokenEndpoint: Option.some("http://10.1.2.3/token"),
            clientId: "x",
            clientSecret: Option.none()
          },
          refreshToken: Redacted.make("rt-never-sent"),
          timeout: "5 seconds"
        }).pipe(Effect.exit)
      )
      assert.strictEqual(stored.reason._tag, "InsecureIssuer")
    }))

  it.effect("spans name the provider, grant type and outcome, and the HTTP request is a child span; no secret in any", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const client = yield* OAuthClient.OAuthClient
      const { response } = yield* loggedIn()
      const token = Redacted.value(refreshTokenOf(response))
      yield* client.revoke(server.provider, refreshTokenOf(response), "refresh_token")

      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span(options) {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      const exit = yield* client.refresh({ provider: server.provider, refreshToken: refreshTokenOf(response), timeout: "5 seconds" })
        .pipe(Effect.exit, Effect.provideService(Tracer.Tracer, tracer))
      assert.strictEqual(failureOf(exit).reason._tag, "InvalidGrant")

      const refresh = spans.find((s) => s.name === "OAuthClient.refresh")
      assert.isDefined(refresh)
      assert.strictEqual(refresh?.attributes.get("oauth.provider"), "test")
      assert.strictEqual(refresh?.attributes.get("oauth.grant_type"), "refresh_token")
      assert.strictEqual(refresh?.attributes.get("oauth.outcome"), "InvalidGrant")
      const http = spans.find((s) => s.attributes.get("http.request.method") === "POST")
      assert.isDefined(http)
      assert.isTrue(Option.isSome(http!.parent) && http!.parent.value.spanId === refresh!.spanId)
      const everything = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: [...s.attributes] })))
      assert.notInclude(everything, token)
    }))
})
