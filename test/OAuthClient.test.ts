/**
 * OAuthClient on a scripted HttpClient: how every kind of server answer is
 * classified, what goes on the wire, device polling under the TestClock,
 * and that no secret reaches an error or a span.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, DateTime, Duration, Effect, Exit, Fiber, Option, Redacted, Schedule, Tracer } from "effect"
import { HttpClient, HttpClientError, HttpClientResponse } from "effect/http"
import { TestClock } from "effect/testing"
import { DevicePending } from "../src/oauth/Device.js"
import { isLoopbackHost, transportOf } from "../src/oauth/Fetch.js"
import * as OAuthClient from "../src/OAuthClient.js"
import type { ProviderSettings } from "../src/SessionConfig.js"

/** One request as the server saw it. */
interface Seen {
  readonly method: string
  readonly url: string
  readonly body: URLSearchParams
  readonly authorization: string | undefined
  readonly at: number
}

type Reply = Response | "hang" | { readonly refuse: string }

/** An OAuthClient whose HttpClient answers with `reply`, recording every request. */
const scripted = (reply: (seen: Seen, index: number) => Reply) =>
  Effect.gen(function*() {
    const seen: Array<Seen> = []
    const http = HttpClient.make((request, url) =>
      Effect.gen(function*() {
        const body = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
        const entry: Seen = {
          method: request.method,
          url: url.href,
          body: new URLSearchParams(body),
          authorization: request.headers["authorization"],
          at: yield* Clock.currentTimeMillis
        }
        seen.push(entry)
        const answer = reply(entry, seen.length - 1)
        if (answer === "hang") return yield* Effect.never
        if ("refuse" in answer) {
          return yield* Effect.fail(
            new HttpClientError.HttpClientError({
              reason: new HttpClientError.TransportError({
                request,
                cause: Object.assign(new Error("connect failed"), { code: answer.refuse })
              })
            })
          )
        }
        return HttpClientResponse.fromWeb(request, answer)
      })
    )
    const client = yield* OAuthClient.make.pipe(Effect.provideService(HttpClient.HttpClient, http))
    return { client, seen }
  })

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

const provider: ProviderSettings = {
  name: "unit",
  issuer: Option.none(),
  authorizationEndpoint: Option.some("https://as.test/authorize"),
  tokenEndpoint: Option.some("https://as.test/token"),
  deviceAuthorizationEndpoint: Option.some("https://as.test/device"),
  revocationEndpoint: Option.none(),
  introspectionEndpoint: Option.none(),
  userinfoEndpoint: Option.none(),
  clientId: "unit-client",
  clientSecret: Option.none(),
  scopes: ["openid"],
  resource: Option.none(),
  redirectPort: 0
}

const refreshToken = "rt-0123456789-secret-refresh-token"
const clientSecret = "cs-abcdefghij-secret-client-secret"

const failureOf = <A>(exit: Exit.Exit<A, OAuthClient.OAuthError>): OAuthClient.OAuthError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error] : []))[0]
  if (error === undefined) throw new Error("expected an OAuthError")
  return error
}

/** One refresh against a server that answers `response`; returns the failure. */
const refreshFailure = (response: Response, target: ProviderSettings = provider) =>
  Effect.gen(function*() {
    const { client } = yield* scripted(() => response)
    return failureOf(
      yield* client.refresh({ provider: target, refreshToken: Redacted.make(refreshToken), timeout: "30 seconds" })
        .pipe(Effect.exit)
    )
  })

describe("Retry-After", () => {
  const now = DateTime.makeUnsafe("2025-06-01T12:00:00Z")

  it("accepts delta-seconds and HTTP-dates, ignores anything else", () => {
    assert.deepStrictEqual(OAuthClient.parseRetryAfter("120", now), Option.some(Duration.seconds(120)))
    assert.deepStrictEqual(OAuthClient.parseRetryAfter(" 0 ", now), Option.some(Duration.seconds(0)))
    assert.deepStrictEqual(
      OAuthClient.parseRetryAfter("Sun, 01 Jun 2025 12:01:30 GMT", now),
      Option.some(Duration.seconds(90))
    )
    // A date already past means "now".
    assert.deepStrictEqual(
      OAuthClient.parseRetryAfter("Sun, 01 Jun 2025 11:00:00 GMT", now),
      Option.some(Duration.millis(0))
    )
    for (const bad of ["soon", "-5", "1.5", "", "2025-06-01T12:01:30Z"]) {
      assert.isTrue(Option.isNone(OAuthClient.parseRetryAfter(bad, now)), bad)
    }
    assert.isTrue(Option.isNone(OAuthClient.parseRetryAfter(null, now)))
  })
})

