/**
 * Login: how `Mcp` signs in to an MCP server and finds its sessions again.
 *
 * A login discovers the server, takes the configured provider's client or a
 * registered one (the stored registration while the server still knows it,
 * else a new RFC 7591 registration, under a lock so racing processes
 * register one client), runs the `Sessions` login with the server's resource
 * indicator (RFC 8707), and retries once past a client the server no longer
 * accepts. The binding of a server (provider name and resource) is
 * remembered from this process's logins, else looked up in the stored
 * sessions. Step-up is a login for more scopes, so it comes through here too.
 *
 * Built by `Mcp.make` from the parts it holds; only types come from `Mcp`, so
 * the two modules do not import each other at run time.
 *
 * @see https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization
 */
import { DateTime, Effect, Option, Ref } from "effect"
import * as Arr from "effect/Array"
import type { HttpClient } from "effect/http"
import type { Binding, ClientSource, LoginOptions, LoginResult, McpError, Reason } from "../Mcp.js"
import type * as RefreshLock from "../RefreshLock.js"
import * as SessionConfig from "../SessionConfig.js"
import * as Sessions from "../Sessions.js"
import type * as TokenStore from "../TokenStore.js"
import * as Discovery from "./Discovery.js"
import * as Registration from "./Registration.js"

/** The client name sent when registering, unless the caller gives one. */
export const defaultClientName = "magictunnel-session"

/** The provider name of an MCP server's sessions: `mcp-<host>[-<port>]`, within the provider name rules. */
export const providerNameOf = (serverUrl: string): string => {
  const url = URL.parse(serverUrl)
  const host = url === null ? "server" : url.host.toLowerCase()
  return `mcp-${host}`.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64)
}

const settingsOf = (fields: {
  readonly name: string
  readonly issuer: string
  readonly server: Discovery.ServerMetadata
  readonly clientId: string
  readonly clientSecret: SessionConfig.ProviderSettings["clientSecret"]
  readonly scopes: ReadonlyArray<string>
  readonly resource: string
  readonly redirectPort: number
}): SessionConfig.ProviderSettings => ({
  name: fields.name,
  issuer: Option.some(fields.issuer),
  // Explicit endpoints from our own discovery: an issuer whose metadata only the
  // OpenID path-insertion form serves still works with the OAuth client's discovery.
  authorizationEndpoint: Option.fromUndefinedOr(fields.server.authorization_endpoint),
  tokenEndpoint: Option.fromUndefinedOr(fields.server.token_endpoint),
  deviceAuthorizationEndpoint: Option.fromUndefinedOr(fields.server.device_authorization_endpoint),
  revocationEndpoint: Option.fromUndefinedOr(fields.server.revocation_endpoint),
  introspectionEndpoint: Option.fromUndefinedOr(fields.server.introspection_endpoint),
  userinfoEndpoint: Option.fromUndefinedOr(fields.server.userinfo_endpoint),
  clientId: fields.clientId,
  clientSecret: fields.clientSecret,
  scopes: fields.scopes,
  resource: Option.some(fields.resource),
  redirectPort: fields.redirectPort
})

/** Settings enough to select and refresh a stored session (refresh uses what the record remembers). */
export const lookupSettings = (binding: Binding): SessionConfig.ProviderSettings =>
  SessionConfig.providerSettings({ name: binding.provider, clientId: "", resource: Option.some(binding.resource) })

/** What logins are built from: the services `Mcp` holds and the operations of its own they share. */
export interface Parts {
  readonly sessions: Sessions.Shape
  readonly store: TokenStore.Shape
  readonly config: SessionConfig.Loaded
  readonly lock: RefreshLock.Shape
  readonly http: HttpClient.HttpClient
  readonly discover: (serverUrl: string) => Effect.Effect<Discovery.Discovered, McpError>
  readonly registration: (issuer: string) => Effect.Effect<Option.Option<Registration.Registration>, McpError>
  readonly saveRegistration: (registration: Registration.Registration) => Effect.Effect<void, McpError>
  readonly failWith: (serverUrl: string) => (reason: Reason) => McpError
}

