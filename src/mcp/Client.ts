/**
 * The Promise-based entry point, for programs that do not use Effect (most
 * MCP clients and gateways): one object per MCP server with
 * `getAccessToken`, `login`, an authorized `fetch` and a drop-in
 * `authProvider` for `@modelcontextprotocol/sdk`; `transportOptions` is
 * both, ready to spread into a `StreamableHTTPClientTransport` or
 * `SSEClientTransport`.
 *
 * The Effect services run on a `ManagedRuntime` the caller owns (from
 * {@link fromLayer} or their own), so every server of a gateway shares one
 * store, one refresh lock and one in-process token cache. Running Effects
 * here is the point of this module: it is the boundary to Promise code.
 *
 * @see docs/mcp.md
 */
import { DateTime, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js"
import * as Main from "../../layers/Main.js"
import * as Mcp from "../Mcp.js"
import * as AuthorizedFetch from "./AuthorizedFetch.js"
import { SessionsOAuthProvider } from "./SdkProvider.js"

/** How to ask the user to sign in, when the program may. */
export interface Interactive {
  /** Shows the authorization URL (always called first, so a failed browser still leaves a way in). */
  readonly onAuthorizationUrl: (url: string) => void | Promise<void>
  /** Opens a browser on the URL; failures are ignored. */
  readonly openBrowser?: ((url: string) => void | Promise<void>) | undefined
  /** How long to wait for the browser's redirect (default 300 s). */
  readonly timeoutSeconds?: number | undefined
}

/** One MCP server. */
export interface Options {
  readonly serverUrl: string
  /** Provider name of its sessions (default `mcp-<host>`); a configured provider's client is used as is. */
  readonly provider?: string | undefined
  /** Scopes of the first login (default: what the server's challenge asks for). */
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly clientName?: string | undefined
  /** Without it, a missing or dead session fails with the `mtsession login --mcp` command to run. */
  readonly interactive?: Interactive | undefined
  /** The fetch under the authorized one (default the global `fetch`). */
  readonly fetch?: typeof globalThis.fetch | undefined
}

/** What a program uses for one server. */
export interface McpAuth {
  readonly serverUrl: string
  /** A token valid for at least a minute. */
  readonly getAccessToken: (scopes?: ReadonlyArray<string>) => Promise<string>
  /** Signs in now (interactive options required). */
  readonly login: (scopes?: ReadonlyArray<string>) => Promise<Mcp.LoginResult>
  /** `fetch` with the bearer token, one refresh-and-retry on 401, step-up on 403 `insufficient_scope` (interactive only). */
  readonly fetch: typeof globalThis.fetch
  readonly authProvider: SessionsOAuthProvider
  /** `{ authProvider, fetch }` for the SDK's HTTP transports. */
  readonly transportOptions: { readonly authProvider: SessionsOAuthProvider; readonly fetch: typeof globalThis.fetch }
}

/** Anything that runs Effects needing `Mcp` (a `ManagedRuntime`). */
export interface Runner {
  readonly runPromise: <A, E>(effect: Effect.Effect<A, E, Mcp.Mcp>) => Promise<A>
}

/** The client for one server on `runner`. */
export const make = (runner: Runner, options: Options): McpAuth => {
  const { serverUrl } = options
  const interactive = options.interactive
  const clientName = options.clientName ?? Mcp.defaultClientName

  const loginOptions = (i: Interactive): Mcp.LoginOptions => ({
    provider: options.provider,
    clientName,
    onEvent: (event) =>
      event._tag === "AuthorizationUrl" ? Effect.promise(async () => i.onAuthorizationUrl(event.url)) : Effect.void,
    openBrowser: i.openBrowser === undefined
      ? undefined
      : (url) => Effect.tryPromise(async () => i.openBrowser?.(url)),
    timeout: `${i.timeoutSeconds ?? 300} seconds`
  })

  const withMcp = <A, E>(f: (mcp: Mcp.Shape) => Effect.Effect<A, E>) => runner.runPromise(Effect.flatMap(Mcp.Mcp, f))

  // One interactive login at a time: concurrent requests wait for the same one.
  let pendingLogin: Promise<Mcp.LoginResult> | undefined
  const login = (scopes?: ReadonlyArray<string>, current?: ReadonlyArray<string>): Promise<Mcp.LoginResult> => {
    if (interactive === undefined) {
      return Promise.reject(new Mcp.McpError({ serverUrl, reason: { _tag: "LoginRequired", detail: "no interactive login allowed" } }))
    }
    if (pendingLogin !== undefined) return pendingLogin
    const started = withMcp((mcp) =>
      current === undefined
        ? mcp.login(serverUrl, { ...loginOptions(interactive), scopes: scopes ?? options.scopes })
        : mcp.stepUp(serverUrl, scopes ?? [], { ...loginOptions(interactive), current })
    ).finally(() => {
      pendingLogin = undefined
    })
    pendingLogin = started
    return started
  }

  const loginRequired = (e: unknown) => e instanceof Mcp.McpError && e.reason._tag === "LoginRequired"

  const tokenOrLogin = async (scopes: ReadonlyArray<string> | undefined): Promise<string> => {
    const get = () =>
      withMcp((mcp) => mcp.getAccessToken(serverUrl, { provider: options.provider, scopes })).then(Redacted.value)
    try {
      return await get()
    } catch (e) {
      if (!loginRequired(e) || interactive === undefined) throw e
      await login(scopes)
      return get()
    }
  }

  const session: AuthorizedFetch.Session = {
    token: tokenOrLogin,
    refresh: async (scopes) => {
      const outcome = await withMcp((mcp) => mcp.refresh(serverUrl, { provider: options.provider, scopes }))
      if (outcome._tag === "Refreshed" || outcome._tag === "Reused" || outcome._tag === "Fresh") return
      // The grant is dead: a new login when allowed, else the 401 goes back to the caller.
      if (outcome._tag === "NeedsReauth" && interactive !== undefined) {
        await login(scopes)
        return
      }
      throw new Error(`refresh did not produce a new token (${outcome._tag})`)
    },
    stepUp: interactive === undefined
      ? undefined
      : async (required, current) => (await login(required, current ?? [])).scopes
  }
  const authorized = AuthorizedFetch.make(session, options.fetch)

  const discoveredIssuer = () => withMcp((mcp) => Effect.map(mcp.discover(serverUrl), (d) => d.server.issuer))

  const authProvider = new SessionsOAuthProvider({
    serverUrl,
    clientName,
    token: () =>
      tokenOrLogin(authorized.scopes()).catch((e: unknown) => {
        if (loginRequired(e)) return undefined
        throw e
      }),
    login: interactive === undefined ? undefined : async (scopes) => {
      await login(scopes)
    },
    clientInformation: async () => {
      const issuer = await discoveredIssuer()
      const found = await withMcp((mcp) => mcp.registration(issuer))
      return Option.match(found, {
        onNone: () => undefined,
        onSome: (r): OAuthClientInformationMixed => ({
          client_id: r.clientId,
          ...Option.match(r.clientSecret, { onNone: () => ({}), onSome: (s) => ({ client_secret: Redacted.value(s) }) }),
          issuer: r.issuer
        })
      })
    },
    saveClientInformation: async (information) => {
      const issuer = typeof information.issuer === "string" ? information.issuer : await discoveredIssuer()
      await withMcp((mcp) =>
        Effect.flatMap(DateTime.now, (now) =>
          mcp.saveRegistration({
            issuer,
            clientId: information.client_id,
            clientSecret: Option.map(Option.fromUndefinedOr(information.client_secret), Redacted.make),
            secretExpiresAt: Option.none(),
            registrationAccessToken: Option.none(),
            registrationClientUri: Option.none(),
            tokenEndpointAuthMethod: "token_endpoint_auth_method" in information
              ? information.token_endpoint_auth_method ?? "none"
              : "none",
            createdAt: now
          }))
      )
    },
    forgetClient: async () => {
      const issuer = await discoveredIssuer()
      await withMcp((mcp) => mcp.forgetRegistration(issuer))
    }
  })

  return {
    serverUrl,
    getAccessToken: (scopes) => tokenOrLogin(scopes ?? authorized.scopes()),
    login: (scopes) => login(scopes),
    fetch: authorized.fetch,
    authProvider,
    transportOptions: { authProvider, fetch: authorized.fetch }
  }
}

/** A runtime over `layer` (which must provide `Mcp`), and a way to close it. */
export const fromLayer = <E>(layer: Layer.Layer<Mcp.Mcp, E>) => {
  const runtime = ManagedRuntime.make(layer)
  return {
    /** The client for one server on this runtime. */
    client: (options: Options): McpAuth => make(runtime, options),
    /** Closes the runtime: background work stops, the store and lock are released. */
    close: (): Promise<void> => runtime.dispose()
  }
}

/** The MCP service over a process's usual composition (configuration file, environment, selected store). */
export const layerFromConfig = (options?: { readonly configPath?: string | undefined; readonly principal?: string | undefined }) =>
  Mcp.layer.pipe(Layer.provide(Layer.merge(FetchHttpClient.layer, Main.layerSessions(options ?? {}))))

/** {@link fromLayer} over {@link layerFromConfig}: what most programs call. */
export const fromConfig = (options?: { readonly configPath?: string | undefined; readonly principal?: string | undefined }) =>
  fromLayer(layerFromConfig(options))
