/**
 * Mcp: sessions for remote MCP servers. Point it at a server URL and it
 * does the rest: the unauthenticated request and its 401 challenge, the
 * protected resource metadata (RFC 9728), the authorization server metadata
 * (RFC 8414, then OpenID discovery), a dynamically registered client
 * (RFC 7591) when none is configured, then the `Sessions` login with PKCE
 * and the server's resource indicator (RFC 8707). From then on the session
 * is an ordinary one: persisted, recovered at start-up, refreshed once per
 * grant across processes.
 *
 * Sessions of an MCP server are stored under a provider name derived from
 * the server (`mcp-<host>[-<port>]`, {@link providerNameOf}) unless the
 * caller names one; when that name is a configured provider, its client is
 * used and nothing is registered. Each session records the issuer, the
 * client id and the resource, so a refresh needs neither discovery nor the
 * configuration.
 *
 * Step-up (RFC 6750 §3.1 `insufficient_scope`): {@link Shape.stepUp} signs
 * in again for the union of the current scopes and the ones the server
 * asked for; that is a new session next to the existing one (whose id
 * names its scopes), so the narrower session keeps serving the requests it
 * covers.
 *
 * @see docs/mcp.md
 * @see https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization
 */
import { Context, Data, Effect, Layer, Option } from "effect"
import * as Arr from "effect/Array"
import type * as Redacted from "effect/Redacted"
import { HttpClient } from "effect/http"
import * as SessionMatch from "./internal/SessionMatch.js"
import * as Discovery from "./mcp/Discovery.js"
import * as Login from "./mcp/Login.js"
import * as Registration from "./mcp/Registration.js"
import * as RefreshLock from "./RefreshLock.js"
import * as SessionConfig from "./SessionConfig.js"
import * as Sessions from "./Sessions.js"
import * as TokenStore from "./TokenStore.js"

export { DiscoveryError } from "./mcp/Discovery.js"
export type { Discovered } from "./mcp/Discovery.js"
export { RegistrationError } from "./mcp/Registration.js"
export type { Registration as ClientRegistration } from "./mcp/Registration.js"
export { defaultClientName, providerNameOf } from "./mcp/Login.js"

/** How a login reaches the user and what it asks for. */
export interface LoginOptions {
  /**
   * The provider name the sessions are stored under (default {@link providerNameOf}).
   * When it names a configured provider, that provider's client is used and no client is registered.
   */
  readonly provider?: string | undefined
  /** Scopes to ask for; default: the challenge's `scope`, else the resource's `scopes_supported`, else none. */
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly clientName?: string | undefined
  readonly openBrowser?: ((url: string) => Effect.Effect<void, unknown>) | undefined
  readonly onEvent: (event: Sessions.LoginEvent) => Effect.Effect<void>
  readonly timeout?: Sessions.LoginOptions["timeout"]
}

/** Where the client of a login came from. */
export type ClientSource = "configured" | "reused" | "registered" | "replaced"

/** How a server's sessions are found again. */
export interface Binding {
  readonly serverUrl: string
  readonly provider: string
  /** The RFC 8707 resource indicator the sessions are bound to (the metadata's `resource`). */
  readonly resource: string
}

/** A completed login. */
export interface LoginResult {
  readonly session: TokenStore.SessionMetadata
  readonly binding: Binding
  readonly issuer: string
  readonly client: ClientSource
  /** The scopes asked for. */
  readonly scopes: ReadonlyArray<string>
}

/** What a token is asked for. */
export interface TokenRequest {
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly minTtl?: Sessions.TokenRequest["minTtl"]
  readonly provider?: string | undefined
}

/** Why an MCP operation failed. */
export type Reason =
  | { readonly _tag: "Discovery"; readonly error: Discovery.DiscoveryError }
  | { readonly _tag: "Registration"; readonly error: Registration.RegistrationError }
  /** No configured client and the server offers no dynamic registration. */
  | { readonly _tag: "NoClient"; readonly issuer: string }
  /** No usable session for the server: log in (again). */
  | { readonly _tag: "LoginRequired"; readonly detail: string }
  | { readonly _tag: "Sessions"; readonly error: Sessions.SessionsError }
  | { readonly _tag: "Store"; readonly error: TokenStore.TokenStoreError }

