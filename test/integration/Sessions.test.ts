/**
 * Sessions against a real authorization server (oidc-provider on 127.0.0.1,
 * refresh token rotation on), composed as a process composes it: the
 * encrypted file store and the file lock in a temporary session directory,
 * the real OAuth client over undici. Faults come from a proxy in front of
 * the token endpoint.
 */
import { assert, layer } from "@effect/vitest"
import * as NodePathModule from "node:path"
import { Context, DateTime, Effect, Layer, Option, Redacted } from "effect"
import * as OAuthClient from "../../src/OAuthClient.js"
import type * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import * as FaultProxy from "../support/FaultProxy.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import * as OidcServer from "../support/OidcServer.js"
import { configLayer, newKey, stack } from "../support/SessionsStack.js"
import { loginApproved } from "../support/Login.js"

class Server extends Context.Service<Server, OidcServer.OidcServer>()("test/Sessions/OidcServer") {}

// Access tokens outlive the default minTtl; expiry is simulated on the stored record.
const ServerLayer = Layer.effect(Server, OidcServer.acquire({ accessTokenTtl: 300, deviceInterval: 1 }))

/** Runs `body` over a fresh session directory and its own Sessions service. */
const inStack = <A, E, R>(
  options: {
    readonly providers: ReadonlyArray<SessionConfig.ProviderSettings>
    readonly refresh?: Partial<SessionConfig.Settings["tokenRefresh"]>
  },
  body: Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("mts-sessions-")
    const config = configLayer({
      sessionDirectory: NodePathModule.join(dir, "sessions"),
      key: newKey().bytes,
      providers: options.providers,
      ...(options.refresh === undefined ? {} : { refresh: options.refresh })
    })
    return yield* body.pipe(Effect.provide(stack(config)))
  }).pipe(Effect.scoped)

/** Signs in by the authorization code flow, the server's auto-approving interaction playing the browser. */
const loginByBrowser = (provider: string, options: { readonly scopes?: ReadonlyArray<string>; readonly resource?: string } = {}) =>
  Effect.gen(function*() {
    const server = yield* Server
    const sessions = yield* Sessions.Sessions
    const events: Array<Sessions.LoginEvent> = []
    const { metadata, status } = yield* loginApproved(sessions, provider, server.approve, {
      ...options,
      onEvent: (event) => Effect.sync(() => void events.push(event))
    })
    return { metadata, events, status }
  })

const isActive = (token: Redacted.Redacted<string>) =>
  Effect.gen(function*() {
    const server = yield* Server
    const oauth = yield* OAuthClient.OAuthClient
    return (yield* oauth.introspect(server.provider, token)).active
  })

/** Makes the stored access token look expired, as it would after a restart some time later. */
const expire = (id: string) =>
  Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const record = yield* store.get(id)
    yield* store.put(
      new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) })
    )
  })

/** A second Sessions instance over the same services: what a restarted process starts with (an empty cache). */
const restarted = Effect.map(Layer.build(Layer.fresh(Sessions.layer)), Context.get(Sessions.Sessions))

const refreshTokenOf = (id: string) =>
  Effect.gen(function*() {
    const record = yield* (yield* TokenStore.TokenStore).get(id)
    return record.refreshToken === undefined ? undefined : Redacted.value(record.refreshToken)
  })