describe("OAuthClient classification", () => {
  it.effect("invalid_grant and invalid_client mean sign in again, never retry", () =>
    Effect.gen(function*() {
      const grant = yield* refreshFailure(json(400, { error: "invalid_grant", error_description: "grant request is invalid" }))
      assert.strictEqual(grant.reason._tag, "InvalidGrant")
      assert.isFalse(grant.retryable)
      assert.isTrue(OAuthClient.requiresReauth(grant.reason))
      assert.strictEqual(
        grant.message,
        "unit refresh: the grant is invalid, expired or revoked: sign in again (grant request is invalid)"
      )

      const client = yield* refreshFailure(json(401, { error: "invalid_client" }))
      assert.strictEqual(client.reason._tag, "InvalidClient")
      assert.isFalse(client.retryable)

      const challenged = yield* refreshFailure(
        new Response(null, { status: 401, headers: { "www-authenticate": "Basic realm=\"as\"" } })
      )
      assert.strictEqual(challenged.reason._tag, "InvalidClient")
    }))

  it.effect("5xx is ServerError, retryable; 503 with Retry-After and 429 are RateLimited", () =>
    Effect.gen(function*() {
      const html = yield* refreshFailure(new Response("<html>oops</html>", { status: 502, headers: { "content-type": "text/html" } }))
      assert.deepStrictEqual(html.reason, { _tag: "ServerError", status: 502 })
      assert.isTrue(html.retryable)

      const oauthBody = yield* refreshFailure(json(500, { error: "server_error" }))
      assert.deepStrictEqual(oauthBody.reason, { _tag: "ServerError", status: 500 })

      const noHint = yield* refreshFailure(json(503, { error: "temporarily_unavailable" }))
      assert.deepStrictEqual(noHint.reason, { _tag: "ServerError", status: 503 })

      const unavailable = yield* refreshFailure(json(503, { error: "temporarily_unavailable" }, { "retry-after": "30" }))
      assert.deepStrictEqual(unavailable.reason, {
        _tag: "RateLimited",
        status: 503,
        retryAfter: Option.some(Duration.seconds(30))
      })
      assert.isTrue(unavailable.retryable)

      yield* TestClock.setTime(DateTime.toEpochMillis(DateTime.makeUnsafe("2025-06-01T12:00:00Z")))
      const limited = yield* refreshFailure(
        new Response("slow down", { status: 429, headers: { "retry-after": "Sun, 01 Jun 2025 12:02:00 GMT" } })
      )
      assert.deepStrictEqual(OAuthClient.retryAfterOf(limited.reason), Option.some(Duration.seconds(120)))
      assert.include(limited.message, "rate limited (HTTP 429), retry after 2m")

      const bare = yield* refreshFailure(new Response("", { status: 429 }))
      assert.deepStrictEqual(bare.reason, { _tag: "RateLimited", status: 429, retryAfter: Option.none() })
    }))

  it.effect("a garbled success is MalformedResponse (transient); other OAuth codes are Protocol", () =>
    Effect.gen(function*() {
      const notJson = yield* refreshFailure(new Response("{\"access_token\": \"tr", {
        status: 200,
        headers: { "content-type": "application/json" }
      }))
      assert.strictEqual(notJson.reason._tag, "MalformedResponse")
      assert.isTrue(notJson.retryable)

      const html = yield* refreshFailure(new Response("<html>captive portal</html>", {
        status: 200,
        headers: { "content-type": "text/html" }
      }))
      assert.strictEqual(html.reason._tag, "MalformedResponse")

      const missing = yield* refreshFailure(json(200, { token_type: "Bearer" }))
      assert.strictEqual(missing.reason._tag, "MalformedResponse")
      assert.include(missing.message, "access_token")

      const scope = yield* refreshFailure(json(400, { error: "invalid_scope", error_description: "scope too wide" }))
      assert.deepStrictEqual(scope.reason, { _tag: "Protocol", code: "invalid_scope", description: Option.some("scope too wide") })
      assert.isFalse(scope.retryable)

      const denied = yield* refreshFailure(json(400, { error: "access_denied" }))
      assert.strictEqual(denied.reason._tag, "AccessDenied")
    }))

  it.effect("network failures are Network; no answer within the attempt's bound is Timeout", () =>
    Effect.gen(function*() {
      const refused = yield* scripted(() => ({ refuse: "ECONNREFUSED" }))
      const error = failureOf(
        yield* refused.client.refresh({ provider, refreshToken: Redacted.make(refreshToken), timeout: "5 seconds" })
          .pipe(Effect.exit)
      )
      assert.deepStrictEqual(error.reason, { _tag: "Network", detail: "ECONNREFUSED" })
      assert.isTrue(error.retryable)

      const hanging = yield* scripted(() => "hang")
      const fiber = yield* hanging.client.refresh({
        provider,
        refreshToken: Redacted.make(refreshToken),
        timeout: "5 seconds"
      }).pipe(Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("5 seconds")
      const timedOut = failureOf(yield* Fiber.join(fiber))
      assert.strictEqual(timedOut.reason._tag, "Timeout")
      assert.isTrue(timedOut.retryable)
      assert.include(timedOut.message, "timed out after 5s")
    }))

  it.effect("plain http only on loopback: other http URLs are refused before any request", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* scripted(() => json(200, {}))
      for (const url of ["http://auth.example.test/token", "http://10.0.0.1/token", "http://127.0.0.1.example.test/token"]) {
        const error = failureOf(
          yield* client.refresh({
            provider: { ...provider, tokenEndpoint: Option.some(url) },
            refreshToken: Redacted.make(refreshToken),
            timeout: "5 seconds"
          }).pipe(Effect.exit)
        )
        assert.deepStrictEqual(error.reason, { _tag: "InsecureIssuer", url })
      }
      assert.strictEqual(seen.length, 0)

      for (const host of ["127.0.0.1", "127.8.9.10", "localhost", "[::1]"]) assert.isTrue(isLoopbackHost(host), host)
      for (const host of ["128.0.0.1", "10.0.0.1", "example.test", "127.0.0.1.example.test", "::2"]) {
        assert.isFalse(isLoopbackHost(host), host)
      }
      assert.strictEqual(transportOf("https://as.example.test"), "secure")
      assert.strictEqual(transportOf("ftp://as.example.test"), "refused")
    }))
})

