/**
 * MCP servers end to end: an oidc-provider with dynamic registration and
 * resource indicators behind a resource server that answers 401/403 with
 * the MCP challenges (test/support/McpServer.ts), the real Sessions stack
 * (encrypted file store, file lock, real OAuth client), and the MCP SDK
 * client using the drop-in provider.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { Context, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as Mcp from "../../src/Mcp.js"
import * as McpClient from "../../src/mcp/Client.js"
import * as Registration from "../../src/mcp/Registration.js"
import * as TokenStore from "../../src/TokenStore.js"
import { makeHome, runCli, startCli } from "../support/Cli.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import * as McpServer from "../support/McpServer.js"
import { configLayer, newKey, stack } from "../support/SessionsStack.js"

class Servers extends Context.Service<Servers, McpServer.McpTestServer>()("test/Mcp/Servers") {}

const serversLayer = (options: McpServer.Options = {}) =>
  Layer.effect(
    Servers,
    Effect.acquireRelease(Effect.promise(() => McpServer.start(options)), (s) => Effect.promise(() => s.close()))
  )

/** Sessions and Mcp over a fresh session directory. */
const mcpStack = (dir: string, key: Uint8Array) =>
  Mcp.layer.pipe(
    Layer.provideMerge(stack(configLayer({ sessionDirectory: NodePathModule.join(dir, "sessions"), key, providers: [] }))),
    Layer.provideMerge(NodeHttpClient.layerUndici)
  )

const inStack = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("mts-mcp-")
    return yield* body.pipe(Effect.provide(mcpStack(dir, newKey().bytes)))
  }).pipe(Effect.scoped)

/** Login options whose "browser" is the server's auto-approving interaction. */
const browserOptions = (server: McpServer.McpTestServer, urls: Array<string> = []): Mcp.LoginOptions => ({
  onEvent: (event) => Effect.sync(() => void (event._tag === "AuthorizationUrl" && urls.push(event.url))),
  openBrowser: (url) => Effect.promise(() => server.approve(url)).pipe(Effect.forkDetach, Effect.asVoid),
  timeout: "20 seconds"
})

/** What the resource server says to a request with this token. */
const callWith = (server: McpServer.McpTestServer, token: string, tool: string) =>
  Effect.promise(() =>
    fetch(server.url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream"
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: tool, arguments: {} } })
    }).then(async (r) => ({ status: r.status, challenge: r.headers.get("www-authenticate"), body: await r.text() }))
  )

describe("Mcp: registration shared by processes", () => {
  // Real clocks: the process that waits polls the registration lock on real time.
  layer(serversLayer(), { timeout: 60_000, excludeTestServices: true })((it) => {
    it.effect("two processes logging in to one server at once register one client and both use it", () =>
      Effect.gen(function*() {
        const server = yield* Servers
        const dir = yield* tempDir("mts-mcp-")
        const key = newKey().bytes
        // Two service stacks over one session directory: what two processes of one user have.
        const [a, b] = yield* Effect.all([mcpStack(dir, key), mcpStack(dir, key)].map((l) =>
          Effect.map(Layer.build(l), Context.get(Mcp.Mcp))
        ))
        const before = server.counters().registrations
        const [first, second] = yield* Effect.all(
          [a!.login(server.url, browserOptions(server)), b!.login(server.url, browserOptions(server))],
          { concurrency: 2 }
        )
        assert.strictEqual(server.counters().registrations - before, 1)
        assert.deepStrictEqual([first.client, second.client].toSorted(), ["registered", "reused"])
        assert.strictEqual(first.session.clientId, second.session.clientId)
      }).pipe(Effect.scoped))
  })
})

