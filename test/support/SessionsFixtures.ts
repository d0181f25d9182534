/**
 * Fixtures for the unit tests of Sessions: a fake authorization server
 * behind the `OAuthClient` contract (rotating refresh tokens, rejecting a
 * reused one like a real server, scripted failures), a memory store that
 * counts reads and can fail writes, and the layers around them.
 */
import { DateTime, Effect, Layer, Option, Redacted } from "effect"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenResponse from "../../src/TokenResponse.js"
import * as TokenStore from "../../src/TokenStore.js"
import { UserContext } from "../../src/UserContext.js"

export const provider = "prov"
export const namespace = "tester@testhost:1000"
export const resource = "https://api.example/"
const providerScopes = ["openid", "email"]

/** The configured provider of the unit tests. */
export const providerSettings: SessionConfig.ProviderSettings = SessionConfig.providerSettings({
  name: provider,
  issuer: Option.some("https://auth.example"),
  clientId: "client-1",
  scopes: providerScopes
})

/** A refresh failure as the real client reports it. */
export const oauthError = (reason: OAuthClient.Reason) =>
  new OAuthClient.OAuthError({ provider, operation: "refresh", reason })

/** The fake server's state and knobs (plain fields: tests read and set them directly). */
export interface Fake {
  refreshes: number
  /** Failures for the next refreshes, in order. */
  readonly script: Array<OAuthClient.OAuthError>
  /** A failure for every refresh once the script is used up. */
  fallback: OAuthClient.OAuthError | undefined
  /** Issue a new refresh token on refresh. */
  rotate: boolean
  /** Reject a refresh token that was already rotated away (reuse detection), as real servers do. */
  strictRotation: boolean
  /** Runs before a refresh is answered (e.g. waits on a gate). */
  beforeRefresh: Effect.Effect<void>
  readonly revoked: Array<readonly [OAuthClient.TokenTypeHint, string]>
  revokeFails: boolean
  logins: number
}

const response = (fields: Record<string, unknown>) => TokenResponse.fromUnknown(fields).pipe(Effect.orDie)

const makeFake = (): { readonly fake: Fake; readonly layer: Layer.Layer<OAuthClient.OAuthClient> } => {
  const fake: Fake = {
    refreshes: 0,
    script: [],
    fallback: undefined,
    rotate: true,
    strictRotation: true,
    beforeRefresh: Effect.void,
    revoked: [],
    revokeFails: false,
    logins: 0
  }
  const used = new Set<string>()
  const login = () =>
    Effect.gen(function*() {
      const n = ++fake.logins
      return {
        response: yield* response({
          access_token: `at-login-${n}`,
          refresh_token: `rt-login-${n}`,
          token_type: "Bearer",
          expires_in: 3600
        }),
        subject: Option.some("user-1")
      }
    })
  const layer = Layer.mock(OAuthClient.OAuthClient)({
    discover: (settings) =>
      Effect.succeed({
        issuer: Option.getOrElse(settings.issuer, () => "https://auth.example"),
        discovered: true,
        authorizationEndpoint: Option.some("https://auth.example/authorize"),
        tokenEndpoint: Option.some("https://auth.example/token"),
        deviceAuthorizationEndpoint: Option.some("https://auth.example/device"),
        revocationEndpoint: Option.some("https://auth.example/revoke"),
        introspectionEndpoint: Option.none(),
        userinfoEndpoint: Option.none(),
        issParameterSupported: true
      }),
    authorizationCode: (_settings, options) =>
      Effect.andThen(options.onUrl("https://auth.example/authorize?client_id=client-1"), login()),
    deviceAuthorization: (_settings, options) =>
      Effect.andThen(
        options.onCode({ verification_uri: "https://auth.example/device", user_code: "ABCD-EFGH", expires_in: 600, interval: 5 }),
        login()
      ),
    refresh: (request) =>
      Effect.gen(function*() {
        const n = ++fake.refreshes
        yield* fake.beforeRefresh
        const scripted = fake.script.shift() ?? fake.fallback
        if (scripted !== undefined) return yield* scripted
        const presented = Redacted.value(request.refreshToken)
        if (fake.strictRotation && used.has(presented)) {
          return yield* oauthError({ _tag: "InvalidGrant", description: Option.some("refresh token already used") })
        }
        if (fake.rotate) used.add(presented)
        return yield* response({
          access_token: `at-${n}`,
          token_type: "Bearer",
          expires_in: 3600,
          ...(fake.rotate ? { refresh_token: `rt-${n}` } : {})
        })
      }),
    revoke: (_target, token, hint) =>
      fake.revokeFails
        ? Effect.fail(new OAuthClient.OAuthError({ provider, operation: "revoke", reason: { _tag: "ServerError", status: 500 } }))
        : Effect.sync(() => {
          fake.revoked.push([hint, Redacted.value(token)])
          return "revoked" as const
        })
  })
  return { fake, layer }
}