layer(ServerLayer, { excludeTestServices: true })("Sessions against oidc-provider", (it) => {
  it.effect("logs in by the browser flow; a resource-bound session coexists; logout revokes both", () =>
    Effect.gen(function*() {
      const server = yield* Server
      yield* inStack(
        { providers: [server.provider] },
        Effect.gen(function*() {
          const sessions = yield* Sessions.Sessions
          const { events, metadata, status } = yield* loginByBrowser("test")
          assert.strictEqual(status, 200)
          assert.deepStrictEqual(events.map((e) => e._tag), ["AuthorizationUrl"])
          assert.strictEqual(metadata.id, "test")
          assert.deepStrictEqual(metadata.subject, Option.some(server.accountId))
          assert.isTrue(metadata.hasRefreshToken)
          assert.strictEqual(metadata.backend, "filesystem")
          const token = yield* sessions.getAccessToken("test")
          assert.isTrue(yield* isActive(token))

          const api = yield* loginByBrowser("test", { scopes: ["openid", "api:read"], resource: server.resource })
          assert.notStrictEqual(api.metadata.id, "test")
          assert.deepStrictEqual(api.metadata.scopes, ["api:read"])
          const apiToken = yield* sessions.getAccessToken("test", { resource: server.resource, scopes: ["api:read"] })
          assert.notStrictEqual(Redacted.value(apiToken), Redacted.value(token))
          assert.strictEqual(Redacted.value(yield* sessions.getAccessToken("test")), Redacted.value(token))

          const results = yield* sessions.logout("test", { revoke: true })
          assert.deepStrictEqual(results.map((r) => r.revoked), ["revoked", "revoked"])
          assert.isFalse(yield* isActive(token))
          assert.strictEqual((yield* (yield* TokenStore.TokenStore).list).length, 0)
          assert.strictEqual((yield* Effect.flip(sessions.getAccessToken("test")))._tag, "ReauthRequired")
        })
      )
    }))

  it.effect("logs in by the device grant", () =>
    Effect.gen(function*() {
      const server = yield* Server
      yield* inStack(
        { providers: [server.provider] },
        Effect.gen(function*() {
          const sessions = yield* Sessions.Sessions
          let approval: Promise<void> | undefined
          const metadata = yield* sessions.login("test", {
            device: true,
            onEvent: (event) =>
              Effect.sync(() => {
                if (event._tag === "DeviceCode") approval = server.approveDevice(event.userCode)
              })
          })
          assert.isDefined(approval)
          yield* Effect.promise(() => approval!)
          assert.deepStrictEqual(metadata.subject, Option.some(server.accountId))
          assert.isTrue(yield* isActive(yield* sessions.getAccessToken("test")))
        })
      )
    }))

  it.effect("rotation: every refresh persists the new refresh token, and reuse detection never fires", () =>
    Effect.gen(function*() {
      const server = yield* Server
      yield* inStack(
        { providers: [server.provider] },
        Effect.gen(function*() {
          const sessions = yield* Sessions.Sessions
          yield* loginByBrowser("test")
          const before = server.counters()
          const seen = new Set([yield* refreshTokenOf("test")])
          for (let generation = 1; generation <= 3; generation++) {
            const outcome = yield* sessions.refresh("test", { force: true })
            assert.deepStrictEqual(outcome, { _tag: "Refreshed", rotated: true, generation })
            const stored = yield* refreshTokenOf("test")
            assert.isFalse(seen.has(stored), "a new refresh token is stored every time")
            seen.add(stored)
          }
          // A restarted process uses the last stored grant: it works.
          yield* expire("test")
          const fresh = yield* restarted
          assert.isTrue(yield* isActive(yield* fresh.getAccessToken("test")))
          const after = server.counters()
          assert.strictEqual(after.refreshSucceeded - before.refreshSucceeded, 4)
          assert.strictEqual(after.refreshReuseDetected, before.refreshReuseDetected)
          assert.strictEqual(after.refreshInvalidGrant, before.refreshInvalidGrant)
        })
      )
    }))

  it.effect("1000 concurrent getAccessToken calls on an expired token: exactly one refresh at the server", () =>
    Effect.gen(function*() {
      const server = yield* Server
      yield* inStack(
        { providers: [server.provider] },
        Effect.gen(function*() {
          yield* loginByBrowser("test")
          yield* expire("test")
          const sessions = yield* restarted
          const before = server.counters()
          const tokens = yield* Effect.forEach(
            Array.from({ length: 1000 }),
            () => Effect.map(sessions.getAccessToken("test"), Redacted.value),
            { concurrency: "unbounded" }
          )
          const after = server.counters()
          assert.strictEqual(after.refreshSucceeded - before.refreshSucceeded, 1)
          assert.strictEqual(new Set(tokens).size, 1)
          assert.isTrue(yield* isActive(Redacted.make(tokens[0]!)))
          assert.strictEqual((yield* (yield* TokenStore.TokenStore).get("test")).generation, 1)
        })
      )
    }))

  it.effect("a grant the server revoked: needs_reauth with secrets dropped, then a new login recovers", () =>
    Effect.gen(function*() {
      const server = yield* Server
      yield* inStack(
        { providers: [server.provider] },
        Effect.gen(function*() {
          const sessions = yield* Sessions.Sessions
          const store = yield* TokenStore.TokenStore
          const oauth = yield* OAuthClient.OAuthClient
          yield* loginByBrowser("test")
          const record = yield* store.get("test")
          yield* oauth.revoke(server.provider, record.refreshToken!, "refresh_token")
          const outcome = yield* sessions.refresh("test", { force: true })
          assert.strictEqual(outcome._tag, "NeedsReauth")
          const dead = yield* store.get("test")
          assert.strictEqual(dead.state, "needs_reauth")
          assert.isUndefined(dead.accessToken)
          assert.isUndefined(dead.refreshToken)
          assert.isUndefined(dead.idToken)
          assert.isDefined(dead.lastError)
          assert.strictEqual((yield* Effect.flip(sessions.getAccessToken("test")))._tag, "ReauthRequired")
          const again = yield* loginByBrowser("test")
          assert.strictEqual(again.metadata.state, "active")
          assert.strictEqual(again.metadata.generation, dead.generation + 1)
          assert.isTrue(yield* isActive(yield* sessions.getAccessToken("test")))
        })
      )
    }))

  it.effect("faults at the token endpoint: retried or reported, no refresh token lost, all recover", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const proxy = yield* FaultProxy.acquire(server.issuer)
      const proxied: SessionConfig.ProviderSettings = {
        ...server.provider,
        name: "proxied",
        tokenEndpoint: Option.some(`${proxy.url}/token`)
      }
      yield* inStack(
        {
          providers: [proxied],
          refresh: { retryDelayBaseSeconds: 0.05, maxRetryAttempts: 3, refreshTimeoutSeconds: 1 }
        },
        Effect.gen(function*() {
          const sessions = yield* Sessions.Sessions
          yield* loginByBrowser("proxied")
          const api = yield* loginByBrowser("proxied", { scopes: ["openid", "api:read"], resource: server.resource })
          const before = server.counters()
          /** Forces a refresh of `id`; returns its outcome and how many requests reached the proxy. */
          const refreshThrough = (id: string) =>
            Effect.gen(function*() {
              const received = proxy.counts().received
              const outcome = yield* sessions.refresh(id, { force: true })
              return { outcome: outcome._tag, requests: proxy.counts().received - received }
            })

          proxy.next(FaultProxy.Faults.status(500), 2)
          assert.deepStrictEqual(yield* refreshThrough("proxied"), { outcome: "Refreshed", requests: 3 })
          proxy.next(FaultProxy.Faults.status(503, { "retry-after": "1" }))
          assert.deepStrictEqual(yield* refreshThrough("proxied"), { outcome: "Refreshed", requests: 2 })
          proxy.next(FaultProxy.Faults.status(429))
          assert.deepStrictEqual(yield* refreshThrough("proxied"), { outcome: "Refreshed", requests: 2 })
          proxy.next(FaultProxy.Faults.hang)
          assert.deepStrictEqual(yield* refreshThrough("proxied"), { outcome: "Refreshed", requests: 2 })
          proxy.next(FaultProxy.Faults.malformed)
          assert.deepStrictEqual(yield* refreshThrough("proxied"), { outcome: "Refreshed", requests: 2 })

          // Failures that outlast the schedule: reported, and the grant is kept for later.
          const kept = yield* refreshTokenOf("proxied")
          proxy.setDefault(FaultProxy.Faults.status(500))
          assert.deepStrictEqual(yield* refreshThrough("proxied"), { outcome: "Failed", requests: 4 })
          assert.strictEqual(yield* refreshTokenOf("proxied"), kept)
          assert.include((yield* (yield* TokenStore.TokenStore).get("proxied")).lastError ?? "", "HTTP 500")
          proxy.setDefault(FaultProxy.Faults.pass)

          // The server unreachable: every session fails; back up, every session recovers.
          yield* Effect.promise(() => proxy.down())
          yield* expire("proxied")
          yield* expire(api.metadata.id)
          const fresh = yield* restarted
          const down = yield* Effect.flip(fresh.getAccessToken("proxied"))
          assert.strictEqual(down._tag === "SessionsError" && down.reason._tag, "OAuth")
          assert.strictEqual(
            (yield* sessions.refresh(api.metadata.id, { force: true }))._tag,
            "Failed"
          )
          yield* Effect.promise(() => proxy.up())
          assert.isTrue(yield* isActive(yield* fresh.getAccessToken("proxied")))
          assert.isTrue(
            yield* isActive(yield* fresh.getAccessToken("proxied", { resource: server.resource, scopes: ["api:read"] }))
          )
          assert.isUndefined((yield* (yield* TokenStore.TokenStore).get("proxied")).lastError)

          const after = server.counters()
          assert.strictEqual(after.refreshSucceeded - before.refreshSucceeded, 7)
          assert.strictEqual(after.refreshReuseDetected, before.refreshReuseDetected)
          assert.strictEqual(after.refreshInvalidGrant, before.refreshInvalidGrant)
        })
      )
    }))
})