/** The logins of the service and the bindings they leave, over the service's parts. */
export const make = Effect.fnUntraced(function*(parts: Parts) {
  const { config, discover, failWith, lock, registration, saveRegistration, sessions, store } = parts
  const registrar = Registration.make(parts.http)
  const bindings = yield* Ref.make(new Map<string, Binding>())

  const storeFailure = (serverUrl: string) => (error: TokenStore.TokenStoreError) => failWith(serverUrl)({ _tag: "Store", error })
  const bindingKey = (serverUrl: string, provider: string) => `${provider}\u0000${serverUrl}`

  /**
   * A registration for the discovered server: the stored one while the server
   * still knows it (and it is not the one just `rejected`), else a new one.
   * Under the lock of the registration's id, so processes logging in to the
   * same server at once register one client: the later ones find it stored.
   */
  const clientFor = (
    found: Discovery.Discovered,
    options: LoginOptions,
    scopes: ReadonlyArray<string>,
    rejected: string | undefined
  ) => {
    const issuer = found.server.issuer
    const fail = failWith(found.serverUrl)
    const choose = Effect.gen(function*() {
      const stored = Option.filter(yield* registration(issuer), (r) => r.clientId !== rejected)
      if (Option.isSome(stored)) {
        const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
        const secretLive = Option.match(stored.value.secretExpiresAt, {
          onNone: () => true,
          onSome: (at) => DateTime.toEpochMillis(at) > now
        })
        if (secretLive && (yield* registrar.stillValid(stored.value))) {
          return { registration: stored.value, source: (rejected === undefined ? "reused" : "replaced") as ClientSource }
        }
        yield* Effect.logInfo(`the client registered with ${issuer} is no longer accepted: registering a new one`)
      }
      const endpoint = found.server.registration_endpoint
      if (endpoint === undefined) return yield* fail({ _tag: "NoClient", issuer })
      // Registered for every scope the resource offers, so a later step-up is not refused for the client.
      const registered = Arr.union(scopes, found.resource.scopes_supported ?? [])
      const fresh = yield* registrar.register(issuer, endpoint, {
        clientName: options.clientName ?? defaultClientName,
        scopes: registered
      })
        .pipe(Effect.mapError((error) => fail({ _tag: "Registration", error })))
      yield* saveRegistration(fresh).pipe(Effect.mapError((e) => fail(e.reason)))
      const replaced = rejected !== undefined || Option.isSome(stored)
      return { registration: fresh, source: (replaced ? "replaced" : "registered") as ClientSource }
    })
    return lock.withLock(Registration.idOf(issuer), choose).pipe(
      Effect.catchTag("RefreshLockError", (error) =>
        fail({
          _tag: "Sessions",
          error: new Sessions.SessionsError({
            operation: "login",
            provider: options.provider ?? providerNameOf(found.canonical),
            reason: { _tag: "Lock", error }
          })
        }))
    )
  }

  const isInvalidClient = (e: Sessions.SessionsError) =>
    e.reason._tag === "OAuth" && e.reason.error.reason._tag === "InvalidClient"

  /** Discovers, registers when needed, logs in for `explicitScopes` (else the server's) and remembers the binding. */
  const login = (serverUrl: string, options: LoginOptions, explicitScopes: ReadonlyArray<string> | undefined) =>
    Effect.gen(function*() {
      const fail = failWith(serverUrl)
      const found = yield* discover(serverUrl)
      const issuer = found.server.issuer
      const name = options.provider ?? providerNameOf(found.canonical)
      const configured = config.providers.get(name)
      const scopes = explicitScopes ?? Option.getOrUndefined(Option.flatMap(found.challenge, (c) => c.scopes)) ??
        found.resource.scopes_supported ?? []
      const resource = found.resource.resource
      // The client of the first attempt, when the server refuses it: the retry registers past it.
      let used: string | undefined
      const attempt = (rejected: string | undefined) =>
        Effect.gen(function*() {
          const client = configured === undefined
            ? yield* clientFor(found, options, scopes, rejected)
            : undefined
          used = client?.registration.clientId
          const settings = settingsOf({
            name,
            issuer,
            server: found.server,
            clientId: client?.registration.clientId ?? configured?.clientId ?? "",
            clientSecret: client === undefined ? configured?.clientSecret ?? Option.none() : client.registration.clientSecret,
            scopes,
            resource,
            redirectPort: configured?.redirectPort ?? 0
          })
          const session = yield* sessions.login(name, {
            settings,
            scopes,
            resource,
            openBrowser: options.openBrowser,
            onEvent: options.onEvent,
            timeout: options.timeout
          })
          return { session, client: client?.source ?? ("configured" as ClientSource) }
        })
      const done = yield* attempt(undefined).pipe(
        // RFC 7591 registrations can be deleted by the server: one new registration, one more try.
        Effect.catchTag("SessionsError", (e) =>
          configured === undefined && isInvalidClient(e)
            ? attempt(used ?? "")
            : Effect.fail(e)),
        Effect.mapError((e) => (e._tag === "SessionsError" ? fail({ _tag: "Sessions", error: e }) : e))
      )
      const binding: Binding = { serverUrl, provider: name, resource }
      yield* Ref.update(bindings, (m) => new Map(m).set(bindingKey(serverUrl, name), binding))
      yield* Effect.annotateCurrentSpan({ "mcp.issuer": issuer, "mcp.client": done.client })
      return { session: done.session, binding, issuer, client: done.client, scopes } satisfies LoginResult
    })

  /** The binding of a server: from this process's logins, else the stored sessions whose resource covers it. */
  const binding = (serverUrl: string, provider?: string) =>
    Effect.gen(function*() {
      const canonical = Option.getOrUndefined(Discovery.canonicalUri(serverUrl))
      if (canonical === undefined) return Option.none<Binding>()
      const name = provider ?? providerNameOf(canonical)
      const known = (yield* Ref.get(bindings)).get(bindingKey(serverUrl, name))
      if (known !== undefined) return Option.some(known)
      const listed = yield* store.list.pipe(Effect.mapError(storeFailure(serverUrl)))
      const candidates = listed
        .filter((m) => m.provider === name && m.state !== "corrupted" && Option.isSome(m.resource))
        .map((m) => Option.getOrThrow(m.resource))
        .filter((r) => Discovery.covers(r, canonical))
        // The most specific resource wins (the server's own URI over its origin).
        .toSorted((a, b) => b.length - a.length)
      const resource = candidates[0]
      if (resource === undefined) return Option.none<Binding>()
      const found: Binding = { serverUrl, provider: name, resource }
      yield* Ref.update(bindings, (m) => new Map(m).set(bindingKey(serverUrl, name), found))
      return Option.some(found)
    })

  return { login, binding }
})
