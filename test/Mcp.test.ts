/**
 * The MCP pieces that need no server: challenge parsing, the canonical
 * URI and well-known URLs, provider names, the registration record, and
 * the authorized fetch's retry and step-up rules (over a scripted fetch).
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Option, Redacted } from "effect"
import * as Mcp from "../src/Mcp.js"
import * as AuthorizedFetch from "../src/mcp/AuthorizedFetch.js"
import * as Discovery from "../src/mcp/Discovery.js"
import * as Registration from "../src/mcp/Registration.js"
import * as WwwAuthenticate from "../src/mcp/WwwAuthenticate.js"
import * as TokenStore from "../src/TokenStore.js"

describe("WwwAuthenticate", () => {
  it("reads resource_metadata, scope and error from a Bearer challenge among others", () => {
    const header = `Basic realm="x", Bearer realm="mcp", error="insufficient_scope", ` +
      `scope="files:read files:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", ` +
      `error_description="needs \\"write\\""`
    const challenge = Option.getOrThrow(WwwAuthenticate.parseBearer(header))
    assert.deepStrictEqual(Option.getOrThrow(challenge.scopes), ["files:read", "files:write"])
    assert.strictEqual(
      Option.getOrThrow(challenge.resourceMetadata),
      "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    )
    assert.strictEqual(Option.getOrThrow(challenge.errorDescription), "needs \"write\"")
    assert.isTrue(WwwAuthenticate.isInsufficientScope(403, Option.some(challenge)))
    assert.isFalse(WwwAuthenticate.isInsufficientScope(401, Option.some(challenge)))
  })

  it("accepts unquoted values and finds nothing without a Bearer challenge", () => {
    const challenge = Option.getOrThrow(WwwAuthenticate.parseBearer("bearer error=invalid_token, scope=read"))
    assert.strictEqual(Option.getOrThrow(challenge.error), "invalid_token")
    assert.deepStrictEqual(Option.getOrThrow(challenge.scopes), ["read"])
    assert.isTrue(Option.isNone(WwwAuthenticate.parseBearer("Basic realm=\"x\"")))
    assert.isTrue(Option.isNone(WwwAuthenticate.parseBearer(null)))
  })
})

describe("Discovery URLs", () => {
  it("canonicalises the server URI and builds the RFC 9728 well-known URLs, path-inserted first", () => {
    const canonical = Option.getOrThrow(Discovery.canonicalUri("HTTPS://MCP.Example.com:443/tools/mcp/?x=1#f"))
    assert.strictEqual(canonical, "https://mcp.example.com/tools/mcp")
    assert.deepStrictEqual(Discovery.resourceMetadataUrls(canonical), [
      "https://mcp.example.com/.well-known/oauth-protected-resource/tools/mcp",
      "https://mcp.example.com/.well-known/oauth-protected-resource"
    ])
    assert.isTrue(Option.isNone(Discovery.canonicalUri("ftp://x/y")))
  })

  it("builds RFC 8414 path insertion, then OpenID insertion and appending", () => {
    assert.deepStrictEqual(Discovery.serverMetadataUrls("https://auth.example.com/tenant1"), [
      "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
      "https://auth.example.com/.well-known/openid-configuration/tenant1",
      "https://auth.example.com/tenant1/.well-known/openid-configuration"
    ])
    assert.deepStrictEqual(Discovery.serverMetadataUrls("https://auth.example.com"), [
      "https://auth.example.com/.well-known/oauth-authorization-server",
      "https://auth.example.com/.well-known/openid-configuration"
    ])
  })

  it("accepts resource metadata for the server or a path prefix of it, never another resource", () => {
    assert.isTrue(Discovery.covers("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"))
    assert.isTrue(Discovery.covers("https://mcp.example.com", "https://mcp.example.com/mcp"))
    assert.isFalse(Discovery.covers("https://mcp.example.com/mc", "https://mcp.example.com/mcp"))
    assert.isFalse(Discovery.covers("https://evil.example.com/mcp", "https://mcp.example.com/mcp"))
  })

  it("names an MCP server's sessions after its host, within the provider name rules", () => {
    assert.strictEqual(Mcp.providerNameOf("http://127.0.0.1:8080/mcp"), "mcp-127.0.0.1-8080")
    assert.strictEqual(Mcp.providerNameOf("https://MCP.example.com/a/b"), "mcp-mcp.example.com")
    assert.match(Mcp.providerNameOf(`https://${"a".repeat(80)}.example.com/`), TokenStore.providerNamePattern)
  })
})

describe("Registration record", () => {
  it.effect("round-trips through a token store with its secrets sealed, and is not a session a token can come from", () =>
    Effect.gen(function*() {
      const store = yield* TokenStore.makeMemory
      const registration: Registration.Registration = {
        issuer: "https://auth.example.com",
        clientId: "client-123",
        clientSecret: Option.some(Redacted.make("SECRETVALUE")),
        secretExpiresAt: Option.none(),
        registrationAccessToken: Option.some(Redacted.make("RATVALUE")),
        registrationClientUri: Option.some("https://auth.example.com/reg/client-123"),
        tokenEndpointAuthMethod: "none",
        createdAt: yield* DateTime.now
      }
      yield* store.put(yield* Registration.toRecord(registration))
      const record = yield* store.get(Registration.idOf(registration.issuer))
      assert.isUndefined(record.accessToken)
      assert.isUndefined(record.refreshToken)
      const back = Option.getOrThrow(Registration.fromRecord(record))
      assert.strictEqual(back.clientId, "client-123")
      assert.strictEqual(Redacted.value(Option.getOrThrow(back.clientSecret)), "SECRETVALUE")
      assert.strictEqual(Option.getOrThrow(back.registrationClientUri), "https://auth.example.com/reg/client-123")
      const [listed] = yield* store.list
      assert.isTrue(Registration.isRegistration(listed!))
      assert.notInclude(JSON.stringify(listed), "SECRETVALUE")
      assert.notStrictEqual(Registration.idOf("https://other.example.com"), record.id)
    }))

  it("registers a public native client with a loopback redirect", () => {
    const metadata = Registration.clientMetadata({ clientName: "gw", scopes: ["a", "b"] })
    assert.strictEqual(metadata.token_endpoint_auth_method, "none")
    assert.deepStrictEqual(metadata.redirect_uris, ["http://127.0.0.1/callback"])
    assert.strictEqual(metadata.scope, "a b")
  })
})

/** A fetch that answers from a script and records the Authorization header of each request. */
const scripted = (answers: Array<() => Response>) => {
  const seen: Array<string | null> = []
  const fetch = (async (_input: string | URL | Request, init?: RequestInit) => {
    seen.push(new Headers(init?.headers).get("authorization"))
    const next = answers.shift()
    if (next === undefined) throw new Error("unexpected request")
    return next()
  }) as typeof globalThis.fetch
  return { fetch, seen }
}

