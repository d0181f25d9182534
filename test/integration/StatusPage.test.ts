/**
 * The status page in a real headless browser (Debian's chromium, driven by
 * playwright-core): the sessions of a running Sessions stack (real OAuth
 * server, encrypted file store, supervisor) with state, expiry countdown,
 * last refresh and last error, and recent refresh activity. A screenshot is
 * kept under test-artifacts/.
 */
import { assert, layer } from "@effect/vitest"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Context, DateTime, Effect, Layer, Option, Redacted } from "effect"
import { chromium } from "playwright-core"
import * as AuditLog from "../../src/AuditLog.js"
import * as RefreshSupervisor from "../../src/RefreshSupervisor.js"
import * as Sessions from "../../src/Sessions.js"
import * as SessionState from "../../src/SessionState.js"
import * as StatusServer from "../../src/StatusServer.js"
import * as TokenStore from "../../src/TokenStore.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import * as OidcServer from "../support/OidcServer.js"
import { configLayer, newKey, stack } from "../support/SessionsStack.js"
import { loginApproved } from "../support/Login.js"

class Server extends Context.Service<Server, OidcServer.OidcServer>()("test/StatusPage/OidcServer") {}
const ServerLayer = Layer.effect(Server, OidcServer.acquire({ accessTokenTtl: 300 }))

const artifacts = NodePathModule.resolve(import.meta.dirname, "../../test-artifacts")

const login = (provider: string, options: { readonly scopes?: ReadonlyArray<string>; readonly resource?: string } = {}) =>
  Effect.gen(function*() {
    const server = yield* Server
    return (yield* loginApproved(yield* Sessions.Sessions, provider, server.approve, options)).metadata
  })

/** The `status --json` document from the store (what `mtsession run` serves). */
const document = Effect.gen(function*() {
  const store = yield* TokenStore.TokenStore
  const now = yield* DateTime.now
  const listed = yield* store.list
  return {
    backend: store.backend,
    sessions: listed.map((m) => ({
      id: m.id,
      provider: m.provider,
      state: SessionState.of(m, now),
      expires_at: Option.getOrNull(Option.map(m.expiresAt, DateTime.formatIso)),
      last_refresh_at: Option.getOrNull(Option.map(m.lastRefreshAt, DateTime.formatIso)),
      last_error: Option.getOrNull(m.lastError)
    }))
  }
})

layer(ServerLayer, { excludeTestServices: true })("the status page", (it) => {
  it.effect("shows sessions, state, countdown, last refresh, last error and activity; no secret; screenshot", () =>
    Effect.gen(function*() {
      const server = yield* Server
      const dir = yield* tempDir("mts-page-")
      // Memory only: what the page's activity list reads. Below Sessions, as `layers/Main.ts` puts it.
      const audit = Layer.effect(AuditLog.AuditLog, AuditLog.make({ namespace: "alice@host:1000" }))
      const services = RefreshSupervisor.layer.pipe(
        Layer.provideMerge(
          stack(configLayer({ sessionDirectory: NodePathModule.join(dir, "sessions"), key: newKey().bytes, providers: [server.provider] }))
        )
      )
      const html = yield* Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        yield* login("test")
        const api = yield* login("test", { scopes: ["openid", "api:read"], resource: server.resource })
        assert.strictEqual((yield* sessions.refresh("test", { force: true }))._tag, "Refreshed")
        // The resource session's grant died: it shows needs_reauth with the reason.
        const dead = yield* store.get(api.id)
        yield* store.put(new TokenStore.SessionRecord({
          ...dead,
          state: "needs_reauth",
          accessToken: undefined,
          refreshToken: undefined,
          lastError: "invalid_grant: the refresh token was revoked"
        }))
        const secrets: Array<string> = []
        const live = yield* store.get("test")
        for (const s of [live.accessToken, live.refreshToken, live.idToken]) if (s !== undefined) secrets.push(Redacted.value(s))
        const context = yield* Effect.context<TokenStore.TokenStore>()
        const { port } = yield* StatusServer.serve({ port: 0, document: Effect.provideContext(document, context) })
        const base = `http://127.0.0.1:${port}`

        const health = yield* Effect.promise(() => fetch(`${base}/health/auth`).then(async (r) => ({
            status: r.status,
            body: (await r.json()) as { readonly sessions: unknown; readonly supervisor: { readonly alive: boolean } }
          })))
        assert.strictEqual(health.status, 200)
        assert.deepStrictEqual(health.body.sessions, { active: 1, expired: 0, needs_reauth: 1, corrupted: 0 })
        assert.isTrue(health.body.supervisor.alive)
        const metrics = yield* Effect.promise(() => fetch(`${base}/metrics`))
        assert.strictEqual(metrics.status, 404, "no Prometheus export configured")

        const result = yield* Effect.acquireUseRelease(
          Effect.promise(() =>
            chromium.launch({
              executablePath: "/usr/bin/chromium",
              args: [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync"
              ]
            })
          ),
          (browser) =>
            Effect.promise(async () => {
              const page = await browser.newPage({ viewport: { width: 1200, height: 700 } })
              const errors: Array<string> = []
              page.on("pageerror", (e) => errors.push(e.message))
              page.on("console", (m) => m.type() === "error" && errors.push(m.text()))
              await page.goto(base + "/")
              const health = await page.locator("#health").textContent()
              const rows = await page.locator("#sessions tbody tr").evaluateAll((trs: Array<any>) =>
                trs.map((tr): Array<string> => Array.from(tr.querySelectorAll("td"), (td: any) => String(td.textContent ?? "")))
              )
              const first = await page.locator("#sessions tbody tr[data-session='test'] td.countdown").first().textContent()
              await page.waitForTimeout(1300)
              const later = await page.locator("#sessions tbody tr[data-session='test'] td.countdown").first().textContent()
              const activity = await page.locator("#activity tbody").textContent()
              Fs.mkdirSync(artifacts, { recursive: true })
              await page.screenshot({ path: NodePathModule.join(artifacts, "status-page.png"), fullPage: true })
              return { health, rows, first, later, activity, content: await page.content(), errors }
            }),
          // launch() gives every browser a fresh, temporary profile (user-data-dir), removed on close.
          (browser) => Effect.promise(() => browser.close())
        )
        return { ...result, secrets, apiId: api.id }
      }).pipe(Effect.provide(services.pipe(Layer.provideMerge(audit))))

      assert.deepStrictEqual(html.errors, [], "the page's script runs under its content security policy")
      assert.strictEqual(html.health, "healthy")
      assert.strictEqual(html.rows.length, 2)
      const byId = new Map(html.rows.map((r) => [r[1], r]))
      const main = byId.get("test")!
      assert.strictEqual(main[2], "active")
      assert.match(main[3]!, /^in \d+m \d+s$/, "expiry countdown")
      assert.notStrictEqual(main[5], "-", "last refresh shown")
      const reauth = byId.get(html.apiId)!
      assert.strictEqual(reauth[2], "needs_reauth")
      assert.include(reauth[7], "invalid_grant")
      assert.notStrictEqual(html.first, html.later, "the countdown ticks")
      assert.include(html.activity, "refresh")
      assert.include(html.activity, "refreshed")
      assert.isTrue(Fs.statSync(NodePathModule.join(artifacts, "status-page.png")).size > 1000)
      for (const s of html.secrets) assert.notInclude(html.content, s)
    }))
})
