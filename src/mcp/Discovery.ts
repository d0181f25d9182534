/**
 * Discovery of an MCP server's authorization: the request without
 * credentials and its 401 challenge, the protected resource metadata
 * (RFC 9728) from the challenge's `resource_metadata` or the well-known
 * locations, then the authorization server's metadata (RFC 8414 with path
 * insertion, then OpenID Connect discovery).
 *
 * Every document is decoded with `Schema` (unknown members kept out) and
 * checked the way the RFCs require: the resource metadata names the
 * resource that was asked about, the server metadata names the issuer it
 * was fetched for. URLs must be https, or http on a loopback host.
 *
 * @see https://www.rfc-editor.org/rfc/rfc9728#section-3
 * @see https://www.rfc-editor.org/rfc/rfc8414#section-3.1
 * @see https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig
 * @see https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization
 */
import { Data, Duration, Effect, Option, Schema } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { transportOf } from "../oauth/Fetch.js"
import * as WwwAuthenticate from "./WwwAuthenticate.js"

/** The bound on one discovery request. */
export const requestTimeout = Duration.seconds(15)

/** The largest metadata document read. */
export const maxDocumentBytes = 256 * 1024

/** Why discovery failed; never carries a secret (nothing secret is sent). */
export class DiscoveryError extends Data.TaggedError("McpDiscoveryError")<{
  readonly url: string
  readonly detail: string
  /** The server could not be reached or answered 5xx: trying later may work. */
  readonly retryable: boolean
}> {
  override get message(): string {
    return `${this.url}: ${this.detail}`
  }
}

/** RFC 9728 §2: protected resource metadata (the members a client uses). */
export const ResourceMetadata = Schema.Struct({
  resource: Schema.String,
  authorization_servers: Schema.optional(Schema.Array(Schema.String)),
  scopes_supported: Schema.optional(Schema.Array(Schema.String)),
  bearer_methods_supported: Schema.optional(Schema.Array(Schema.String)),
  resource_name: Schema.optional(Schema.String)
})
export type ResourceMetadata = typeof ResourceMetadata.Type

/** RFC 8414 §2: authorization server metadata (the members a client uses). */
export const ServerMetadata = Schema.Struct({
  issuer: Schema.String,
  authorization_endpoint: Schema.optional(Schema.String),
  token_endpoint: Schema.optional(Schema.String),
  registration_endpoint: Schema.optional(Schema.String),
  revocation_endpoint: Schema.optional(Schema.String),
  introspection_endpoint: Schema.optional(Schema.String),
  userinfo_endpoint: Schema.optional(Schema.String),
  device_authorization_endpoint: Schema.optional(Schema.String),
  scopes_supported: Schema.optional(Schema.Array(Schema.String)),
  code_challenge_methods_supported: Schema.optional(Schema.Array(Schema.String)),
  token_endpoint_auth_methods_supported: Schema.optional(Schema.Array(Schema.String))
})
export type ServerMetadata = typeof ServerMetadata.Type

/**
 * The canonical URI of an MCP server (RFC 8707 §2, MCP "canonical server
 * URI"): scheme and host lower-cased, default port, query and fragment
 * dropped, no trailing slash (unless the path is `/` alone, which is dropped too).
 */
export const canonicalUri = (serverUrl: string): Option.Option<string> => {
  const url = URL.parse(serverUrl)
  if (url === null || (url.protocol !== "https:" && url.protocol !== "http:")) return Option.none()
  const path = url.pathname.replace(/\/+$/, "")
  return Option.some(`${url.protocol}//${url.host.toLowerCase()}${path}`)
}

/** Whether `resource` names `canonical` itself or a path prefix of it on the same origin. */
export const covers = (resource: string, canonical: string): boolean => {
  const r = Option.getOrUndefined(canonicalUri(resource))
  return r !== undefined && (r === canonical || canonical.startsWith(`${r}/`))
}

