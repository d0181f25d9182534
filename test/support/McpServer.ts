/**
 * An MCP server behind OAuth for tests: its own `oidc-provider` on
 * 127.0.0.1 with open dynamic client registration (RFC 7591), registration
 * management (RFC 7592), resource indicators (RFC 8707) and PKCE; and a
 * resource server on another port that
 *
 * - serves its protected resource metadata (RFC 9728) at the path-inserted
 *   well-known URL,
 * - answers a request without a valid token with 401 and
 *   `WWW-Authenticate: Bearer resource_metadata="...", scope="mcp:read"`
 *   (`resource_metadata` can be left out to exercise the well-known fallback),
 * - answers a tool call whose scope the token lacks with 403
 *   `error="insufficient_scope"` and the scopes it needs,
 * - behind that, runs a real MCP server from `@modelcontextprotocol/sdk`
 *   (streamable HTTP, stateless) with two tools: `whoami` (needs `mcp:read`)
 *   and `write` (needs `mcp:write`).
 *
 * Tokens are checked in-process with `provider.AccessToken.find`: present,
 * unexpired, issued for this resource, carrying the scope.
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { McpServer as SdkServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js"
import Provider, { errors } from "oidc-provider"
import { approve, interact } from "./OidcServer.js"

/** What a test may tune. */
export interface Options {
  /** Send `resource_metadata` in the 401 challenge (default true); without it clients use the well-known URL. */
  readonly challengeMetadata?: boolean
  /** Lifetime of access tokens, seconds (default 300). */
  readonly accessTokenTtl?: number
}

/** What the servers saw. */
export interface Counters {
  readonly registrations: number
  readonly refreshes: number
  readonly unauthorized: number
  readonly insufficientScope: number
  readonly toolCalls: number
}

/** A running pair of servers. */
export interface McpTestServer {
  readonly issuer: string
  /** The MCP endpoint (also the resource indicator). */
  readonly url: string
  readonly resourceMetadataUrl: string
  readonly scopes: ReadonlyArray<string>
  readonly accountId: string
  /** Completes an authorization URL as a browser would (auto login and consent). */
  readonly approve: (authorizationUrl: string) => Promise<number>
  /** Deletes every registered client at the authorization server (as an operator cleaning up would). */
  readonly forgetClients: () => void
  /** The next `n` requests with a token get 401 `invalid_token` (a token revoked at the resource). */
  readonly rejectNextTokens: (n: number) => void
  readonly counters: () => Counters
  readonly close: () => Promise<void>
}

// The shared auto-approving interaction (OidcServer.interact) logs in as this account.
const accountId = "user-1"
const scopes = ["mcp:read", "mcp:write"] as const
const toolScopes: Record<string, string> = { whoami: "mcp:read", write: "mcp:write" }

const listen = async (server: Http.Server): Promise<number> => {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  return (server.address() as AddressInfo).port
}

/** An `oidc-provider` adapter over one Map per server, so a test can delete clients. */
const mapAdapter = () => {
  const entries = new Map<string, { payload: Record<string, unknown>; expiresAt: number | undefined }>()
  const live = (key: string) => {
    const e = entries.get(key)
    if (e === undefined) return undefined
    if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) {
      entries.delete(key)
      return undefined
    }
    return e.payload
  }
  class Adapter {
    constructor(readonly name: string) {}
    key(id: string) {
      return `${this.name}:${id}`
    }
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
      entries.set(this.key(id), { payload, expiresAt: expiresIn === undefined ? undefined : Date.now() + expiresIn * 1000 })
    }
    async find(id: string) {
      return live(this.key(id))
    }
    async findByUserCode(userCode: string) {
      return [...entries.keys()].map(live).find((p) => p?.["userCode"] === userCode)
    }
    async findByUid(uid: string) {
      return [...entries.keys()].filter((k) => k.startsWith(`${this.name}:`)).map(live).find((p) => p?.["uid"] === uid)
    }
    async consume(id: string) {
      const p = live(this.key(id))
      if (p !== undefined) p["consumed"] = Math.floor(Date.now() / 1000)
    }
    async destroy(id: string) {
      entries.delete(this.key(id))
    }
    async revokeByGrantId(grantId: string) {
      for (const [k, e] of entries) if (e.payload["grantId"] === grantId) entries.delete(k)
    }
  }
  const forgetClients = () => {
    for (const k of [...entries.keys()]) if (k.startsWith("Client:") || k.startsWith("RegistrationAccessToken:")) entries.delete(k)
  }
  return { Adapter, forgetClients }
}

interface FoundToken {
  readonly accountId: string
  readonly scope?: string
  readonly aud?: string | ReadonlyArray<string>
  readonly isExpired: boolean
}

