/**
 * Sessions on a fake authorization server (a scripted `OAuthClient` that
 * rotates refresh tokens and rejects a reused one, as real servers do), the
 * memory store and lock, and the TestClock: what a caller of
 * `getAccessToken`, `refresh`, `login` and `logout` would notice.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Deferred, Duration, Effect, Fiber, Option, Redacted, Tracer } from "effect"
import { TestClock } from "effect/testing"
import * as RefreshLock from "../src/RefreshLock.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import { type Fake, namespace, oauthError, provider, resource, seed, type Setup, setup } from "./support/SessionsFixtures.js"

const tokenOf = (r: Redacted.Redacted<string>) => Redacted.value(r)

/** Lets forked fibers (callers, flights) run until they wait on the clock or on each other. */
const settle = Effect.repeat(Effect.yieldNow, { times: 100 })

/** Settles until the fake server has seen `n` refreshes (bounded, so a bug fails instead of hanging). */
const refreshesReach = (fake: Fake, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000 && fake.refreshes < n; i++) yield* Effect.yieldNow
    yield* settle
    assert.strictEqual(fake.refreshes, n)
  })

const run = <A, E>(
  body: (env: Setup) => Effect.Effect<A, E, Sessions.Sessions | TokenStore.TokenStore | RefreshLock.RefreshLock>,
  options?: Parameters<typeof setup>[0]
) =>
  Effect.gen(function*() {
    const env = yield* setup(options)
    return yield* body(env).pipe(Effect.provide(env.layer))
  })

