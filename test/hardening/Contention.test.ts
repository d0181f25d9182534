/**
 * Contention across processes: 8 worker processes
 * (test/support/hardening/contention-worker.ts) share one session directory,
 * data key and real authorization server (oidc-provider, rotating refresh
 * tokens with reuse detection) for HARDENING_CONTENTION_SECONDS (default 60)
 * of wall time, refreshing, reading, writing and deleting the same and
 * different sessions at random. Then: no refresh lost (every refresh the
 * server made is the one stored: generations add up to the server's count),
 * no grant refreshed twice (no reuse detected, no invalid_grant), no own
 * write lost, nothing corrupted, every worker done (no deadlock), and every
 * grant still refreshes.
 *
 * And a lock holder killed in the middle of a refresh (its request hanging at
 * the server) is taken over by a waiting process within a bounded time.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Layer, Schema } from "effect"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FaultProxy from "../support/FaultProxy.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import { indexListing } from "../support/hardening/Stores.js"
import * as Workers from "../support/hardening/Workers.js"
import * as OidcServer from "../support/OidcServer.js"
import { newKey, stack } from "../support/SessionsStack.js"
import { loginApproved } from "../support/Login.js"

const seconds = Number(process.env["HARDENING_CONTENTION_SECONDS"] ?? "60")
const workerCount = 8
const providers = ["alpha", "beta", "gamma"]

let contention: string
let crash: string
beforeAll(async () => {
  ;[contention, crash] = await Promise.all([Workers.bundle("contention-worker"), Workers.bundle("crash-worker")])
})
afterAll(() => {
  for (const b of [contention, crash]) Fs.rmSync(NodePath.dirname(b), { recursive: true, force: true })
})

/** A configuration file naming `providers`, all on one server, and the environment a worker needs. */
const setup = (server: OidcServer.OidcServer, dir: string, issuerOf: (name: string) => string = () => server.issuer) => {
  const key = newKey()
  const configPath = NodePath.join(dir, "config.yaml")
  Fs.writeFileSync(configPath, [
    "auth:",
    "  session_persistence:",
    "    user_context:",
    `      session_directory: ${JSON.stringify(NodePath.join(dir, "sessions"))}`,
    "    token_storage:",
    "      storage_backend: filesystem",
    "      encryption_key_source: env",
    "  oauth:",
    "    providers:",
    ...providers.flatMap((name) => [
      `      ${name}:`,
      `        issuer: ${JSON.stringify(issuerOf(name))}`,
      `        client_id: ${JSON.stringify(server.clientId)}`,
      `        scopes: ${JSON.stringify(server.provider.scopes)}`
    ]),
    ""
  ].join("\n"), { mode: 0o600 })
  const env = { MAGICTUNNEL_CONFIG_PATH: configPath, MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key.base64 }
  const layer = stack(
    SessionConfig.layerFromEnv({ configPath, env: { [SessionConfig.encryptionKeyEnv]: key.base64 } }).pipe(
      Layer.provide(NodeFileSystem.layer)
    )
  )
  return { env, layer }
}

const login = (server: OidcServer.OidcServer, provider: string) =>
  Effect.flatMap(Sessions.Sessions, (sessions) => loginApproved(sessions, provider, server.approve))

const Report = Schema.fromJsonString(Schema.Struct({
  index: Schema.Number,
  counts: Schema.Record(Schema.String, Schema.Number),
  failures: Schema.Array(Schema.String),
  ownGeneration: Schema.Number,
  ownExists: Schema.Boolean
}))