/** A failed MCP operation; the message names the server and never contains a secret. */
export class McpError extends Data.TaggedError("McpError")<{
  readonly serverUrl: string
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    switch (r._tag) {
      case "NoClient":
        return `${this.serverUrl}: no client is configured and ${r.issuer} offers no dynamic client registration; ` +
          "configure a provider with its client_id and pass its name"
      case "LoginRequired":
        return `${this.serverUrl}: ${r.detail}; run \`mtsession login --mcp ${this.serverUrl}\``
      default: {
        // Discovery errors already name the URL they were about; say the server's once.
        const inner = r.error.message
        return inner.startsWith(`${this.serverUrl}: `) ? inner : `${this.serverUrl}: ${inner}`
      }
    }
  }
}

/** The operations. */
export interface Shape {
  /** Discovery only: challenge, resource metadata, authorization server metadata. */
  readonly discover: (serverUrl: string) => Effect.Effect<Discovery.Discovered, McpError>
  /** Discovers, registers when needed, logs in and stores the session. */
  readonly login: (serverUrl: string, options: LoginOptions) => Effect.Effect<LoginResult, McpError>
  /** A new authorization for the union of the current scopes and `scopes`; the existing session is kept. */
  readonly stepUp: (
    serverUrl: string,
    scopes: ReadonlyArray<string>,
    options: LoginOptions & { readonly current?: ReadonlyArray<string> | undefined }
  ) => Effect.Effect<LoginResult, McpError>
  /** A token for the server, refreshed (once per grant) when needed. */
  readonly getAccessToken: (serverUrl: string, request?: TokenRequest) => Effect.Effect<Redacted.Redacted<string>, McpError>
  /** Refreshes the session serving `request` now, even if fresh (after the server refused its token). */
  readonly refresh: (serverUrl: string, request?: TokenRequest) => Effect.Effect<Sessions.RefreshOutcome, McpError>
  /** The stored registration with `issuer`, if any. */
  readonly registration: (issuer: string) => Effect.Effect<Option.Option<Registration.Registration>, McpError>
  /** Stores a registration made elsewhere (the MCP SDK's own registration). */
  readonly saveRegistration: (registration: Registration.Registration) => Effect.Effect<void, McpError>
  /** Forgets the registration with `issuer` (the next login registers again). */
  readonly forgetRegistration: (issuer: string) => Effect.Effect<void, McpError>
  /** How the sessions of `serverUrl` are found, from a login in this process or the store. */
  readonly binding: (serverUrl: string, provider?: string) => Effect.Effect<Option.Option<Binding>, McpError>
}

/** Sessions for MCP servers. */
export class Mcp extends Context.Service<Mcp, Shape>()("magictunnel-session/Mcp") {}