describe("Sessions.getAccessToken", () => {
  it.effect("serves a valid token from memory: nothing is sent, the store is not read again", () =>
    run(({ fake, counts }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 3600 })
        const sessions = yield* Sessions.Sessions
        const first = yield* sessions.getAccessToken(provider)
        const reads = counts.gets
        const again = yield* sessions.getAccessToken(provider)
        assert.strictEqual(tokenOf(first), "at-seed")
        assert.strictEqual(tokenOf(again), "at-seed")
        assert.strictEqual(counts.gets, reads)
        assert.strictEqual(fake.refreshes, 0)
      })
    ))

  it.effect("refreshes when the token would not last minTtl, and persists the rotated record", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 300 })
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        assert.strictEqual(tokenOf(yield* sessions.getAccessToken(provider, { minTtl: "1 minute" })), "at-seed")
        const fresh = yield* sessions.getAccessToken(provider, { minTtl: "10 minutes" })
        assert.strictEqual(tokenOf(fresh), "at-1")
        assert.strictEqual(fake.refreshes, 1)
        const record = yield* store.get(provider)
        assert.strictEqual(record.generation, 1)
        assert.strictEqual(Redacted.value(record.refreshToken!), "rt-1")
        assert.isUndefined(record.lastError)
        // The new token is now the cached one.
        assert.strictEqual(tokenOf(yield* sessions.getAccessToken(provider, { minTtl: "10 minutes" })), "at-1")
        assert.strictEqual(fake.refreshes, 1)
      })
    ))

  it.effect("1000 concurrent callers on an expired token cause one refresh and one span, and all get its token", () => {
    const spans: Array<string> = []
    const tracer = Tracer.make({
      span(options) {
        spans.push(options.name)
        return new Tracer.NativeSpan(options)
      }
    })
    return run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        const gate = yield* Deferred.make<void>()
        fake.beforeRefresh = Deferred.await(gate)
        const sessions = yield* Sessions.Sessions
        const callers = yield* Effect.forEach(
          Array.from({ length: 1000 }),
          () => sessions.getAccessToken(provider),
          { concurrency: "unbounded" }
        ).pipe(Effect.forkChild)
        yield* refreshesReach(fake, 1)
        yield* Deferred.succeed(gate, undefined)
        const tokens = yield* Fiber.join(callers)
        assert.strictEqual(fake.refreshes, 1)
        assert.deepStrictEqual(new Set(tokens.map(tokenOf)), new Set(["at-1"]))
        // A trace shows the refresh once, not once per caller.
        assert.deepStrictEqual(spans.filter((n) => n.startsWith("Sessions.")), ["Sessions.getAccessToken", "Sessions.refreshGrant", "Sessions.persist"])
      })
    ).pipe(Effect.provideService(Tracer.Tracer, tracer))
  })

  it.effect("a rotation that cannot be stored is not handed out: PersistFailed, previous record intact", () =>
    run(({ counts, fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        counts.failPuts = true
        const failing = yield* Effect.forkChild(Effect.flip(sessions.getAccessToken(provider)))
        yield* refreshesReach(fake, 1)
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(failing)
        assert.strictEqual(error._tag, "SessionsError")
        assert.strictEqual(error._tag === "SessionsError" && error.reason._tag, "PersistFailed")
        assert.notInclude(error.message, "at-1")
        assert.notInclude(error.message, "rt-1")
        counts.failPuts = false
        const record = yield* store.get(provider)
        assert.strictEqual(record.generation, 0)
        assert.strictEqual(Redacted.value(record.refreshToken!), "rt-seed")
        assert.strictEqual(Redacted.value(record.accessToken!), "at-seed")
        // The token that could not be stored never reaches a caller, not even from memory.
        fake.strictRotation = false
        const next = yield* sessions.getAccessToken(provider)
        assert.strictEqual(tokenOf(next), "at-2")
        assert.strictEqual(fake.refreshes, 2)
      })
    ))

  it.effect("a passing store failure while persisting a rotation is retried: the grant is not lost", () =>
    run(({ counts, fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        const sessions = yield* Sessions.Sessions
        counts.failNextPuts = 2
        const caller = yield* Effect.forkChild(sessions.getAccessToken(provider))
        yield* refreshesReach(fake, 1)
        yield* TestClock.adjust("1 second")
        assert.strictEqual(tokenOf(yield* Fiber.join(caller)), "at-1")
        const record = yield* (yield* TokenStore.TokenStore).get(provider)
        assert.strictEqual(Redacted.value(record.refreshToken!), "rt-1")
        assert.strictEqual(fake.refreshes, 1)
      })
    ))

  it.effect("a session without a refresh token whose access token expired needs re-authentication, unmarked", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10, refreshToken: undefined })
        const sessions = yield* Sessions.Sessions
        const error = yield* Effect.flip(sessions.getAccessToken(provider))
        assert.strictEqual(error._tag, "ReauthRequired")
        assert.strictEqual(fake.refreshes, 0)
        const record = yield* (yield* TokenStore.TokenStore).get(provider)
        assert.strictEqual(record.state, "active")
      })
    ))

  it.effect("an unknown provider is an error naming the configured ones", () =>
    run(() =>
      Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        const error = yield* Effect.flip(sessions.getAccessToken("nope"))
        assert.strictEqual(error._tag, "SessionsError")
        if (error._tag !== "SessionsError") return
        assert.deepStrictEqual(error.reason, { _tag: "UnknownProvider", provider: "nope", known: [provider] })
        assert.include(error.message, `configured: ${provider}`)
      })
    ))

  it.effect("picks the session whose scopes and resource cover the request (multi-level auth)", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 3600, accessToken: "at-server" })
        yield* seed({ expiresIn: 3600, scopes: ["openid", "email", "tool:run"], accessToken: "at-tool" })
        yield* seed({ expiresIn: 3600, scopes: ["api:read"], resource, accessToken: "at-api" })
        const sessions = yield* Sessions.Sessions
        const get = (request?: Sessions.TokenRequest) => Effect.map(sessions.getAccessToken(provider, request), tokenOf)
        assert.strictEqual(yield* get(), "at-server")
        assert.strictEqual(yield* get({ scopes: ["email"] }), "at-server")
        assert.strictEqual(yield* get({ scopes: ["tool:run"] }), "at-tool")
        assert.strictEqual(yield* get({ scopes: ["tool:run", "openid"] }), "at-tool")
        assert.strictEqual(yield* get({ resource }), "at-api")
        assert.strictEqual(yield* get({ resource, scopes: ["api:read"] }), "at-api")
        const uncovered = yield* Effect.flip(get({ resource, scopes: ["api:write"] }))
        assert.strictEqual(uncovered._tag, "ReauthRequired")
        const elsewhere = yield* Effect.flip(get({ resource: "https://other.example/api" }))
        assert.strictEqual(elsewhere._tag, "ReauthRequired")
        assert.strictEqual(fake.refreshes, 0)
      })
    ))
})

