/**
 * Spans over real OTLP/HTTP: the Sessions stack of a process (encrypted file
 * store, file lock, real OAuth client against oidc-provider) with telemetry
 * switched on, exporting to a receiver this test starts on 127.0.0.1. Checks
 * the names, parent-child structure and attributes of a refresh that had to
 * wait for the lock, and of a recovery; and that no token was ever exported.
 */
import { assert, layer } from "@effect/vitest"
import * as NodePathModule from "node:path"
import { Context, DateTime, Deferred, Effect, Fiber, Layer, Option, Redacted } from "effect"
import * as Recovery from "../../src/Recovery.js"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as Sessions from "../../src/Sessions.js"
import * as Telemetry from "../../src/Telemetry.js"
import * as TokenStore from "../../src/TokenStore.js"
import * as UserContext from "../../src/UserContext.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import * as OidcServer from "../support/OidcServer.js"
import * as OtlpReceiver from "../support/OtlpReceiver.js"
import { configLayer, newKey, stack } from "../support/SessionsStack.js"
import { loginApproved } from "../support/Login.js"

class Server extends Context.Service<Server, OidcServer.OidcServer>()("test/Observability/OidcServer") {}
const ServerLayer = Layer.effect(Server, OidcServer.acquire({ accessTokenTtl: 300 }))

const login = (provider: string, options: { readonly scopes?: ReadonlyArray<string>; readonly resource?: string } = {}) =>
  Effect.gen(function*() {
    const server = yield* Server
    const sessions = yield* Sessions.Sessions
    return (yield* loginApproved(sessions, provider, server.approve, options)).metadata
  })

const expire = (id: string) =>
  Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const record = yield* store.get(id)
    yield* store.put(new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) }))
  })

const secretsOf = Effect.gen(function*() {
  const store = yield* TokenStore.TokenStore
  const out: Array<string> = []
  for (const m of yield* store.list) {
    const r = yield* store.get(m.id)
    for (const s of [r.accessToken, r.refreshToken, r.idToken]) if (s !== undefined) out.push(Redacted.value(s))
  }
  return out
})

const childrenOf = (spans: ReadonlyArray<OtlpReceiver.Span>, parent: OtlpReceiver.Span) =>
  spans.filter((s) => s.parentSpanId === parent.spanId && s.traceId === parent.traceId)

layer(ServerLayer, { excludeTestServices: true })("traces over OTLP/HTTP", (it) => {
  it.effect("a refresh that waited for the lock, and a recovery, arrive with their structure and attributes", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const receiver = yield* OtlpReceiver.acquire
      const dir = yield* tempDir("mts-otel-")
      const telemetry = Telemetry.layerPlan({
        traces: Option.some({ url: Option.some(`${receiver.url}/v1/traces`) }),
        metrics: { _tag: "None" },
        serviceName: "mtsession-test"
      })
      const services = Recovery.layer.pipe(
        Layer.provideMerge(
          stack(configLayer({ sessionDirectory: NodePathModule.join(dir, "sessions"), key: newKey().bytes, providers: [server.provider] }))
        )
      )
      const seen = yield* Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        const lock = yield* RefreshLock.RefreshLock
        const namespace = (yield* UserContext.UserContext).namespace
        yield* login("test")
        yield* login("test", { scopes: ["openid", "api:read"], resource: server.resource })

        // Another holder has the lock: the forced refresh must wait for it.
        const holding = yield* Deferred.make<void>()
        const holder = yield* Effect.forkChild(lock.withLock("test", Effect.andThen(Deferred.succeed(holding, undefined), Effect.sleep("400 millis"))))
        yield* Deferred.await(holding)
        const outcome = yield* sessions.refresh("test", { force: true })
        assert.strictEqual(outcome._tag, "Refreshed")
        yield* Fiber.join(holder)

        for (const m of yield* (yield* TokenStore.TokenStore).list) yield* expire(m.id)
        const report = yield* (yield* Recovery.Recovery).run()
        assert.strictEqual(report.refreshed, 2)
        const ids = (yield* (yield* TokenStore.TokenStore).list).map((m) => m.id)
        return { namespace, ids, secrets: yield* secretsOf }
      }).pipe(Effect.provide(Layer.merge(services, telemetry)))
      // The layer's scope closed: the SDK flushed every span to the receiver.

      const spans = receiver.spans()
      assert.isTrue(spans.every((s) => s.serviceName === "mtsession-test"))
      const fp = (id: string) => TokenStore.fingerprint(seen.namespace, id)

      // The refresh: Sessions.refresh > Sessions.refreshGrant > RefreshLock.withLock > acquire, server call, persist.
      const refresh = spans.find((s) => s.name === "Sessions.refresh" && s.attributes["session.outcome"] === "Refreshed")
      assert.isDefined(refresh)
      const grant = childrenOf(spans, refresh!).find((s) => s.name === "Sessions.refreshGrant")
      assert.isDefined(grant)
      assert.strictEqual(grant!.attributes["session.provider"], "test")
      assert.strictEqual(grant!.attributes["session.fingerprint"], fp("test"))
      assert.strictEqual(grant!.attributes["session.backend"], "filesystem")
      assert.strictEqual(grant!.attributes["refresh.outcome"], "Refreshed")
      assert.strictEqual(grant!.attributes["refresh.generation"], 1)
      const withLock = childrenOf(spans, grant!).find((s) => s.name === "RefreshLock.withLock")
      assert.isDefined(withLock)
      const under = childrenOf(spans, withLock!).map((s) => s.name)
      assert.includeMembers(under, ["RefreshLock.acquire", "OAuthClient.refresh", "Sessions.persist"])
      const acquire = childrenOf(spans, withLock!).find((s) => s.name === "RefreshLock.acquire")!
      assert.isAtLeast(Number(acquire.attributes["lock.wait_ms"]), 300)
      assert.strictEqual(withLock!.attributes["lock.outcome"], "acquired")
      const call = childrenOf(spans, withLock!).find((s) => s.name === "OAuthClient.refresh")!
      assert.strictEqual(call.attributes["oauth.outcome"], "success")
      const persist = childrenOf(spans, withLock!).find((s) => s.name === "Sessions.persist")!
      assert.isTrue(childrenOf(spans, persist).some((s) => s.name === "TokenStore.filesystem.put"))

      // The recovery: one Recovery.session child per session, each with its own refresh below it.
      const run = spans.find((s) => s.name === "Recovery.run")
      assert.isDefined(run)
      assert.strictEqual(run!.attributes["recovery.refreshed"], 2)
      const perSession = childrenOf(spans, run!).filter((s) => s.name === "Recovery.session")
      assert.strictEqual(perSession.length, 2)
      assert.sameMembers(perSession.map((s) => s.attributes["session.fingerprint"]), seen.ids.map(fp))
      for (const s of perSession) {
        assert.strictEqual(s.attributes["recovery.outcome"], "refreshed")
        assert.strictEqual(s.attributes["session.provider"], "test")
        const below = childrenOf(spans, s).find((c) => c.name === "Sessions.refresh")
        assert.isDefined(below, "the session's refresh is its child")
        assert.isTrue(childrenOf(spans, below!).some((c) => c.name === "Sessions.refreshGrant"))
      }

      // No token, in any attribute, event or status message, ever left the process.
      const exported = receiver.bodies().join("\n")
      assert.isAbove(seen.secrets.length, 3)
      for (const secret of seen.secrets) assert.notInclude(exported, secret)
    }))
})