/** Store counters and the write failure switch. */
export interface StoreCounts {
  gets: number
  puts: number
  /** Every write fails (a full disk). */
  failPuts: boolean
  /** The next writes fail, then writes work again (a passing I/O error). */
  failNextPuts: number
}

const countingStore = (counts: StoreCounts) =>
  Layer.effect(
    TokenStore.TokenStore,
    Effect.map(TokenStore.makeMemory, (inner) =>
      TokenStore.TokenStore.of({
        ...inner,
        get: (id) => Effect.suspend(() => (counts.gets++, inner.get(id))),
        put: (record) =>
          Effect.suspend(() => {
            counts.puts++
            if (!counts.failPuts && counts.failNextPuts === 0) return inner.put(record)
            if (counts.failNextPuts > 0) counts.failNextPuts--
            return Effect.fail(
              new TokenStore.TokenStoreError({
                backend: "memory",
                operation: "put",
                sessionId: record.id,
                reason: { _tag: "Io", detail: "disk full" }
              })
            )
          })
      })
    )
  )

/** A user context that touches no file system. */
export const userLayer = Layer.succeed(
  UserContext,
  UserContext.of({
    username: "tester",
    uid: 1000,
    home: "/nonexistent",
    hostname: "testhost",
    principal: Option.none(),
    namespace,
    sessionDirectory: "/nonexistent",
    storageDirectory: "/nonexistent"
  })
)

/** What a test gets: the fake, the store counters and the layer of the whole service. */
export interface Setup {
  readonly fake: Fake
  readonly counts: StoreCounts
  readonly layer: Layer.Layer<
    Sessions.Sessions | TokenStore.TokenStore | RefreshLock.RefreshLock | OAuthClient.OAuthClient | SessionConfig.SessionConfig
  >
}

/** Builds a fresh environment: retries start at 10 s unless `refresh` says otherwise. */
export const setup = (options?: { readonly refresh?: Partial<SessionConfig.Settings["tokenRefresh"]> }) =>
  Effect.sync((): Setup => {
    const { fake, layer: oauth } = makeFake()
    const counts: StoreCounts = { gets: 0, puts: 0, failPuts: false, failNextPuts: 0 }
    const config = SessionConfig.layerWith(
      (s) => ({ ...s, tokenRefresh: { ...s.tokenRefresh, retryDelayBaseSeconds: 10, ...options?.refresh } }),
      { providers: new Map([[provider, providerSettings]]) }
    )
    const layer = Sessions.layer.pipe(
      Layer.provideMerge(Layer.mergeAll(countingStore(counts), RefreshLock.layerMemory, oauth, config, userLayer))
    )
    return { fake, counts, layer }
  })

/** Stores a session of {@link provider} whose access token expires `expiresIn` seconds from now. */
export const seed = (options: {
  readonly expiresIn: number
  readonly scopes?: ReadonlyArray<string>
  readonly resource?: string
  readonly accessToken?: string
  readonly refreshToken?: string | undefined
}) =>
  Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const now = yield* DateTime.now
    const refreshToken = "refreshToken" in options ? options.refreshToken : "rt-seed"
    const record = yield* TokenStore.newRecord({
      id: TokenStore.sessionIdOf({ provider, resource: options.resource, scopes: options.scopes }),
      provider,
      issuer: "https://auth.example",
      tokenEndpoint: "https://auth.example/token",
      clientId: providerSettings.clientId,
      scopes: options.scopes ?? providerScopes,
      resource: options.resource,
      tokenType: "Bearer",
      accessToken: Redacted.make(options.accessToken ?? "at-seed"),
      refreshToken: refreshToken === undefined ? undefined : Redacted.make(refreshToken),
      expiresAt: DateTime.add(now, { seconds: options.expiresIn })
    })
    yield* store.put(record)
    return record
  })