describe("Sessions refresh outcomes", () => {
  it.effect("a response without refresh_token keeps the old one", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 3600 })
        fake.rotate = false
        const sessions = yield* Sessions.Sessions
        const outcome = yield* sessions.refresh(provider, { force: true })
        assert.deepStrictEqual(outcome, { _tag: "Refreshed", rotated: false, generation: 1 })
        const record = yield* (yield* TokenStore.TokenStore).get(provider)
        assert.strictEqual(Redacted.value(record.refreshToken!), "rt-seed")
        assert.strictEqual(Redacted.value(record.accessToken!), "at-1")
      })
    ))

  it.effect("not forced and valid beyond the refresh threshold: Fresh, nothing sent", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 3600 })
        const outcome = yield* (yield* Sessions.Sessions).refresh(provider)
        assert.deepStrictEqual(outcome, { _tag: "Fresh" })
        assert.strictEqual(fake.refreshes, 0)
      })
    ))

  it.effect("invalid_grant: needs_reauth with secrets dropped, never retried", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        fake.script.push(oauthError({ _tag: "InvalidGrant", description: Option.some("grant revoked") }))
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        const error = yield* Effect.flip(sessions.getAccessToken(provider))
        assert.strictEqual(error._tag, "ReauthRequired")
        assert.include(error.message, `mtsession login ${provider}`)
        const record = yield* store.get(provider)
        assert.strictEqual(record.state, "needs_reauth")
        assert.isUndefined(record.accessToken)
        assert.isUndefined(record.refreshToken)
        assert.isUndefined(record.idToken)
        assert.include(record.lastError ?? "", "grant revoked")
        assert.notInclude(record.lastError ?? "", "rt-seed")
        yield* TestClock.adjust("1 hour")
        assert.strictEqual((yield* Effect.flip(sessions.getAccessToken(provider)))._tag, "ReauthRequired")
        const outcome = yield* sessions.refresh(provider, { force: true })
        assert.strictEqual(outcome._tag, "NeedsReauth")
        assert.strictEqual(fake.refreshes, 1)
      })
    ))

  it.effect("a refresh another process already made is reused under the lock: nothing sent", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        const old = yield* seed({ expiresIn: 300 })
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        const lock = yield* RefreshLock.RefreshLock
        const outcome = yield* lock.withLock(
          provider,
          Effect.gen(function*() {
            const waiting = yield* Effect.forkChild(sessions.refresh(provider))
            yield* settle
            // "Another process" refreshed while this one waited for the lock.
            yield* store.put(
              new TokenStore.SessionRecord({
                ...old,
                accessToken: Redacted.make("at-other"),
                refreshToken: Redacted.make("rt-other"),
                expiresAt: DateTime.add(yield* DateTime.now, { hours: 1 }),
                generation: 1
              })
            )
            return waiting
          })
        ).pipe(Effect.flatMap(Fiber.join))
        assert.deepStrictEqual(outcome, { _tag: "Reused", generation: 1 })
        assert.strictEqual(fake.refreshes, 0)
        assert.strictEqual(tokenOf(yield* sessions.getAccessToken(provider)), "at-other")
      })
    ))
})