/** Builds the service. */
export const make = Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  const store = yield* TokenStore.TokenStore
  const config = yield* SessionConfig.SessionConfig
  const http = yield* HttpClient.HttpClient
  const discovery = Discovery.make(http)
  const lock = yield* RefreshLock.RefreshLock

  const failWith = (serverUrl: string) => (reason: Reason) => new McpError({ serverUrl, reason })
  const storeFailure = (serverUrl: string) => (error: TokenStore.TokenStoreError) => failWith(serverUrl)({ _tag: "Store", error })

  const discover = Effect.fn("Mcp.discover")(function*(serverUrl: string) {
    return yield* discovery.discover(serverUrl).pipe(Effect.mapError((error) => failWith(serverUrl)({ _tag: "Discovery", error })))
  })

  const registration = (issuer: string) =>
    SessionMatch.readOption(store, Registration.idOf(issuer)).pipe(
      Effect.map(Option.flatMap(Registration.fromRecord)),
      Effect.mapError(storeFailure(issuer))
    )

  const saveRegistration = (r: Registration.Registration) =>
    Effect.flatMap(Registration.toRecord(r), store.put).pipe(Effect.mapError(storeFailure(r.issuer)))

  const forgetRegistration = (issuer: string) => store.remove(Registration.idOf(issuer)).pipe(Effect.mapError(storeFailure(issuer)))

  const { login: loginWith, binding } = yield* Login.make({
    sessions,
    store,
    config,
    lock,
    http,
    discover,
    registration,
    saveRegistration,
    failWith
  })

  const requireBinding = (serverUrl: string, provider?: string) =>
    Effect.flatMap(binding(serverUrl, provider), Option.match({
      onNone: () => Effect.fail(failWith(serverUrl)({ _tag: "LoginRequired", detail: "no session for this server" })),
      onSome: Effect.succeed
    }))

  const getAccessToken = (serverUrl: string, request?: TokenRequest) =>
    Effect.flatMap(requireBinding(serverUrl, request?.provider), (b) =>
      sessions.getAccessToken(b.provider, {
        resource: b.resource,
        scopes: request?.scopes,
        minTtl: request?.minTtl,
        settings: Login.lookupSettings(b)
      }).pipe(
        Effect.mapError((e) =>
          e._tag === "ReauthRequired"
            ? failWith(serverUrl)({ _tag: "LoginRequired", detail: e.detail })
            : failWith(serverUrl)({ _tag: "Sessions", error: e })
        )
      ))

  /** The record that serves `request` now. */
  const serving = (serverUrl: string, b: Binding, scopes: ReadonlyArray<string> | undefined) =>
    SessionMatch.select(store, { provider: b.provider, resource: b.resource, scopes }, b.resource).pipe(
      Effect.catchTags({
        NoSession: (e) => Effect.fail(failWith(serverUrl)({ _tag: "LoginRequired", detail: e.detail })),
        TokenStoreError: (e) => Effect.fail(storeFailure(serverUrl)(e))
      })
    )

  const refresh = Effect.fn("Mcp.refresh")(function*(serverUrl: string, request?: TokenRequest) {
    const b = yield* requireBinding(serverUrl, request?.provider)
    const record = yield* serving(serverUrl, b, request?.scopes)
    return yield* sessions.refresh(record.id, { force: true }).pipe(
      Effect.mapError((error) => failWith(serverUrl)({ _tag: "Sessions", error }))
    )
  })

  const stepUp = Effect.fn("Mcp.stepUp")(function*(
    serverUrl: string,
    scopes: ReadonlyArray<string>,
    options: LoginOptions & { readonly current?: ReadonlyArray<string> | undefined }
  ) {
    const b = yield* binding(serverUrl, options.provider)
    // The scopes the session serving requests holds now: the new grant must not lose any of them.
    const held = Option.isNone(b)
      ? []
      : yield* serving(serverUrl, b.value, options.current).pipe(
        Effect.map((r) => r.scopes),
        Effect.orElseSucceed((): ReadonlyArray<string> => [])
      )
    const union = Arr.union(Arr.union(held, options.current ?? []), scopes)
    yield* Effect.annotateCurrentSpan("mcp.scopes", union.join(" "))
    return yield* loginWith(serverUrl, options, union)
  })

  return Mcp.of({
    discover,
    login: Effect.fn("Mcp.login")(function*(serverUrl: string, options: LoginOptions) {
      return yield* loginWith(serverUrl, options, options.scopes)
    }),
    stepUp,
    getAccessToken,
    refresh,
    registration: (issuer) => registration(issuer),
    saveRegistration,
    forgetRegistration,
    binding
  })
})

/** The service over the sessions, store and configuration of the process, and an `HttpClient` for discovery. */
export const layer: Layer.Layer<
  Mcp,
  never,
  Sessions.Sessions | TokenStore.TokenStore | SessionConfig.SessionConfig | HttpClient.HttpClient | RefreshLock.RefreshLock
> = Layer.effect(Mcp, make)

/** Logs in to an MCP server (the service's `login`). */
export const loginMcp = (serverUrl: string, options: LoginOptions): Effect.Effect<LoginResult, McpError, Mcp> =>
  Effect.flatMap(Mcp, (m) => m.login(serverUrl, options))