describe("OAuthClient requests", () => {
  it.effect("a public client refreshes with client_id and no secret; a response without refresh_token is normal", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* scripted(() => json(200, { access_token: "at-new", token_type: "Bearer", expires_in: "3600" }))
      const response = yield* client.refresh({
        provider,
        refreshToken: Redacted.make(refreshToken),
        scopes: ["openid", "email"],
        resource: "https://api.example.test",
        timeout: "5 seconds"
      })
      assert.strictEqual(Redacted.value(response.access_token), "at-new")
      assert.strictEqual(response.expires_in, 3600)
      assert.isUndefined(response.refresh_token)

      const sent = seen[0]!
      assert.strictEqual(sent.url, "https://as.test/token")
      assert.strictEqual(sent.body.get("grant_type"), "refresh_token")
      assert.strictEqual(sent.body.get("refresh_token"), refreshToken)
      assert.strictEqual(sent.body.get("client_id"), "unit-client")
      assert.strictEqual(sent.body.get("scope"), "openid email")
      assert.strictEqual(sent.body.get("resource"), "https://api.example.test")
      assert.isFalse(sent.body.has("client_secret"))
      assert.isUndefined(sent.authorization)
    }))

  it.effect("discovery: RFC 8414 first, OpenID configuration as fallback, cached per issuer; Basic auth when only Basic is listed", () =>
    Effect.gen(function*() {
      const metadata = {
        issuer: "https://idp.example.test",
        authorization_endpoint: "https://idp.example.test/authorize",
        token_endpoint: "https://idp.example.test/token",
        token_endpoint_auth_methods_supported: ["client_secret_basic"]
      }
      const { client, seen } = yield* scripted((request) =>
        request.url.endsWith("/.well-known/oauth-authorization-server")
          ? new Response("not here", { status: 404 })
          : request.url.endsWith("/.well-known/openid-configuration")
          ? json(200, metadata)
          : json(200, { access_token: "at", token_type: "bearer" })
      )
      const confidential: ProviderSettings = {
        ...provider,
        name: "idp",
        issuer: Option.some("https://idp.example.test"),
        authorizationEndpoint: Option.none(),
        tokenEndpoint: Option.none(),
        deviceAuthorizationEndpoint: Option.none(),
        clientSecret: Option.some(Redacted.make(clientSecret))
      }
      const found = yield* client.discover(confidential)
      assert.isTrue(found.discovered)
      assert.deepStrictEqual(found.tokenEndpoint, Option.some("https://idp.example.test/token"))
      assert.deepStrictEqual(seen.map((s) => new URL(s.url).pathname), [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration"
      ])

      yield* client.refresh({ provider: confidential, refreshToken: Redacted.make(refreshToken), timeout: "5 seconds" })
      // Metadata came from the cache; only the token request went out.
      assert.strictEqual(seen.length, 3)
      const token = seen[2]!
      assert.strictEqual(token.url, "https://idp.example.test/token")
      assert.isTrue(token.authorization?.startsWith("Basic "))
      assert.isFalse(token.body.has("client_secret"))
    }))

  it.effect("discovery that finds nothing is a Discovery error; an unreachable issuer stays Network (retryable)", () =>
    Effect.gen(function*() {
      const target = { ...provider, issuer: Option.some("https://gone.example.test"), tokenEndpoint: Option.none() }
      const missing = yield* scripted(() => new Response("no", { status: 404 }))
      const error = failureOf(yield* missing.client.discover(target).pipe(Effect.exit))
      assert.strictEqual(error.reason._tag, "Discovery")
      assert.isFalse(error.retryable)
      // With explicit endpoints (GitHub publishes no metadata) the configuration is enough.
      const explicit = yield* missing.client.discover({ ...target, tokenEndpoint: Option.some("https://gone.example.test/token") })
      assert.isFalse(explicit.discovered)
      assert.deepStrictEqual(explicit.tokenEndpoint, Option.some("https://gone.example.test/token"))

      const down = yield* scripted(() => ({ refuse: "ENOTFOUND" }))
      const network = failureOf(yield* down.client.discover(target).pipe(Effect.exit))
      assert.deepStrictEqual(network.reason, { _tag: "Network", detail: "ENOTFOUND" })
      // A failed discovery is not cached: the next call asks again.
      yield* down.client.discover(target).pipe(Effect.exit)
      assert.isTrue(down.seen.length >= 2)
    }))

  it.effect("revocation without an endpoint sends nothing and says so", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* scripted(() => json(200, {}))
      assert.strictEqual(yield* client.revoke(provider, Redacted.make("at"), "access_token"), "unsupported")
      assert.strictEqual(seen.length, 0)
    }))
})

