/**
 * A real OAuth 2.1 / OpenID Connect authorization server for tests:
 * `oidc-provider` in-process on 127.0.0.1 with a random port.
 *
 * One public native client (RFC 8252: loopback redirect on any port, PKCE
 * required, no client secret) and one confidential client, with refresh
 * token rotation (RFC 9700 §4.14), the device grant (RFC 8628), revocation
 * (RFC 7009), introspection (RFC 7662), userinfo and resource indicators
 * (RFC 8707, one opaque-token resource server).
 *
 * Interactions approve themselves: {@link OidcServer.approve} follows the
 * redirects of an authorization URL with a cookie jar and ends with the GET
 * to the loopback redirect URI, so a test logs in without a browser.
 * Counters record what the token endpoint saw (refresh successes, refresh
 * `invalid_grant`s, refresh token reuse).
 *
 * Gotchas kept in mind (see REFERENCE.md §4): `issueRefreshToken` is
 * overridden (the default needs `offline_access` plus `prompt=consent`);
 * reusing a rotated refresh token revokes the whole grant; `clockTolerance`
 * is 15 s on the server side.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Option } from "effect"
import Provider, { errors, type InteractionDetails, type ProviderError } from "oidc-provider"
import { type ProviderSettings, providerSettings } from "../../src/SessionConfig.js"

/** What a test may tune. Times are seconds. */
export interface Options {
  /** Lifetime of access tokens (default 30). */
  readonly accessTokenTtl?: number
  /** Lifetime of refresh tokens (default 3600). */
  readonly refreshTokenTtl?: number
  /** `interval` added to device authorization responses (the server sends none by itself). */
  readonly deviceInterval?: number
  /** Lifetime of device codes (default 600). */
  readonly deviceCodeTtl?: number
  /**
   * Keep every record until it expires (default false: oidc-provider's own
   * in-memory store, an LRU of 1000 entries, which evicts grants once a few
   * hundred sessions have been refreshed a few times; benchmarks need this).
   */
  readonly unboundedStorage?: boolean
}

/** What the token endpoint saw since the server started. */
export interface Counters {
  readonly refreshSucceeded: number
  readonly refreshInvalidGrant: number
  /** A rotated refresh token presented again (the grant is then revoked). */
  readonly refreshReuseDetected: number
  readonly grantsRevoked: number
  readonly deviceAuthorizations: number
}

/** A running test authorization server. */
export interface OidcServer {
  readonly issuer: string
  readonly port: number
  /** The public native client. */
  readonly clientId: string
  /** The confidential client (`client_secret_post`) and its secret. */
  readonly confidentialClientId: string
  readonly confidentialClientSecret: string
  /** The resource server's indicator (RFC 8707) and the scopes it knows. */
  readonly resource: string
  readonly resourceScopes: ReadonlyArray<string>
  /** The account every interaction logs in as. */
  readonly accountId: string
  /** Provider settings for the public client, discovered through the issuer. */
  readonly provider: ProviderSettings
  /**
   * Completes an authorization request the way a browser would (login and
   * consent approved, or denied with `deny`), ending with the GET to the
   * loopback redirect URI. Resolves with that final response's status.
   */
  readonly approve: (authorizationUrl: string, options?: { readonly deny?: boolean }) => Promise<number>
  /** Enters `userCode` on the verification page and approves (or denies) the device. */
  readonly approveDevice: (userCode: string, options?: { readonly deny?: boolean }) => Promise<void>
  readonly counters: () => Counters
  /** Authorization codes, PKCE verifiers and device codes clients presented at the token endpoint. */
  readonly protocolSecrets: () => ReadonlyArray<string>
  readonly close: () => Promise<void>
}

const accountId = "user-1"
const publicClientId = "mtsession-test"
const confidentialClientId = "mtsession-confidential"
const resourceScopes = ["api:read", "api:write"] as const
const denyCookie = "test_deny"

const ownTokensOnly = (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) =>
  token.clientId === client.clientId