describe("Mcp against an MCP-style resource server", () => {
  layer(serversLayer(), { timeout: 60_000 })((it) => {
    it.effect("login discovers, registers once, binds the session to issuer and resource, and reuses the registration", () =>
      inStack(Effect.gen(function*() {
        const server = yield* Servers
        const mcp = yield* Mcp.Mcp
        const store = yield* TokenStore.TokenStore
        const before = server.counters().registrations
        const urls: Array<string> = []
        const first = yield* mcp.login(server.url, browserOptions(server, urls))
        assert.strictEqual(first.client, "registered")
        assert.strictEqual(first.issuer, server.issuer)
        assert.strictEqual(first.binding.resource, server.url)
        assert.deepStrictEqual(first.scopes, ["mcp:read"])
        assert.deepStrictEqual(Option.getOrUndefined(first.session.resource), server.url)
        assert.deepStrictEqual(Option.getOrUndefined(first.session.issuer), server.issuer)
        assert.isTrue(first.session.hasRefreshToken)
        // PKCE and the resource indicator went out on the authorization request.
        const authorization = new URL(urls[0]!)
        assert.strictEqual(authorization.searchParams.get("code_challenge_method"), "S256")
        assert.strictEqual(authorization.searchParams.get("resource"), server.url)

        // The registration is a record of its own, sealed in the same store; the session uses its client.
        const record = yield* store.get(Registration.idOf(server.issuer))
        const registration = Option.getOrThrow(Registration.fromRecord(record))
        assert.strictEqual(first.session.clientId, registration.clientId)

        const token = yield* mcp.getAccessToken(server.url)
        const answer = yield* callWith(server, Redacted.value(token), "whoami")
        assert.strictEqual(answer.status, 200)
        assert.include(answer.body, server.accountId)

        const second = yield* mcp.login(server.url, browserOptions(server))
        assert.strictEqual(second.client, "reused")
        assert.strictEqual(server.counters().registrations - before, 1)
      })))

    it.effect("a registration the server no longer knows is replaced, and the login goes through", () =>
      inStack(Effect.gen(function*() {
        const server = yield* Servers
        const mcp = yield* Mcp.Mcp
        const first = yield* mcp.login(server.url, browserOptions(server))
        server.forgetClients()
        const again = yield* mcp.login(server.url, browserOptions(server))
        assert.strictEqual(again.client, "replaced")
        assert.notStrictEqual(again.session.clientId, first.session.clientId)
        const stored = Option.getOrThrow(yield* mcp.registration(server.issuer))
        assert.strictEqual(stored.clientId, again.session.clientId)
      })))

    it.effect("step-up on insufficient_scope adds a session for the union of scopes and keeps the first", () =>
      inStack(Effect.gen(function*() {
        const server = yield* Servers
        const mcp = yield* Mcp.Mcp
        const store = yield* TokenStore.TokenStore
        const first = yield* mcp.login(server.url, browserOptions(server))
        const narrow = Redacted.value(yield* mcp.getAccessToken(server.url))
        const refused = yield* callWith(server, narrow, "write")
        assert.strictEqual(refused.status, 403)
        assert.include(refused.challenge ?? "", "insufficient_scope")

        const stepped = yield* mcp.stepUp(server.url, ["mcp:write"], browserOptions(server))
        assert.deepStrictEqual([...stepped.scopes].sort(), ["mcp:read", "mcp:write"])
        const wide = Redacted.value(yield* mcp.getAccessToken(server.url, { scopes: stepped.scopes }))
        assert.strictEqual((yield* callWith(server, wide, "write")).status, 200)

        // The first session is still there and still serves what it covers.
        const ids = (yield* store.list).filter((m) => m.provider === first.binding.provider).map((m) => m.id)
        assert.include(ids, first.session.id)
        assert.include(ids, stepped.session.id)
        assert.strictEqual(Redacted.value(yield* mcp.getAccessToken(server.url, { scopes: ["mcp:read"] })), narrow)
      })))

    it.effect("no session: getAccessToken says which command logs in", () =>
      inStack(Effect.gen(function*() {
        const server = yield* Servers
        const mcp = yield* Mcp.Mcp
        const error = yield* Effect.flip(mcp.getAccessToken(server.url))
        assert.strictEqual(error.reason._tag, "LoginRequired")
        assert.include(error.message, `mtsession login --mcp ${server.url}`)
      })))

    it.effect("the MCP SDK client with the drop-in provider: first use logs in, a refused token is refreshed once, step-up works, a new process reuses the session", () =>
      Effect.gen(function*() {
        const server = yield* Servers
        const dir = yield* tempDir("mts-mcp-sdk-")
        const key = newKey().bytes
        const runtime = (): McpClient.Runner & { dispose: () => Promise<void> } => ManagedRuntime.make(mcpStack(dir, key))
        const interactive: McpClient.Interactive = {
          onAuthorizationUrl: (url) => void server.approve(url)
        }
        const connect = async (rt: McpClient.Runner, withInteraction: boolean) => {
          const auth = McpClient.make(rt, { serverUrl: server.url, ...(withInteraction ? { interactive } : {}) })
          const client = new Client({ name: "sdk-test", version: "1.0.0" })
          await client.connect(new StreamableHTTPClientTransport(new URL(server.url), auth.transportOptions))
          return client
        }
        const text = (result: unknown) => ((result as { content: Array<{ text: string }> }).content[0]?.text)

        const first = runtime()
        yield* Effect.promise(async () => {
          const client = await connect(first, true)
          assert.strictEqual(text(await client.callTool({ name: "whoami", arguments: {} })), server.accountId)
          const refreshesBefore = server.counters().refreshes
          server.rejectNextTokens(1)
          assert.strictEqual(text(await client.callTool({ name: "whoami", arguments: {} })), server.accountId)
          assert.strictEqual(server.counters().refreshes - refreshesBefore, 1)
          assert.strictEqual(text(await client.callTool({ name: "write", arguments: {} })), "written")
          await client.close()
          await first.dispose()
        })

        // Another process (no interaction allowed) gets the stored session: no login, no registration.
        const registrations = server.counters().registrations
        const second = runtime()
        yield* Effect.promise(async () => {
          const client = await connect(second, false)
          assert.strictEqual(text(await client.callTool({ name: "whoami", arguments: {} })), server.accountId)
          await client.close()
          await second.dispose()
        })
        assert.strictEqual(server.counters().registrations, registrations)
      }).pipe(Effect.scoped))
  })

  layer(serversLayer(), { timeout: 60_000 })((it) => {
    it.effect("`mtsession login --mcp URL` logs in with no provider configured, and `mtsession mcp token URL` prints its token", () =>
      Effect.gen(function*() {
        const server = yield* Servers
        const { home, config } = makeHome("auth:\n  session_persistence:\n    token_storage:\n      storage_backend: filesystem\n")
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(home, { recursive: true, force: true })))
        const env = {
          HOME: home,
          XDG_CONFIG_HOME: NodePathModule.join(home, ".config"),
          MAGICTUNNEL_CONFIG_PATH: config,
          MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString("base64")
        }
        const result = yield* Effect.promise(async () => {
          const cli = startCli(["login", "--mcp", server.url, "--no-browser", "--json"], { env })
          const { url } = JSON.parse(await cli.line((l) => l.includes("authorization_url")))
          assert.strictEqual(await server.approve(url), 200)
          return cli.done
        })
        assert.strictEqual(result.code, 0, result.stderr)
        const events = result.stdout.trim().split("\n").map((l) => JSON.parse(l))
        const done = events.find((e) => e.event === "logged_in")
        assert.strictEqual(done.mcp.issuer, server.issuer)
        assert.strictEqual(done.mcp.resource, server.url)
        assert.strictEqual(done.mcp.client, "registered")
        assert.strictEqual(done.session.provider, Mcp.providerNameOf(server.url))
        const token = yield* Effect.promise(() =>
          runCli(["mcp", "token", server.url], { env })
        )
        assert.strictEqual(token.code, 0, token.stderr)
        const answer = yield* callWith(server, token.stdout.trim(), "whoami")
        assert.strictEqual(answer.status, 200)
      }).pipe(Effect.scoped))
  })

  layer(serversLayer({ challengeMetadata: false }), { timeout: 60_000 })((it) => {
    it.effect("without resource_metadata in the challenge, the well-known URL is used", () =>
      inStack(Effect.gen(function*() {
        const server = yield* Servers
        const mcp = yield* Mcp.Mcp
        const found = yield* mcp.discover(server.url)
        assert.strictEqual(found.resourceMetadataUrl, server.resourceMetadataUrl)
        assert.strictEqual(found.server.issuer, server.issuer)
        assert.isDefined(found.server.registration_endpoint)
        const result = yield* mcp.login(server.url, browserOptions(server))
        assert.strictEqual(result.binding.resource, server.url)
      })))
  })
})
