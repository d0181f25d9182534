import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Fiber, Layer, Option, Redacted, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as OAuthClient from "../src/OAuthClient.js"
import * as Recovery from "../src/Recovery.js"
import * as SessionConfig from "../src/SessionConfig.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import { UserContext } from "../src/UserContext.js"
import { sampleRecord } from "./support/TokenStoreConformance.js"
import * as Spans from "./support/Spans.js"

const T0 = 1_900_000_000_000
const minutes = (n: number) => n * 60_000
const at = (ms: number) => DateTime.makeUnsafe(ms)

type Fields = Partial<ConstructorParameters<typeof TokenStore.SessionRecord>[0]>

/** Session `id` of `provider`, expiring `expiresInMinutes` after T0. */
const session = (id: string, provider: string, expiresInMinutes: number, overrides: Fields = {}) =>
  sampleRecord(1, { id, provider, expiresAt: at(T0 + minutes(expiresInMinutes)), ...overrides })

type Script = (id: string, call: number) => Sessions.RefreshOutcome | "die"

interface Fake {
  readonly calls: Ref.Ref<ReadonlyArray<{ readonly id: string; readonly at: number; readonly force: boolean }>>
  readonly oauthCalls: Ref.Ref<ReadonlyArray<string>>
}

const emptyMetadata: OAuthClient.Metadata = {
  issuer: "https://issuer.example",
  discovered: true,
  authorizationEndpoint: Option.none(),
  tokenEndpoint: Option.some("https://issuer.example/token"),
  deviceAuthorizationEndpoint: Option.none(),
  revocationEndpoint: Option.none(),
  introspectionEndpoint: Option.none(),
  userinfoEndpoint: Option.none(),
  issParameterSupported: false
}

/**
 * Runs `body` with a memory store holding `records`, a fake Sessions answering
 * from `script` (default: Refreshed), a fake OAuth client and the settings
 * `recovery` applied.
 */
const withRecovery = <A, E>(
  setup: {
    readonly records: ReadonlyArray<TokenStore.SessionRecord>
    readonly script?: Script
    readonly recovery?: Partial<SessionConfig.Settings["sessionRecovery"]>
    readonly oauth?: Partial<OAuthClient.Shape>
    readonly store?: (memory: TokenStore.Shape) => TokenStore.Shape
  },
  body: (recovery: Recovery.Shape, fake: Fake) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const memory = yield* TokenStore.makeMemory
    for (const r of setup.records) yield* memory.put(r)
    const calls = yield* Ref.make<ReadonlyArray<{ readonly id: string; readonly at: number; readonly force: boolean }>>([])
    const oauthCalls = yield* Ref.make<ReadonlyArray<string>>([])
    const refresh = (id: string, o?: { readonly force?: boolean | undefined }) =>
      Effect.gen(function*() {
        const now = DateTime.toEpochMillis(yield* DateTime.now)
        const n = yield* Ref.modify(calls, (cs) => [cs.filter((c) => c.id === id).length, [...cs, { id, at: now, force: o?.force ?? false }]])
        const outcome = setup.script?.(id, n) ?? { _tag: "Refreshed", rotated: true, generation: 1 }
        if (outcome === "die") return yield* Effect.die(new Error("fake refresh blew up"))
        return outcome
      })
    const sessions = Sessions.Sessions.of({
      refresh,
      getAccessToken: () => Effect.die("not used"),
      login: () => Effect.die("not used"),
      logout: () => Effect.die("not used")
    })
    const track = (name: string) => Ref.update(oauthCalls, (cs) => [...cs, name])
    const oauth = Layer.mock(OAuthClient.OAuthClient, {
      discover: (p) => track(`discover ${p.name}`).pipe(Effect.as(emptyMetadata)),
      ...setup.oauth
    })
    const user = Layer.succeed(UserContext, {
      username: "alice",
      uid: 1000,
      home: "/home/alice",
      hostname: "box",
      principal: Option.none(),
      namespace: "alice@box:1000",
      sessionDirectory: "/home/alice/.magictunnel/sessions",
      storageDirectory: "/home/alice/.magictunnel/sessions/ns-x"
    })
    const recovery = yield* Recovery.make.pipe(
      Effect.provideService(TokenStore.TokenStore, setup.store?.(memory) ?? memory),
      Effect.provideService(Sessions.Sessions, sessions),
      Effect.provide(Layer.mergeAll(
        oauth,
        user,
        SessionConfig.layerWith((s) => ({ ...s, sessionRecovery: { ...s.sessionRecovery, ...setup.recovery } }))
      ))
    )
    return yield* body(recovery, { calls, oauthCalls })
  })