describe("OAuthClient device flow", () => {
  it.effect("the poll interval grows by 5 s at each slow_down, for good", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(OAuthClient.devicePollSchedule(OAuthClient.defaultDeviceInterval))
      const pending = new DevicePending({ slowDown: false })
      const slowDown = new DevicePending({ slowDown: true })
      const delays: Array<number> = []
      for (const input of [pending, slowDown, pending, slowDown]) {
        const [, delay] = yield* step(0, input)
        delays.push(Duration.toSeconds(delay))
      }
      assert.deepStrictEqual(delays, [5, 10, 10, 15])
    }))

  const deviceServer = (polls: ReadonlyArray<Response>) =>
    scripted((request, index) =>
      request.url.endsWith("/device")
        ? json(200, {
          device_code: "dc-secret-device-code",
          user_code: "WDJB-MJHT",
          verification_uri: "https://as.test/activate",
          expires_in: 600
        })
        : polls[Math.min(index - 1, polls.length - 1)]!.clone()
    )

  it.effect("polls every 5 s when the server sends no interval, 10 s after slow_down, until tokens arrive", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* deviceServer([
        json(400, { error: "authorization_pending" }),
        json(400, { error: "slow_down" }),
        json(400, { error: "authorization_pending" }),
        json(200, { access_token: "at-device", token_type: "Bearer", refresh_token: "rt-device", expires_in: 60 })
      ])
      const shown: Array<OAuthClient.CodeInfo> = []
      const fiber = yield* client.deviceAuthorization(provider, {
        onCode: (info) => Effect.sync(() => void shown.push(info))
      }).pipe(Effect.forkChild)
      // Each poll is a real (in-process) promise round trip: let it settle before moving the clock on.
      const settle = TestClock.withLive(Effect.sleep("20 millis"))
      yield* settle
      for (let i = 0; i < 60 && seen.length < 5; i++) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }
      const login = yield* Fiber.join(fiber)

      assert.strictEqual(shown[0]?.user_code, "WDJB-MJHT")
      assert.strictEqual(shown[0]?.interval, 5)
      assert.strictEqual(Redacted.value(login.response.access_token), "at-device")
      assert.isTrue(Option.isNone(login.subject))
      const polls = seen.slice(1)
      assert.deepStrictEqual(polls.map((p) => p.at / 1000), [5, 10, 20, 30])
      assert.strictEqual(polls[0]?.body.get("grant_type"), "urn:ietf:params:oauth:grant-type:device_code")
      assert.strictEqual(polls[0]?.body.get("client_id"), "unit-client")
    }))

  it.effect("expired_token and access_denied end the flow with typed outcomes", () =>
    Effect.gen(function*() {
      for (const [code, tag] of [["expired_token", "ExpiredToken"], ["access_denied", "AccessDenied"]] as const) {
        const { client } = yield* deviceServer([json(400, { error: code })])
        const fiber = yield* client.deviceAuthorization(provider, { onCode: () => Effect.void }).pipe(
          Effect.exit,
          Effect.forkChild
        )
        yield* TestClock.withLive(Effect.sleep("20 millis"))
        yield* TestClock.adjust("5 seconds")
        const error = failureOf(yield* Fiber.join(fiber))
        assert.strictEqual(error.reason._tag, tag)
        assert.isFalse(error.retryable)
        assert.notInclude(error.message, "dc-secret-device-code")
      }
    }))
})