/** Starts both servers. */
export const start = async (options: Options = {}): Promise<McpTestServer> => {
  const asServer = Http.createServer()
  const asPort = await listen(asServer)
  const rsServer = Http.createServer()
  const rsPort = await listen(rsServer)
  const issuer = `http://127.0.0.1:${asPort}`
  const url = `http://127.0.0.1:${rsPort}/mcp`
  const resourceMetadataUrl = `http://127.0.0.1:${rsPort}/.well-known/oauth-protected-resource/mcp`
  const { Adapter, forgetClients } = mapAdapter()
  const signingKey = {
    ...Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }),
    kid: "mcp-test-key",
    use: "sig",
    alg: "RS256"
  }
  const provider = new Provider(issuer, {
    adapter: Adapter,
    jwks: { keys: [signingKey] },
    cookies: { keys: [Crypto.randomBytes(32).toString("base64url")] },
    scopes: ["openid", "offline_access", ...scopes],
    findAccount: (_ctx: unknown, sub: string) => ({ accountId: sub, claims: () => ({ sub }) }),
    pkce: { required: () => true },
    rotateRefreshToken: true,
    issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed: (g: string) => boolean }) =>
      client.grantTypeAllowed("refresh_token"),
    ttl: {
      AccessToken: () => options.accessTokenTtl ?? 300,
      RefreshToken: () => 3600,
      AuthorizationCode: () => 60,
      Grant: () => 3600,
      Session: () => 3600,
      Interaction: () => 600,
      IdToken: () => 3600,
      RegistrationAccessToken: () => 24 * 3600
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: false },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string) => {
          if (indicator !== url) throw new errors.InvalidTarget()
          return { scope: scopes.join(" "), audience: url, accessTokenFormat: "opaque" }
        }
      }
    }
  })
  const counts = { registrations: 0, refreshes: 0, unauthorized: 0, insufficientScope: 0, toolCalls: 0 }
  provider.on("registration_create.success", () => {
    counts.registrations++
  })
  provider.on("grant.success", (ctx) => {
    if (ctx.oidc.params?.["grant_type"] === "refresh_token") counts.refreshes++
  })
  const handle = provider.callback()
  asServer.on("request", (req, res) => {
    if (req.url?.startsWith("/interaction/")) {
      interact(provider, req, res).catch((error: unknown) => {
        res.statusCode = 500
        res.end(`interaction failed: ${String(error)}`)
      })
      return
    }
    handle(req, res)
  })

  let rejectNext = 0
  const accessTokens = (provider as unknown as { AccessToken: { find: (v: string) => Promise<FoundToken | undefined> } })
    .AccessToken
  const challenge = (extra: string) =>
    [
      "Bearer realm=\"mcp\"",
      ...(options.challengeMetadata === false ? [] : [`resource_metadata="${resourceMetadataUrl}"`]),
      extra
    ].filter((p) => p.length > 0).join(", ")

  const readBody = (req: Http.IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
      req.on("error", reject)
    })

  const serve = async (req: Http.IncomingMessage, res: Http.ServerResponse) => {
    const path = new URL(req.url ?? "/", url).pathname
    if (path === "/.well-known/oauth-protected-resource/mcp") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({
        resource: url,
        authorization_servers: [issuer],
        scopes_supported: scopes,
        bearer_methods_supported: ["header"],
        resource_name: "test MCP server"
      }))
      return
    }
    if (path !== "/mcp") {
      res.writeHead(404).end()
      return
    }
    const text = req.method === "POST" ? await readBody(req) : ""
    const auth = req.headers.authorization ?? ""
    const value = auth.startsWith("Bearer ") ? auth.slice(7) : undefined
    const found = value === undefined ? undefined : await accessTokens.find(value)
    const valid = found !== undefined && !found.isExpired &&
      (found.aud === url || (Array.isArray(found.aud) && found.aud.includes(url)))
    if (!valid || rejectNext > 0) {
      if (valid) rejectNext--
      counts.unauthorized++
      res.writeHead(401, {
        "www-authenticate": challenge(value === undefined ? "scope=\"mcp:read\"" : "error=\"invalid_token\", scope=\"mcp:read\"")
      })
      res.end()
      return
    }
    const granted = (found.scope ?? "").split(" ")
    const body: unknown = text.length > 0 ? JSON.parse(text) : undefined
    const call = body as { method?: string; params?: { name?: string } } | undefined
    const needed = call?.method === "tools/call" ? toolScopes[call.params?.name ?? ""] : undefined
    if (needed !== undefined && !granted.includes(needed)) {
      counts.insufficientScope++
      res.writeHead(403, {
        "www-authenticate": challenge(`error="insufficient_scope", scope="${[...new Set([...granted, needed])].join(" ")}"`)
      })
      res.end()
      return
    }
    if (needed !== undefined) counts.toolCalls++
    const mcp = new SdkServer({ name: "test-mcp", version: "1.0.0" })
    mcp.registerTool("whoami", { description: "Who the token belongs to" }, async () => ({
      content: [{ type: "text", text: found.accountId }]
    }))
    mcp.registerTool("write", { description: "Needs mcp:write" }, async () => ({
      content: [{ type: "text", text: "written" }]
    }))
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true })
    res.on("close", () => {
      void transport.close()
      void mcp.close()
    })
    await mcp.connect(transport)
    await transport.handleRequest(req, res, body)
  }
  rsServer.on("request", (req, res) => {
    serve(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500)
      res.end(String(error))
    })
  })

  const close = (server: Http.Server) =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })

  return {
    issuer,
    url,
    resourceMetadataUrl,
    scopes,
    accountId,
    approve: (authorizationUrl) => approve(issuer, authorizationUrl, false),
    forgetClients,
    rejectNextTokens: (n) => {
      rejectNext = n
    },
    counters: () => ({ ...counts }),
    close: async () => {
      await close(rsServer)
      await close(asServer)
    }
  }
}