describe("AuthorizedFetch", () => {
  it("adds the bearer token; on 401 refreshes once and retries once with the new token", async () => {
    let token = "t1"
    const refreshed: Array<unknown> = []
    const base = scripted([() => new Response(null, { status: 401 }), () => new Response("ok")])
    const wrapped = AuthorizedFetch.make({
      token: async () => token,
      refresh: async (scopes) => {
        refreshed.push(scopes)
        token = "t2"
      }
    }, base.fetch)
    const response = await wrapped.fetch("https://mcp.example.com/mcp", { method: "POST", body: "{}" })
    assert.strictEqual(await response.text(), "ok")
    assert.deepStrictEqual(base.seen, ["Bearer t1", "Bearer t2"])
    assert.strictEqual(refreshed.length, 1)
  })

  it("returns the 401 when the refresh fails, and a second 401 as is (no loop)", async () => {
    const failing = scripted([() => new Response(null, { status: 401 })])
    const noRefresh = AuthorizedFetch.make({
      token: async () => "t",
      refresh: () => Promise.reject(new Error("dead grant"))
    }, failing.fetch)
    assert.strictEqual((await noRefresh.fetch("https://x/mcp")).status, 401)
    assert.strictEqual(failing.seen.length, 1)

    const twice = scripted([() => new Response(null, { status: 401 }), () => new Response(null, { status: 401 })])
    const wrapped = AuthorizedFetch.make({ token: async () => "t", refresh: async () => {} }, twice.fetch)
    assert.strictEqual((await wrapped.fetch("https://x/mcp")).status, 401)
    assert.strictEqual(twice.seen.length, 2)
  })

  it("steps up on 403 insufficient_scope with the challenged scopes, and asks for them from then on", async () => {
    const asked: Array<ReadonlyArray<string> | undefined> = []
    const insufficient = () =>
      new Response(null, {
        status: 403,
        headers: { "www-authenticate": "Bearer error=\"insufficient_scope\", scope=\"read write\"" }
      })
    const base = scripted([insufficient, () => new Response("ok"), () => new Response("ok")])
    const wrapped = AuthorizedFetch.make({
      token: async (scopes) => {
        asked.push(scopes)
        return scopes === undefined ? "narrow" : "wide"
      },
      refresh: async () => {},
      stepUp: async (required, current) => [...(current ?? []), ...required]
    }, base.fetch)
    assert.strictEqual((await wrapped.fetch("https://x/mcp", { method: "POST", body: "{}" })).status, 200)
    assert.strictEqual((await wrapped.fetch("https://x/mcp", { method: "POST", body: "{}" })).status, 200)
    assert.deepStrictEqual(base.seen, ["Bearer narrow", "Bearer wide", "Bearer wide"])
    assert.deepStrictEqual(wrapped.scopes(), ["read", "write"])
  })

  it("without step-up allowed, or with a body that cannot be sent twice, returns the answer as is", async () => {
    const forbidden = () =>
      new Response(null, { status: 403, headers: { "www-authenticate": "Bearer error=\"insufficient_scope\", scope=\"w\"" } })
    const base = scripted([forbidden])
    const wrapped = AuthorizedFetch.make({ token: async () => "t", refresh: async () => {} }, base.fetch)
    assert.strictEqual((await wrapped.fetch("https://x/mcp")).status, 403)

    const stream = scripted([() => new Response(null, { status: 401 })])
    const once = AuthorizedFetch.make({ token: async () => "t", refresh: async () => {} }, stream.fetch)
    const body = new ReadableStream({ start: (c) => c.close() })
    assert.strictEqual((await once.fetch("https://x/mcp", { method: "POST", body, duplex: "half" } as RequestInit)).status, 401)
    assert.strictEqual(stream.seen.length, 1)
  })
})