const outcomes = (r: Recovery.RecoveryReport) => Object.fromEntries(r.sessions.map((s) => [s.id, s.outcome]))
const detailOf = (r: Recovery.RecoveryReport, id: string) =>
  Option.getOrElse(r.sessions.find((s) => s.id === id)!.detail, () => "")

/** A store whose `list` does not open records (like the keyring stores) and whose record `id` is damaged. */
const corruptedStore = (id: string) => (memory: TokenStore.Shape): TokenStore.Shape => ({
  ...memory,
  listVerifies: false,
  get: (x) =>
    x === id
      ? Effect.fail(new TokenStore.TokenStoreError({ backend: "memory", operation: "get", sessionId: x, reason: { _tag: "Corrupted", detail: "authentication tag mismatch", quarantinedAs: "x.corrupt" } }))
      : memory.get(x)
})

describe("Recovery", () => {
  it.effect("a store whose list verifies the records is not read twice", () =>
    withRecovery({
      records: [session("valid", "a", 60), session("expired", "a", -5)],
      script: () => ({ _tag: "Refreshed", rotated: true, generation: 1 }),
      store: (memory) => ({ ...memory, get: () => Effect.die("recovery read a record the listing had verified") })
    }, (recovery) =>
      Effect.gen(function*() {
        const report = yield* recovery.run()
        assert.deepStrictEqual(outcomes(report), { valid: "recovered", expired: "refreshed" })
      })))

  it.effect("classifies every kind of session and refreshes only what needs it", () =>
    withRecovery({
      records: [
        session("valid", "a", 60),
        session("expiring", "a", 10),
        session("expired", "a", -5),
        session("expired-no-rt", "b", -5, { refreshToken: undefined }),
        session("expiring-no-rt", "b", 10, { refreshToken: undefined }),
        session("reauth", "b", 60, { state: "needs_reauth", accessToken: undefined, refreshToken: undefined, lastError: "invalid_grant" }),
        session("dead-grant", "c", 5),
        session("reused", "c", 5),
        session("broken", "c", 60)
      ],
      script: (id) =>
        id === "dead-grant"
          ? { _tag: "NeedsReauth", reason: "invalid_grant: refresh token revoked" }
          : id === "reused"
          ? { _tag: "Reused", generation: 4 }
          : { _tag: "Refreshed", rotated: true, generation: 1 },
      store: corruptedStore("broken")
    }, (recovery, fake) =>
      Effect.gen(function*() {
        const report = yield* recovery.run()
        assert.deepStrictEqual(outcomes(report), {
          "valid": "recovered",
          "expiring": "refreshed",
          "expired": "refreshed",
          "expired-no-rt": "needs_reauth",
          "expiring-no-rt": "recovered",
          "reauth": "needs_reauth",
          "dead-grant": "needs_reauth",
          "reused": "refreshed",
          "broken": "failed"
        })
        assert.deepStrictEqual(
          { recovered: report.recovered, refreshed: report.refreshed, needs_reauth: report.needs_reauth, failed: report.failed },
          { recovered: 2, refreshed: 3, needs_reauth: 3, failed: 1 }
        )
        const refreshed = (yield* Ref.get(fake.calls)).map((c) => `${c.id}:${c.force}`).sort()
        assert.deepStrictEqual(refreshed, ["dead-grant:false", "expired:false", "expiring:false", "reused:false"])
        assert.include(detailOf(report, "reauth"), "invalid_grant")
        assert.include(detailOf(report, "reauth"), "mtsession login b")
        assert.include(detailOf(report, "expired-no-rt"), "no refresh token")
        assert.include(detailOf(report, "broken"), "corrupted")
        assert.deepStrictEqual(yield* Ref.get(fake.oauthCalls), [], "no validation unless asked")
        for (const s of report.sessions) {
          assert.notInclude(Option.getOrElse(s.detail, () => ""), "secret", "no token in the report")
        }
      })))

  it.effect("with graceful_degradation one provider failing does not hold up or fail the others", () =>
    withRecovery({
      records: [session("a1", "a", 5), session("a2", "a", 5), session("b1", "b", 5), session("c1", "c", 60)],
      script: (id) => id === "a1" ? { _tag: "Failed", reason: "HTTP 500", retryable: false } : id === "a2" ? "die" : { _tag: "Refreshed", rotated: false, generation: 1 },
      recovery: { gracefulDegradation: true }
    }, (recovery) =>
      Effect.gen(function*() {
        const report = yield* recovery.run()
        assert.deepStrictEqual(outcomes(report), { a1: "failed", a2: "failed", b1: "refreshed", c1: "recovered" })
        assert.strictEqual(detailOf(report, "a1"), "HTTP 500")
        assert.strictEqual(report.failed, 2)
      })))

  it.effect("without graceful_degradation the first provider failure fails the run", () =>
    withRecovery({
      records: [session("a1", "a", 5), session("b1", "b", 5)],
      script: (id) => id === "a1" ? { _tag: "Failed", reason: "HTTP 500", retryable: false } : { _tag: "Refreshed", rotated: false, generation: 1 },
      recovery: { gracefulDegradation: false }
    }, (recovery) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(recovery.run())
        assert.strictEqual(error.reason._tag, "ProviderFailed")
        assert.include(error.message, "provider a")
        assert.include(error.message, "HTTP 500")
      })))

  it.effect("retry_failed_providers retries transient failures with backoff, up to max_recovery_attempts", () =>
    withRecovery({
      records: [session("flaky", "a", 5), session("down", "b", 5), session("fine", "c", 5)],
      script: (id, n) =>
        id === "down" || (id === "flaky" && n < 2)
          ? { _tag: "Failed", reason: "HTTP 503", retryable: true }
          : { _tag: "Refreshed", rotated: true, generation: 1 },
      recovery: { retryFailedProviders: true, maxRecoveryAttempts: 3 }
    }, (recovery, fake) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(recovery.run())
        yield* TestClock.adjust(Duration.millis(1))
        const timesOf = (id: string) => Effect.map(Ref.get(fake.calls), (cs) => cs.filter((c) => c.id === id).map((c) => c.at - T0))
        assert.deepStrictEqual(yield* timesOf("flaky"), [0], "first attempt")
        assert.isUndefined(fiber.pollUnsafe(), "waiting for the retry")
        yield* TestClock.adjust(Duration.seconds(10))
        const report = yield* Fiber.join(fiber)
        assert.deepStrictEqual(outcomes(report), { flaky: "refreshed", down: "failed", fine: "refreshed" })
        const flaky = yield* timesOf("flaky")
        const down = yield* timesOf("down")
        assert.strictEqual(flaky.length, 3)
        assert.strictEqual(down.length, 3, "max_recovery_attempts attempts in all")
        assert.deepStrictEqual(yield* timesOf("fine"), [0], "a healthy provider is not retried")
        // Exponential from retryBase (1 s), jittered by ±20%.
        const base = Duration.toMillis(Recovery.retryBase)
        assert.isTrue(down[1]! >= base * 0.8 && down[1]! <= base * 1.2, `first retry after ${down[1]} ms`)
        const second = down[2]! - down[1]!
        assert.isTrue(second >= base * 2 * 0.8 && second <= base * 2 * 1.2, `second retry after ${second} ms`)
      })))

  it.effect("without retry_failed_providers a transient failure is tried once", () =>
    withRecovery({
      records: [session("down", "b", 5)],
      script: () => ({ _tag: "Failed", reason: "HTTP 503", retryable: true }),
      recovery: { retryFailedProviders: false }
    }, (recovery, fake) =>
      Effect.gen(function*() {
        const report = yield* recovery.run()
        assert.strictEqual(report.failed, 1)
        assert.strictEqual((yield* Ref.get(fake.calls)).length, 1)
      })))

  it.effect("validation asks introspection, else userinfo; an inactive token is refreshed or needs re-auth", () =>
    withRecovery({
      records: [
        session("active", "intro", 60),
        session("revoked", "intro", 60, { accessToken: Redacted.make("AT-revoked") }),
        session("revoked-no-rt", "intro", 60, { accessToken: Redacted.make("AT-revoked"), refreshToken: undefined }),
        session("ui-ok", "ui", 60),
        session("ui-bad", "ui", 60, { accessToken: Redacted.make("AT-revoked") }),
        session("none", "plain", 60)
      ],
      oauth: {
        discover: (p) =>
          Effect.succeed({
            ...emptyMetadata,
            introspectionEndpoint: p.name === "intro" ? Option.some("https://issuer.example/introspect") : Option.none(),
            userinfoEndpoint: p.name === "ui" ? Option.some("https://issuer.example/userinfo") : Option.none()
          }),
        introspect: (_p, token) =>
          Effect.succeed({
            active: !Redacted.value(token).includes("revoked"),
            scope: Option.none(),
            clientId: Option.none(),
            subject: Option.none(),
            expiresAt: Option.none(),
            tokenType: Option.none()
          }),
        userinfo: (p, token) =>
          Redacted.value(token).includes("revoked")
            ? Effect.fail(new OAuthClient.OAuthError({ provider: p.name, operation: "userinfo", reason: { _tag: "Protocol", code: "invalid_token", description: Option.none() } }))
            : Effect.succeed({ subject: "user", claims: {} })
      }
    }, (recovery, fake) =>
      Effect.gen(function*() {
        const report = yield* recovery.run({ validate: true })
        assert.deepStrictEqual(outcomes(report), {
          "active": "recovered",
          "revoked": "refreshed",
          "revoked-no-rt": "needs_reauth",
          "ui-ok": "recovered",
          "ui-bad": "refreshed",
          "none": "recovered"
        })
        assert.include(detailOf(report, "active"), "validated")
        assert.include(detailOf(report, "revoked"), "inactive")
        assert.include(detailOf(report, "none"), "not validated")
        assert.deepStrictEqual(
          (yield* Ref.get(fake.calls)).map((c) => `${c.id}:${c.force}`).sort(),
          ["revoked:true", "ui-bad:true"],
          "a token the server rejects is refreshed even though the clock calls it valid"
        )
      })))

  it.effect("validation is bounded by token_validation_timeout_seconds", () =>
    withRecovery({
      records: [session("slow", "intro", 60)],
      recovery: { tokenValidationTimeoutSeconds: 7 },
      oauth: {
        discover: () => Effect.succeed({ ...emptyMetadata, introspectionEndpoint: Option.some("https://issuer.example/introspect") }),
        introspect: () => Effect.never
      }
    }, (recovery) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(recovery.run({ validate: true }))
        yield* TestClock.adjust(Duration.millis(6_999))
        assert.isUndefined(fiber.pollUnsafe(), "still waiting for the server")
        yield* TestClock.adjust(Duration.millis(1))
        const report = yield* Fiber.join(fiber)
        assert.deepStrictEqual(outcomes(report), { slow: "recovered" })
        assert.include(detailOf(report, "slow"), "timed out after 7 s")
      })))

  it.effect("with recovery off, run reports nothing and the startup hook does not run", () =>
    withRecovery({ records: [session("x", "a", 5)], recovery: { enabled: false } }, (recovery, fake) =>
      Effect.gen(function*() {
        const report = yield* recovery.run()
        assert.deepStrictEqual(report, Recovery.reportOf([]))
        assert.strictEqual((yield* Ref.get(fake.calls)).length, 0)
      })))

  it.effect("onStartup honours auto_recovery_on_startup", () =>
    withRecovery({ records: [session("x", "a", 5)], recovery: { autoRecoveryOnStartup: false } }, (recovery, fake) =>
      Effect.gen(function*() {
        const skipped = yield* Recovery.onStartup().pipe(
          Effect.provideService(Recovery.Recovery, recovery),
          Effect.provide(SessionConfig.layerWith((s) => ({ ...s, sessionRecovery: { ...s.sessionRecovery, autoRecoveryOnStartup: false } })))
        )
        assert.isTrue(Option.isNone(skipped))
        const ran = yield* Recovery.onStartup().pipe(
          Effect.provideService(Recovery.Recovery, recovery),
          Effect.provide(SessionConfig.layerDefaults)
        )
        assert.strictEqual(Option.getOrThrow(ran).refreshed, 1)
        assert.strictEqual((yield* Ref.get(fake.calls)).length, 1)
      })))

  it.effect("runPeriodic checks again every validation_interval_minutes and refreshes what became due", () =>
    withRecovery({
      records: [session("soon", "a", 70), session("later", "b", 190)],
      recovery: { validationIntervalMinutes: 60 }
    }, (recovery, fake) =>
      Effect.gen(function*() {
        yield* Effect.forkChild(
          Recovery.runPeriodic().pipe(
            Effect.provideService(Recovery.Recovery, recovery),
            Effect.provide(SessionConfig.layerWith((s) => ({ ...s, sessionRecovery: { ...s.sessionRecovery, validationIntervalMinutes: 60 } })))
          )
        )
        yield* TestClock.adjust(Duration.minutes(59))
        assert.strictEqual((yield* Ref.get(fake.calls)).length, 0, "nothing before the first interval")
        yield* TestClock.adjust(Duration.minutes(1))
        assert.deepStrictEqual((yield* Ref.get(fake.calls)).map((c) => [c.id, c.at - T0]), [["soon", minutes(60)]])
        yield* TestClock.adjust(Duration.minutes(120))
        assert.deepStrictEqual(
          (yield* Ref.get(fake.calls)).map((c) => [c.id, c.at - T0]),
          [["soon", minutes(60)], ["soon", minutes(120)], ["soon", minutes(180)], ["later", minutes(180)]],
          "each check refreshes what is within the threshold then (the fake leaves the expiry as it was)"
        )
      })))
  it.effect("traces the run with its counts and one span per session with provider, fingerprint and outcome, never a token", () =>
    withRecovery({ records: [session("valid", "a", 60), session("expiring", "b", 5)] }, (recovery) =>
      Effect.gen(function*() {
        const { spans, tracer } = Spans.recording()
        yield* recovery.run().pipe(Effect.withTracer(tracer))
        const run = spans.find((s) => s.name === "Recovery.run")
        assert.isDefined(run)
        assert.strictEqual(run!.attributes.get("recovery.recovered"), 1)
        assert.strictEqual(run!.attributes.get("recovery.refreshed"), 1)
        const perSession = spans.filter((s) => s.name === "Recovery.session")
        // Children of the run, one per session, whether the listing settled it or it needed work.
        assert.isTrue(perSession.every((s) => s.parent._tag === "Some" && s.parent.value.spanId === run!.spanId))
        assert.deepStrictEqual(
          perSession.map((s) => Object.fromEntries(s.attributes)).map((a) => [a["session.provider"], a["session.fingerprint"], a["recovery.outcome"]]).sort(),
          [
            ["a", TokenStore.fingerprint("alice@box:1000", "valid"), "recovered"],
            ["b", TokenStore.fingerprint("alice@box:1000", "expiring"), "refreshed"]
          ]
        )
        for (const s of spans) {
          assert.notInclude(JSON.stringify(Object.fromEntries(s.attributes)), "secret", s.name)
        }
      })))
})