describe("contention: 8 processes at once", () => {
  it.live(`${workerCount} processes for ${seconds} s: no lost update, no duplicate refresh, no invalid_grant, no deadlock`, () =>
    Effect.gen(function*() {
      // Tokens outlive the refresh threshold, so a forced refresh that finds another process's newer one reuses it.
      const server = yield* OidcServer.acquire({ accessTokenTtl: 3600 })
      const dir = yield* tempDir("mts-contention-")
      const { env, layer } = setup(server, dir)
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const sessions = yield* Sessions.Sessions
        for (const p of providers) yield* login(server, p)
        const initial = new Map<string, number>()
        for (const p of providers) initial.set(p, (yield* store.get(p)).generation)
        const before = server.counters()

        const workers = Array.from({ length: workerCount }, (_, i) =>
          Workers.start(contention, [String(i), String(seconds * 1000), ...providers], env))
        // No deadlock: every worker finishes within a bound after the deadline (a lock wait is at most 40 s).
        yield* Effect.forEach(workers, (w) => Workers.exit(w, seconds * 1000 + 60_000), { concurrency: "unbounded" })
        const reports = yield* Effect.forEach(workers, (w) => {
          const line = w.lines().find((l) => l.startsWith("{"))
          assert.isDefined(line, w.output())
          return Schema.decodeUnknownEffect(Report)(line!)
        })
        const after = server.counters()

        for (const r of reports) assert.deepStrictEqual(r.failures, [], `worker ${r.index}`)
        const total = (k: string) => reports.reduce((n, r) => n + (r.counts[k] ?? 0), 0)
        assert.strictEqual(after.refreshInvalidGrant - before.refreshInvalidGrant, 0, "no invalid_grant")
        assert.strictEqual(after.refreshReuseDetected - before.refreshReuseDetected, 0, "no refresh token used twice")
        const serverRefreshes = after.refreshSucceeded - before.refreshSucceeded
        assert.strictEqual(total("refreshed"), serverRefreshes, "every refresh the server made was a Refreshed outcome")
        let stored = 0
        for (const p of providers) stored += (yield* store.get(p)).generation - initial.get(p)!
        assert.strictEqual(stored, serverRefreshes, "every refresh the server made is the one stored: none lost")
        assert.isAbove(serverRefreshes, 0)

        // Own sessions: each ended as its worker last wrote it.
        for (const r of reports) {
          const own = yield* Effect.exit(store.get(`own-${r.index}`))
          assert.strictEqual(own._tag === "Success", r.ownExists)
          if (own._tag === "Success") assert.strictEqual(own.value.generation, r.ownGeneration)
        }
        // Nothing corrupted; the index names every session the records hold, as they are (its entries
        // keep the expiry and generation of their last write: a refresh does not rewrite them).
        const listed = yield* store.list
        assert.notInclude(listed.map((m) => m.state), "corrupted")
        const index = yield* indexListing
        const identity = (m: { readonly id: string; readonly provider: string; readonly state: string; readonly hasRefreshToken: boolean }) =>
          [m.id, m.provider, m.state, m.hasRefreshToken].join(" ")
        assert.deepStrictEqual(index.entries.map(identity).sort(), listed.map(identity).sort())
        // Every grant is alive: one more refresh each works, and its token is active.
        const oauth = yield* OAuthClient.OAuthClient
        for (const p of providers) {
          const outcome = yield* sessions.refresh(p, { force: true })
          assert.strictEqual(outcome._tag, "Refreshed")
          const token = yield* sessions.getAccessToken(p)
          assert.isTrue((yield* oauth.introspect(server.provider, token)).active)
        }
        const ops = total("ops")
        console.info(
          `[hardening] contention: ${workerCount} processes, ${seconds} s, ${ops} operations (${serverRefreshes} refreshes at the server, ${
            total("reused")
          } reuses of another process's refresh, ${total("tokens")} token reads, ${total("ownPuts") + total("scratchPuts")} puts, ${
            total("ownRemoves") + total("scratchRemoves")
          } removes, ${total("lists")} lists); 0 lost, 0 invalid_grant, 0 reuse detected`
        )
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped), seconds * 1000 + 120_000)

  it.live("a lock holder killed in the middle of a refresh is taken over within a bounded time, without invalid_grant", () =>
    Effect.gen(function*() {
      const server = yield* OidcServer.acquire({ accessTokenTtl: 600 })
      const proxy = yield* FaultProxy.acquire(server.issuer)
      const dir = yield* tempDir("mts-takeover-")
      const { env, layer } = setup(server, dir)
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        yield* login(server, "alpha")
        // The grant refreshes through the proxy, whose next request hangs: the holder is stuck mid-refresh.
        const record = yield* store.get("alpha")
        const tokenEndpoint = new URL(record.tokenEndpoint!)
        yield* store.put(new TokenStore.SessionRecord({ ...record, tokenEndpoint: `${proxy.url}${tokenEndpoint.pathname}` }))
        proxy.next(FaultProxy.Faults.hang)
        const before = server.counters()

        const holder = Workers.start(crash, ["refresh", "alpha", "alpha"], env)
        yield* Workers.waitForLine(holder, (l) => l.startsWith("W "), "a refresh", 20_000)
        yield* Effect.callback<void>((resume) => {
          const timer = setInterval(() => proxy.counts().received >= 1 && (clearInterval(timer), resume(Effect.void)), 5)
          return Effect.sync(() => clearInterval(timer))
        }).pipe(Effect.timeout("20 seconds"))
        const waiter = Workers.start(crash, ["refresh", "alpha", "alpha"], env)
        yield* Workers.waitForLine(waiter, (l) => l.startsWith("W "), "a refresh", 20_000)
        yield* Workers.kill(holder)
        // The kernel drops the dead holder's lock; the waiter polls every 100 ms at most.
        const line = yield* Workers.waitForLine(waiter, (l) => l.startsWith("D "), "the waiter's refresh after the kill", 5_000)
        yield* Workers.kill(waiter)
        assert.match(line, /^D alpha Refreshed \d+$/)
        const after = server.counters()
        assert.strictEqual(after.refreshInvalidGrant - before.refreshInvalidGrant, 0)
        assert.strictEqual(after.refreshReuseDetected - before.refreshReuseDetected, 0)
        assert.isAtLeast(after.refreshSucceeded - before.refreshSucceeded, 1)
        assert.isDefined((yield* store.get("alpha")).refreshToken)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))
})