describe("Sessions retries", () => {
  const attemptsAfter = (fake: Fake, duration: Duration.Input) =>
    Effect.map(Effect.andThen(TestClock.adjust(duration), settle), () => fake.refreshes)

  it.effect("5xx then success: retried with exponential, jittered delays; the refresh token is kept meanwhile", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        fake.script.push(oauthError({ _tag: "ServerError", status: 500 }), oauthError({ _tag: "ServerError", status: 502 }))
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        const caller = yield* Effect.forkChild(sessions.getAccessToken(provider))
        yield* refreshesReach(fake, 1)
        const during = yield* store.get(provider)
        assert.strictEqual(Redacted.value(during.refreshToken!), "rt-seed")
        assert.include(during.lastError ?? "", "HTTP 500")
        // First delay: 10 s jittered to [8, 12] s.
        assert.strictEqual(yield* attemptsAfter(fake, "7999 millis"), 1)
        assert.strictEqual(yield* attemptsAfter(fake, "4001 millis"), 2)
        // Second delay: 20 s jittered to [16, 24] s after the second failure (at 8 to 12 s).
        assert.strictEqual(yield* attemptsAfter(fake, "11999 millis"), 2)
        assert.strictEqual(yield* attemptsAfter(fake, "12001 millis"), 3)
        assert.strictEqual(tokenOf(yield* Fiber.join(caller)), "at-3")
        const record = yield* store.get(provider)
        assert.isUndefined(record.lastError)
        assert.strictEqual(Redacted.value(record.refreshToken!), "rt-3")
      })
    ))

  it.effect("429 with Retry-After: the next attempt waits at least what the server asked", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        fake.script.push(oauthError({ _tag: "RateLimited", status: 429, retryAfter: Option.some(Duration.seconds(60)) }))
        const caller = yield* Effect.forkChild((yield* Sessions.Sessions).getAccessToken(provider))
        yield* refreshesReach(fake, 1)
        assert.strictEqual(yield* attemptsAfter(fake, "59 seconds"), 1)
        assert.strictEqual(yield* attemptsAfter(fake, "1 second"), 2)
        assert.strictEqual(tokenOf(yield* Fiber.join(caller)), "at-2")
      })
    , { refresh: { retryDelayBaseSeconds: 1 } }))

  it.effect("network failures outlasting max_retry_attempts: Failed, record and refresh token kept, lastError set", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        fake.fallback = oauthError({ _tag: "Network", detail: "connection refused" })
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        const caller = yield* Effect.forkChild(Effect.flip(sessions.getAccessToken(provider)))
        yield* refreshesReach(fake, 1)
        yield* TestClock.adjust("10 minutes")
        const error = yield* Fiber.join(caller)
        assert.strictEqual(fake.refreshes, 3)
        assert.strictEqual(error._tag, "SessionsError")
        assert.strictEqual(error._tag === "SessionsError" && error.reason._tag, "OAuth")
        const record = yield* store.get(provider)
        assert.strictEqual(record.state, "active")
        assert.strictEqual(Redacted.value(record.refreshToken!), "rt-seed")
        assert.include(record.lastError ?? "", "connection refused")
        // The same through `refresh`: an outcome, not an error.
        const forced = yield* Effect.forkChild(sessions.refresh(provider, { force: true }))
        yield* refreshesReach(fake, 4)
        yield* TestClock.adjust("10 minutes")
        assert.deepStrictEqual(
          Option.some(yield* Fiber.join(forced)).pipe(Option.map((o) => o._tag === "Failed" && o.retryable)),
          Option.some(true)
        )
        assert.strictEqual(fake.refreshes, 6)
      })
    , { refresh: { maxRetryAttempts: 2 } }))

  it.effect("max_retry_age_hours: no retry is scheduled to end past it, even when the server asks for longer", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        const sessions = yield* Sessions.Sessions
        // Delays of about 10 s and 20 s fit in 36 s; the third (about 40 s) would not.
        fake.fallback = oauthError({ _tag: "ServerError", status: 500 })
        const caller = yield* Effect.forkChild(Effect.flip(sessions.getAccessToken(provider)))
        yield* refreshesReach(fake, 1)
        yield* TestClock.adjust("1 hour")
        assert.strictEqual((yield* Fiber.join(caller))._tag, "SessionsError")
        assert.strictEqual(fake.refreshes, 3)
        // A Retry-After beyond the age limit: reported at once instead of waited for.
        fake.fallback = oauthError({ _tag: "RateLimited", status: 429, retryAfter: Option.some(Duration.hours(2)) })
        const outcome = yield* sessions.refresh(provider, { force: true })
        assert.strictEqual(outcome._tag, "Failed")
        assert.strictEqual(fake.refreshes, 4)
      })
    , { refresh: { maxRetryAttempts: 100, maxRetryAgeHours: 0.01 } }))

  it.effect("max_retry_attempts 0: one attempt only", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        fake.fallback = oauthError({ _tag: "ServerError", status: 503 })
        const error = yield* Effect.flip((yield* Sessions.Sessions).getAccessToken(provider))
        assert.strictEqual(error._tag, "SessionsError")
        assert.strictEqual(fake.refreshes, 1)
      })
    , { refresh: { maxRetryAttempts: 0 } }))
})