describe("OAuthClient secrets", () => {
  it.effect("no token, secret or device code in messages or span attributes, even when the server echoes them", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span(options) {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      const { client } = yield* scripted(() =>
        json(400, { error: "invalid_grant", error_description: `refresh token ${refreshToken} is unknown to ${clientSecret}` })
      )
      const error = failureOf(
        yield* client.refresh({
          provider: { ...provider, clientSecret: Option.some(Redacted.make(clientSecret)) },
          refreshToken: Redacted.make(refreshToken),
          timeout: "5 seconds"
        }).pipe(Effect.exit, Effect.provideService(Tracer.Tracer, tracer))
      )
      assert.strictEqual(error.reason._tag, "InvalidGrant")
      assert.include(error.message, "refresh token <redacted> is unknown to <redacted>")
      const rendered = [error.message, String(error), JSON.stringify(error)].join("\n")
      assert.notInclude(rendered, refreshToken)
      assert.notInclude(rendered, clientSecret)

      const refresh = spans.find((s) => s.name === "OAuthClient.refresh")
      assert.strictEqual(refresh?.attributes.get("oauth.outcome"), "InvalidGrant")
      assert.strictEqual(refresh?.attributes.get("oauth.retryable"), false)
      const attributes = JSON.stringify(spans.map((s) => [s.name, [...s.attributes]]))
      assert.notInclude(attributes, refreshToken)
      assert.notInclude(attributes, clientSecret)
    }))
})