/** RFC 9728 §3.1: the well-known URLs of a resource, path-inserted first, then the origin's. */
export const resourceMetadataUrls = (canonical: string): ReadonlyArray<string> => {
  const url = new URL(canonical)
  const path = url.pathname === "/" ? "" : url.pathname
  const root = `${url.origin}/.well-known/oauth-protected-resource`
  return path === "" ? [root] : [`${root}${path}`, root]
}

/**
 * RFC 8414 §3.1 and OpenID discovery: path insertion for both, then the
 * OpenID path appending form (issuers with a path).
 */
export const serverMetadataUrls = (issuer: string): ReadonlyArray<string> => {
  const url = new URL(issuer)
  const path = url.pathname.replace(/\/+$/, "")
  return path === ""
    ? [`${url.origin}/.well-known/oauth-authorization-server`, `${url.origin}/.well-known/openid-configuration`]
    : [
      `${url.origin}/.well-known/oauth-authorization-server${path}`,
      `${url.origin}/.well-known/openid-configuration${path}`,
      `${url.origin}${path}/.well-known/openid-configuration`
    ]
}

/** What the unauthenticated request said. */
export interface Probe {
  readonly status: number
  readonly challenge: Option.Option<WwwAuthenticate.BearerChallenge>
}

/** What discovery found for one MCP server. */
export interface Discovered {
  readonly serverUrl: string
  readonly canonical: string
  readonly challenge: Option.Option<WwwAuthenticate.BearerChallenge>
  /** Where the resource metadata came from. */
  readonly resourceMetadataUrl: string
  readonly resource: ResourceMetadata
  readonly server: ServerMetadata
}

const refuseInsecure = (url: string) =>
  transportOf(url) === "refused"
    ? Effect.fail(
      new DiscoveryError({ url, detail: "plain http is allowed only on loopback (127.0.0.0/8, ::1, localhost)", retryable: false })
    )
    : Effect.void

const decodeResource = Schema.decodeUnknownEffect(Schema.fromJsonString(ResourceMetadata))
const decodeServer = Schema.decodeUnknownEffect(Schema.fromJsonString(ServerMetadata))