/** Starts a server (plain async, for non-Effect callers). */
export const start = async (options: Options = {}): Promise<OidcServer> => {
  const server = Http.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const issuer = `http://127.0.0.1:${port}`
  const resource = `${issuer}/api`
  const confidentialClientSecret = Crypto.randomBytes(24).toString("base64url")
  const accessTokenTtl = options.accessTokenTtl ?? 30

  const signingKey = {
    ...Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }),
    kid: "test-key",
    use: "sig",
    alg: "RS256"
  }

  const provider = new Provider(issuer, {
    ...(options.unboundedStorage === true ? { adapter: unboundedAdapter() } : {}),
    clients: [
      {
        client_id: publicClientId,
        token_endpoint_auth_method: "none",
        application_type: "native",
        redirect_uris: ["http://127.0.0.1/callback"],
        grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        response_types: ["code"]
      },
      {
        client_id: confidentialClientId,
        client_secret: confidentialClientSecret,
        token_endpoint_auth_method: "client_secret_post",
        application_type: "native",
        redirect_uris: ["http://127.0.0.1/callback"],
        grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        response_types: ["code"]
      }
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [Crypto.randomBytes(32).toString("base64url")] },
    scopes: ["openid", "offline_access", "email"],
    claims: { openid: ["sub"], email: ["email", "email_verified"] },
    findAccount: (_ctx: unknown, sub: string) => ({
      accountId: sub,
      claims: () => ({ sub, email: `${sub}@example.test`, email_verified: true })
    }),
    pkce: { required: () => true },
    rotateRefreshToken: true,
    // Always issue a refresh token: the default wants `offline_access` and `prompt=consent`.
    issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed: (g: string) => boolean }) =>
      client.grantTypeAllowed("refresh_token"),
    ttl: {
      AccessToken: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) =>
        token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
      RefreshToken: () => options.refreshTokenTtl ?? 3600,
      DeviceCode: () => options.deviceCodeTtl ?? 600,
      AuthorizationCode: () => 60,
      Grant: () => 24 * 3600,
      Session: () => 24 * 3600,
      Interaction: () => 600,
      IdToken: () => 3600
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx: { body: string }, form: string, _out: unknown, error?: Error) => {
          const problem = error === undefined
            ? ""
            : `<p>${error.name === "AbortedError" ? "The sign-in request was interrupted" : "error"}</p>`
          ctx.body = `<!DOCTYPE html><html><body>${problem}${form}</body></html>`
        },
        successSource: (ctx: { body: string }) => {
          ctx.body = "<!DOCTYPE html><html><body>Sign-in Success</body></html>"
        }
      },
      // A client may revoke and introspect its own tokens only.
      revocation: { enabled: true, allowedPolicy: ownTokensOnly },
      introspection: { enabled: true, allowedPolicy: ownTokensOnly },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string) => {
          if (indicator !== resource) throw new errors.InvalidTarget()
          return {
            scope: resourceScopes.join(" "),
            audience: resource,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: "opaque"
          }
        }
      }
    }
  })

  const counts = {
    refreshSucceeded: 0,
    refreshInvalidGrant: 0,
    refreshReuseDetected: 0,
    grantsRevoked: 0,
    deviceAuthorizations: 0
  }
  // Protocol secrets the clients sent (authorization codes, PKCE verifiers, device codes),
  // so leak tests can look for them too.
  const protocolSecrets = new Set<string>()
  provider.on("grant.success", (ctx) => {
    if (ctx.oidc.params?.["grant_type"] === "refresh_token") counts.refreshSucceeded++
    for (const k of ["code", "code_verifier", "device_code"]) {
      const v = ctx.oidc.params?.[k]
      if (typeof v === "string" && v.length > 0) protocolSecrets.add(v)
    }
  })
  provider.on("grant.error", (ctx, error: ProviderError) => {
    if (ctx.oidc.params?.["grant_type"] !== "refresh_token" || error.error !== "invalid_grant") return
    counts.refreshInvalidGrant++
    if (error.error_detail === "refresh token already used") counts.refreshReuseDetected++
  })
  provider.on("grant.revoked", () => {
    counts.grantsRevoked++
  })
  provider.on("device_authorization.success", (_ctx, body: Record<string, unknown>) => {
    counts.deviceAuthorizations++
    // oidc-provider sends no `interval` (clients then wait 5 s); tests may ask for a shorter one.
    if (options.deviceInterval !== undefined) body["interval"] = options.deviceInterval
  })

  const handle = provider.callback()
  server.on("request", (req, res) => {
    if (req.url?.startsWith("/interaction/")) {
      interact(provider, req, res).catch((error: unknown) => {
        res.statusCode = 500
        res.end(`interaction failed: ${String(error)}`)
      })
      return
    }
    handle(req, res)
  })

  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })

  return {
    issuer,
    port,
    clientId: publicClientId,
    confidentialClientId,
    confidentialClientSecret,
    resource,
    resourceScopes,
    accountId,
    provider: providerSettings({
      name: "test",
      issuer: Option.some(issuer),
      clientId: publicClientId,
      scopes: ["openid", "email"]
    }),
    approve: (url, approveOptions) => approve(issuer, url, approveOptions?.deny === true),
    approveDevice: (userCode, approveOptions) => approveDevice(issuer, userCode, approveOptions?.deny === true),
    counters: () => ({ ...counts }),
    protocolSecrets: () => [...protocolSecrets],
    close
  }
}

