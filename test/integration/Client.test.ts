/**
 * The Promise client (`src/Client.ts`) as a program that does not use Effect
 * sees it: against oidc-provider on 127.0.0.1, over a session directory a
 * previous "process" logged in to.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as NodePathModule from "node:path"
import { Effect, Layer, Redacted } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as Client from "../../src/Client.js"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as Sessions from "../../src/Sessions.js"
import * as OidcServer from "../support/OidcServer.js"
import { configLayer, newKey, stack } from "../support/SessionsStack.js"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { loginApproved } from "../support/Login.js"

let server: OidcServer.OidcServer
let dir: string
const key = newKey().bytes

const stackHere = () =>
  stack(configLayer({ sessionDirectory: NodePathModule.join(dir, "sessions"), key, providers: [server.provider] }))

/** Whether the server still takes `token` (RFC 7662 introspection by the same client). */
const isActive = (token: string) =>
  Effect.runPromise(
    Effect.flatMap(OAuthClient.OAuthClient, (oauth) => oauth.introspect(server.provider, Redacted.make(token))).pipe(
      Effect.map((r) => r.active),
      Effect.provide(OAuthClient.layer.pipe(Layer.provide(FetchHttpClient.layer)))
    )
  )

beforeAll(async () => {
  server = await OidcServer.start({ accessTokenTtl: 300 })
  dir = Fs.mkdtempSync(NodePathModule.join(Os.tmpdir(), "mts-client-"))
  // An earlier process signs in; the client below starts with an empty cache, as after a restart.
  await Effect.runPromise(
    Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      yield* loginApproved(sessions, server.provider.name, server.approve)
    }).pipe(Effect.provide(stackHere()))
  )
})

afterAll(async () => {
  await server?.close()
  if (dir !== undefined) Fs.rmSync(dir, { recursive: true, force: true })
})

describe("Client (Promise API)", () => {
  it("gets, refreshes, lists and logs out a stored session; a closed client refuses calls", async () => {
    const client = Client.fromLayer(Layer.orDie(stackHere()))
    const provider = server.provider.name

    const first = await client.getAccessToken(provider)
    assert.isString(first)
    assert.isTrue(await isActive(first))
    // The cached path: the same token, many times, with no store read or refresh between.
    const again = await Promise.all(Array.from({ length: 100 }, () => client.getAccessToken(provider)))
    assert.deepStrictEqual(new Set(again), new Set([first]))

    const [listed] = await client.list()
    assert.strictEqual(listed?.provider, provider)
    assert.strictEqual(listed?.state, "active")
    assert.instanceOf(listed?.expiresAt, Date)
    assert.notInclude(JSON.stringify(await client.list()), first)

    const outcome = await client.refresh(listed!.id, { force: true })
    assert.strictEqual(outcome._tag, "Refreshed")
    const rotated = await client.getAccessToken(provider)
    assert.notStrictEqual(rotated, first)
    assert.isTrue(await isActive(rotated))

    // A malformed minTtl from untyped code is a rejection that names it, not a throw.
    const badTtl = await client.getAccessToken(provider, { minTtl: "5 parsecs" as never }).then(() => undefined, (e: unknown) => e)
    assert.instanceOf(badTtl, TypeError)
    assert.include(String(badTtl), "minTtl")

    const missing = await client.getAccessToken("not-configured").then(() => undefined, (e: unknown) => e)
    assert.strictEqual((missing as { _tag?: string })._tag, "SessionsError")

    assert.deepStrictEqual(await client.logout(provider), [listed!.id])
    assert.isFalse(await isActive(rotated))
    const gone = await client.getAccessToken(provider).then(() => undefined, (e: unknown) => e)
    assert.strictEqual((gone as { _tag?: string })._tag, "ReauthRequired")

    await client.close()
    const closed = await client.list().then(() => "listed", () => "refused")
    assert.strictEqual(closed, "refused")
    // Not even a token this process still has in memory.
    const cached = await client.getAccessToken(provider).then(() => "answered", () => "refused")
    assert.strictEqual(cached, "refused")
  })
})