/** The discovery requests, over an `HttpClient`. */
export const make = (client: HttpClient.HttpClient) => {
  const send = (request: HttpClientRequest.HttpClientRequest) =>
    Effect.gen(function*() {
      yield* refuseInsecure(request.url)
      const response = yield* client.execute(request).pipe(
        Effect.timeoutOrElse({
          duration: requestTimeout,
          orElse: () => Effect.fail(new DiscoveryError({ url: request.url, detail: "timed out", retryable: true }))
        }),
        Effect.mapError((e) =>
          e._tag === "McpDiscoveryError"
            ? e
            : new DiscoveryError({ url: request.url, detail: `request failed (${e.reason._tag})`, retryable: true })
        )
      )
      return response
    })

  const getDocument = <A>(url: string, decode: (text: string) => Effect.Effect<A, Schema.SchemaError>) =>
    Effect.gen(function*() {
      const response = yield* send(HttpClientRequest.get(url).pipe(HttpClientRequest.acceptJson))
      if (response.status !== 200) {
        return yield* new DiscoveryError({ url, detail: `HTTP ${response.status}`, retryable: response.status >= 500 })
      }
      const text = yield* response.text.pipe(
        Effect.mapError(() => new DiscoveryError({ url, detail: "the body could not be read", retryable: true }))
      )
      if (text.length > maxDocumentBytes) {
        return yield* new DiscoveryError({ url, detail: `larger than ${maxDocumentBytes} bytes`, retryable: false })
      }
      return yield* decode(text).pipe(
        Effect.mapError(() => new DiscoveryError({ url, detail: "not a valid metadata document", retryable: false }))
      )
    })

  /** The first of `urls` that yields a document passing `check`, or the last failure. */
  const firstOf = <A>(
    urls: ReadonlyArray<string>,
    fetchOne: (url: string) => Effect.Effect<A, DiscoveryError>
  ): Effect.Effect<{ readonly url: string; readonly value: A }, DiscoveryError> =>
    Effect.gen(function*() {
      const failures: Array<DiscoveryError> = []
      for (const url of urls) {
        const result = yield* fetchOne(url).pipe(Effect.result)
        if (result._tag === "Success") return { url, value: result.success }
        // An unreachable server stays unreachable at the next well-known URL.
        if (result.failure.retryable) return yield* result.failure
        failures.push(result.failure)
      }
      return yield* new DiscoveryError({
        url: urls[0] ?? "",
        detail: failures.map((f) => `${f.url}: ${f.detail}`).join("; "),
        retryable: false
      })
    })

  /** Sends a request without credentials, for its challenge (MCP: the server answers 401). */
  const probe = (serverUrl: string): Effect.Effect<Probe, DiscoveryError> =>
    send(
      HttpClientRequest.post(serverUrl).pipe(
        HttpClientRequest.setHeader("accept", "application/json, text/event-stream"),
        HttpClientRequest.bodyJsonUnsafe({
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "magictunnel-session", version: "1" }
          }
        })
      )
    ).pipe(
      Effect.tap((response) => Effect.ignore(response.arrayBuffer)),
      Effect.map((response) => ({
        status: response.status,
        challenge: WwwAuthenticate.parseBearer(response.headers["www-authenticate"])
      }))
    )

  /** RFC 9728: the resource metadata of `canonical`, from the challenge's URL or the well-known ones. */
  const resourceMetadata = (canonical: string, fromChallenge: Option.Option<string>) =>
    firstOf(
      Option.match(fromChallenge, { onNone: () => resourceMetadataUrls(canonical), onSome: (u) => [u] }),
      (url) =>
        getDocument(url, decodeResource).pipe(
          // RFC 9728 §3.3 / §7.3: metadata naming another resource must not be used.
          Effect.filterOrFail(
            (m) => covers(m.resource, canonical),
            (m) => new DiscoveryError({ url, detail: `the metadata is for ${m.resource}, not ${canonical}`, retryable: false })
          )
        )
    )

  /** RFC 8414 §3.3: the metadata of `issuer`, whose `issuer` member must be exactly it. */
  const serverMetadata = (issuer: string) =>
    refuseInsecure(issuer).pipe(
      Effect.andThen(firstOf(serverMetadataUrls(issuer), (url) =>
        getDocument(url, decodeServer).pipe(
          Effect.filterOrFail(
            (m) => m.issuer === issuer || m.issuer === issuer.replace(/\/+$/, ""),
            (m) => new DiscoveryError({ url, detail: `the metadata names issuer ${m.issuer}, not ${issuer}`, retryable: false })
          )
        ))),
      Effect.map(({ value }) => value)
    )

  /** The whole discovery for one MCP server. */
  const discover = (serverUrl: string): Effect.Effect<Discovered, DiscoveryError> =>
    Effect.gen(function*() {
      const canonical = yield* Option.match(canonicalUri(serverUrl), {
        onNone: () => Effect.fail(new DiscoveryError({ url: serverUrl, detail: "not an http(s) URL", retryable: false })),
        onSome: Effect.succeed
      })
      yield* refuseInsecure(canonical)
      const probed = yield* probe(serverUrl)
      const challenge = probed.challenge
      const found = yield* resourceMetadata(canonical, Option.flatMap(challenge, (c) => c.resourceMetadata))
      const issuer = found.value.authorization_servers?.[0]
      if (issuer === undefined) {
        return yield* new DiscoveryError({ url: found.url, detail: "the metadata names no authorization server", retryable: false })
      }
      const server = yield* serverMetadata(issuer)
      const methods = server.code_challenge_methods_supported
      if (methods !== undefined && !methods.includes("S256")) {
        return yield* new DiscoveryError({ url: issuer, detail: "the authorization server does not support PKCE S256", retryable: false })
      }
      return { serverUrl, canonical, challenge, resourceMetadataUrl: found.url, resource: found.value, server }
    })

  return { probe, resourceMetadata, serverMetadata, discover }
}