type Payload = Record<string, unknown>

/**
 * oidc-provider's adapter contract over plain maps with no bound: records
 * live until they expire (what the default store does, minus its LRU
 * eviction), with the indexes the provider looks records up by (session
 * uid, device user code, the members of a grant for revocation).
 */
const unboundedAdapter = () => {
  const records = new Map<string, { readonly payload: Payload; readonly expiresAt: number }>()
  const byUid = new Map<string, string>()
  const byUserCode = new Map<string, string>()
  const byGrant = new Map<string, Set<string>>()
  const live = (key: string): Payload | undefined => {
    const record = records.get(key)
    if (record === undefined) return undefined
    if (record.expiresAt <= Date.now()) {
      records.delete(key)
      return undefined
    }
    return record.payload
  }
  return class UnboundedAdapter {
    constructor(readonly model: string) {}
    key(id: string) {
      return `${this.model}:${id}`
    }
    async upsert(id: string, payload: Payload, expiresIn?: number) {
      const key = this.key(id)
      records.set(key, { payload, expiresAt: typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : Infinity })
      if (this.model === "Session" && typeof payload["uid"] === "string") byUid.set(payload["uid"], id)
      if (typeof payload["userCode"] === "string") byUserCode.set(payload["userCode"], id)
      const grantId = payload["grantId"]
      if (typeof grantId === "string") {
        const members = byGrant.get(grantId) ?? new Set<string>()
        members.add(key)
        byGrant.set(grantId, members)
      }
    }
    async find(id: string) {
      return live(this.key(id))
    }
    async findByUid(uid: string) {
      const id = byUid.get(uid)
      return id === undefined ? undefined : live(this.key(id))
    }
    async findByUserCode(userCode: string) {
      const id = byUserCode.get(userCode)
      return id === undefined ? undefined : live(this.key(id))
    }
    async consume(id: string) {
      const payload = live(this.key(id))
      if (payload !== undefined) payload["consumed"] = Math.floor(Date.now() / 1000)
    }
    async destroy(id: string) {
      records.delete(this.key(id))
    }
    async revokeByGrantId(grantId: string) {
      for (const key of byGrant.get(grantId) ?? []) records.delete(key)
      byGrant.delete(grantId)
    }
  }
}

/** The server as a scoped resource: closed when the scope closes. */
export const acquire = (options: Options = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => start(options)),
    (server) => Effect.promise(() => server.close())
  )