describe("Sessions.login and logout", () => {
  it.effect("login stores the session under its id; a second login of the same id counts the generation on", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        const events: Array<Sessions.LoginEvent> = []
        const onEvent = (e: Sessions.LoginEvent) => Effect.sync(() => void events.push(e))
        const first = yield* sessions.login(provider, { onEvent })
        assert.strictEqual(first.id, provider)
        assert.strictEqual(first.generation, 0)
        assert.deepStrictEqual(first.subject, Option.some("user-1"))
        assert.isTrue(first.hasRefreshToken)
        assert.deepStrictEqual(events.map((e) => e._tag), ["AuthorizationUrl"])
        const device = yield* sessions.login(provider, { onEvent, device: true })
        assert.strictEqual(device.generation, 1)
        assert.deepStrictEqual(events.map((e) => e._tag), ["AuthorizationUrl", "DeviceCode"])
        const scoped = yield* sessions.login(provider, { onEvent, scopes: ["tool:run"], resource })
        assert.strictEqual(scoped.id, TokenStore.sessionIdOf({ provider, resource, scopes: ["tool:run"] }))
        assert.deepStrictEqual(scoped.resource, Option.some(resource))
        // The default session is the second login's.
        assert.strictEqual(tokenOf(yield* sessions.getAccessToken(provider)), "at-login-2")
        assert.strictEqual(fake.logins, 3)
      })
    ))

  it.effect("logout revokes the refresh token, then the access token, then removes the session", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 3600 })
        yield* seed({ expiresIn: 3600, scopes: ["tool:run"], accessToken: "at-tool", refreshToken: "rt-tool" })
        const sessions = yield* Sessions.Sessions
        yield* sessions.getAccessToken(provider)
        const results = yield* sessions.logout(provider, { revoke: true })
        assert.deepStrictEqual(results.map((r) => r.revoked), ["revoked", "revoked"])
        assert.deepStrictEqual(
          fake.revoked.filter(([, token]) => token.endsWith("seed")),
          [["refresh_token", "rt-seed"], ["access_token", "at-seed"]]
        )
        assert.strictEqual((yield* (yield* TokenStore.TokenStore).list).length, 0)
        // Not even the cache remembers it.
        assert.strictEqual((yield* Effect.flip(sessions.getAccessToken(provider)))._tag, "ReauthRequired")
      })
    ))

  it.effect("logout with revoke false sends nothing; a failed revocation is reported and the session removed anyway", () =>
    run(({ fake }) =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: 3600 })
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        assert.deepStrictEqual(yield* sessions.logout(provider, { revoke: false }), [{ id: provider, revoked: "skipped" }])
        assert.strictEqual(fake.revoked.length, 0)
        assert.strictEqual((yield* store.list).length, 0)

        yield* seed({ expiresIn: 3600 })
        fake.revokeFails = true
        assert.deepStrictEqual(yield* sessions.logout(provider, { revoke: true }), [{ id: provider, revoked: "failed" }])
        assert.strictEqual((yield* store.list).length, 0)
      })
    ))
})

describe("Sessions tracing", () => {
  it.effect("a refresh is traced with provider, fingerprint, outcome and generation, never a token; a cached read is not", () => {
    const spans: Array<Tracer.NativeSpan> = []
    const tracer = Tracer.make({
      span(options) {
        const span = new Tracer.NativeSpan(options)
        spans.push(span)
        return span
      }
    })
    return run(() =>
      Effect.gen(function*() {
        yield* seed({ expiresIn: -10 })
        const sessions = yield* Sessions.Sessions
        yield* sessions.getAccessToken(provider)
        const grant = spans.find((s) => s.name === "Sessions.refreshGrant")
        assert.isDefined(grant)
        assert.strictEqual(grant!.attributes.get("session.provider"), provider)
        assert.strictEqual(grant!.attributes.get("session.fingerprint"), TokenStore.fingerprint(namespace, provider))
        assert.strictEqual(grant!.attributes.get("session.outcome"), "Refreshed")
        assert.strictEqual(grant!.attributes.get("session.generation"), 1)
        // Lock wait and persisting are children of the refresh.
        const ancestors = (span: Tracer.AnySpan): Array<Tracer.AnySpan> =>
          span._tag === "ExternalSpan" || Option.isNone(span.parent) ? [] : [span.parent.value, ...ancestors(span.parent.value)]
        for (const name of ["RefreshLock.withLock", "Sessions.persist"]) {
          const child = spans.find((s) => s.name === name)
          assert.isDefined(child, name)
          assert.include(ancestors(child!), grant, name)
        }
        const rendered = JSON.stringify(spans.map((s) => [s.name, [...s.attributes]]))
        for (const secret of ["at-seed", "rt-seed", "at-1", "rt-1"]) assert.notInclude(rendered, secret)

        const before = spans.length
        yield* sessions.getAccessToken(provider)
        assert.strictEqual(spans.length, before)
      })
    ).pipe(Effect.provideService(Tracer.Tracer, tracer))
  })
})