/** Auto-approves one interaction step: login as {@link accountId}, then consent to whatever was asked. */
export const interact = async (provider: Provider, req: Http.IncomingMessage, res: Http.ServerResponse) => {
  const details = await provider.interactionDetails(req, res)
  if (cookiesOf(req.headers.cookie).get(denyCookie) === "1") {
    await provider.interactionFinished(req, res, {
      error: "access_denied",
      error_description: "the test denied the request"
    }, { mergeWithLastSubmission: false })
    return
  }
  if (details.prompt.name === "login") {
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false })
    return
  }
  const grantId = await consent(provider, details)
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
}

const consent = async (provider: Provider, details: InteractionDetails): Promise<string> => {
  const existing = details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId)
  const grant = existing ?? new provider.Grant({
    accountId: details.session?.accountId ?? accountId,
    clientId: String(details.params["client_id"])
  })
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details
  if (missingOIDCScope !== undefined) grant.addOIDCScope(missingOIDCScope.join(" "))
  if (missingOIDCClaims !== undefined) grant.addOIDCClaims(missingOIDCClaims)
  for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(" "))
  }
  return grant.save()
}

const cookiesOf = (header: string | undefined): Map<string, string> =>
  new Map(
    (header ?? "").split(";").map((part) => part.trim()).filter((part) => part.includes("=")).map((part) => {
      const i = part.indexOf("=")
      return [part.slice(0, i), part.slice(i + 1)] as const
    })
  )

/** A browser's cookie jar, reduced to what the provider's flows need. */
class Jar {
  readonly cookies = new Map<string, string>()
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ")
  }
  store(response: globalThis.Response): void {
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(";")[0] ?? ""
      const i = pair.indexOf("=")
      if (i > 0) this.cookies.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim())
    }
  }
}

const maxRedirects = 20

/**
 * Follows redirects from `start` within the issuer, sending the jar's cookies,
 * until a response that is not a redirect, or a redirect leaving the issuer
 * (the loopback redirect URI), which is returned as a URL.
 */
const follow = async (
  issuer: string,
  jar: Jar,
  start: globalThis.Response,
  from: string
): Promise<{ readonly final: globalThis.Response; readonly leaving: URL | undefined }> => {
  let response = start
  let url = from
  for (let i = 0; i < maxRedirects; i++) {
    jar.store(response)
    const location = response.headers.get("location")
    if (response.status < 300 || response.status >= 400 || location === null) {
      return { final: response, leaving: undefined }
    }
    const next = new URL(location, url)
    if (next.origin !== new URL(issuer).origin) return { final: response, leaving: next }
    url = next.href
    response = await fetch(url, { redirect: "manual", headers: { cookie: jar.header() } })
  }
  throw new Error(`more than ${maxRedirects} redirects`)
}

export const approve = async (issuer: string, authorizationUrl: string, deny: boolean): Promise<number> => {
  const jar = new Jar()
  if (deny) jar.cookies.set(denyCookie, "1")
  const first = await fetch(authorizationUrl, { redirect: "manual", headers: { cookie: jar.header() } })
  const { final, leaving } = await follow(issuer, jar, first, authorizationUrl)
  if (leaving === undefined) {
    throw new Error(`authorization did not redirect to the client (status ${final.status}): ${await final.text()}`)
  }
  const callback = await fetch(leaving, { redirect: "manual" })
  await callback.text()
  return callback.status
}

const approveDevice = async (issuer: string, userCode: string, deny: boolean): Promise<void> => {
  const jar = new Jar()
  if (deny) jar.cookies.set(denyCookie, "1")
  const form = await fetch(`${issuer}/device`, { redirect: "manual" })
  jar.store(form)
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(await form.text())?.[1]
  if (xsrf === undefined) throw new Error("no xsrf token on the device verification page")
  const submitted = await fetch(`${issuer}/device`, {
    method: "POST",
    redirect: "manual",
    headers: { cookie: jar.header(), "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ xsrf, user_code: userCode, confirm: "yes" }).toString()
  })
  const { final } = await follow(issuer, jar, submitted, `${issuer}/device`)
  const page = await final.text()
  const expected = deny ? "interrupted" : "Sign-in Success"
  if (!page.includes(expected)) {
    throw new Error(`device verification did not end as expected (status ${final.status})`)
  }
}
