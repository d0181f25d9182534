/**
 * The CLI's session commands against a real authorization server
 * (oidc-provider on 127.0.0.1): login by both grants, token, refresh, status
 * and logout, each as a separate process, the way scripts use them.
 */
import { afterAll, beforeAll, assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { makeHome, runCli, startCli } from "../support/Cli.js"
import * as OidcServer from "../support/OidcServer.js"

let server: OidcServer.OidcServer
const homes: Array<string> = []
beforeAll(async () => {
  server = await OidcServer.start({ accessTokenTtl: 120 })
})
afterAll(async () => {
  await server?.close()
  for (const h of homes) Fs.rmSync(h, { recursive: true, force: true })
})

const setup = (oidc: OidcServer.OidcServer = server) => {
  const { home, config } = makeHome(`auth:
  oauth:
    providers:
      local:
        issuer: "${oidc.issuer}"
        client_id: "${oidc.clientId}"
        scopes: ["openid", "offline_access"]
  session_persistence:
    token_storage:
      storage_backend: filesystem
`)
  homes.push(home)
  return {
    home,
    env: {
      HOME: home,
      MAGICTUNNEL_CONFIG_PATH: config,
      MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString("base64")
    }
  }
}

const loginWithCode = async (env: Record<string, string>, oidc: OidcServer.OidcServer = server) => {
  const cli = startCli(["login", "local", "--no-browser", "--json"], { env })
  const urlLine = await cli.line((l) => l.includes("authorization_url"))
  const { url } = JSON.parse(urlLine)
  assert.strictEqual(await oidc.approve(url), 200)
  const result = await cli.done
  assert.strictEqual(result.code, 0, result.stderr)
  const events = result.stdout.trim().split("\n").map((l) => JSON.parse(l))
  assert.deepStrictEqual(events.map((e) => e.event), ["authorization_url", "logged_in"])
  return events[1].session
}

describe("mtsession session commands on a real authorization server", () => {
  it("login (code + PKCE), then token in a new process, then logout revokes and removes", async () => {
    const { env } = setup()
    const session = await loginWithCode(env)
    assert.strictEqual(session.provider, "local")
    assert.strictEqual(session.state, "active")
    assert.strictEqual(session.subject, server.accountId)
    assert.isTrue(session.has_refresh_token)

    const token = await runCli(["token", "local"], { env })
    assert.strictEqual(token.code, 0, token.stderr)
    assert.match(token.stdout, /^[A-Za-z0-9_\-.~+/=]{20,}\n$/, "only the token and a newline")

    // min-ttl beyond the token's lifetime forces a refresh, which rotates the refresh token.
    const before = server.counters().refreshSucceeded
    const fresh = await runCli(["token", "local", "--min-ttl", "3600"], { env })
    assert.strictEqual(fresh.code, 0, fresh.stderr)
    assert.notStrictEqual(fresh.stdout, token.stdout)
    assert.strictEqual(server.counters().refreshSucceeded, before + 1)
    assert.strictEqual(server.counters().refreshReuseDetected, 0)

    const out = await runCli(["logout", "local", "--json"], { env })
    assert.strictEqual(out.code, 0, out.stderr)
    assert.deepStrictEqual(JSON.parse(out.stdout).removed.map((r: { revoked: string }) => r.revoked), ["revoked"])
    const after = await runCli(["token", "local"], { env })
    assert.strictEqual(after.code, 3, "no session: re-authentication needed")
    assert.strictEqual(after.stdout, "")
    assert.include(after.stderr, "mtsession login local")
  })

  it("login with the device grant prints the code events and stores the session", async () => {
    const { env } = setup()
    const cli = startCli(["login", "local", "--device", "--json"], { env })
    const codeLine = await cli.line((l) => l.includes("device_code"))
    const code = JSON.parse(codeLine)
    for (const k of ["verification_uri", "verification_uri_complete", "user_code", "expires_in", "interval"]) {
      assert.property(code, k)
    }
    await server.approveDevice(code.user_code)
    const result = await cli.done
    assert.strictEqual(result.code, 0, result.stderr)
    const listed = JSON.parse((await runCli(["list", "--json"], { env })).stdout)
    assert.strictEqual(listed.length, 1)
    assert.strictEqual(listed[0].state, "active")
  })

  it("refresh --all rotates once; a stale copy of a rotated refresh token ends in needs_reauth and exit 3", async () => {
    const { home, env } = setup()
    await loginWithCode(env)
    const sessions = Path.join(home, ".magictunnel", "sessions")
    const backup = Path.join(home, "backup")
    Fs.cpSync(sessions, backup, { recursive: true })

    const r = await runCli(["refresh", "--all", "--force", "--json"], { env })
    assert.strictEqual(r.code, 0, r.stderr)
    assert.deepStrictEqual(JSON.parse(r.stdout).sessions.map((s: { outcome: string }) => s.outcome), ["refreshed"])

    // A restored backup holds the refresh token that was just rotated out: the server refuses it.
    Fs.rmSync(sessions, { recursive: true })
    Fs.cpSync(backup, sessions, { recursive: true })
    const stale = await runCli(["refresh", "local", "--force", "--json"], { env })
    assert.strictEqual(stale.code, 3, stale.stderr)
    assert.deepStrictEqual(JSON.parse(stale.stdout).sessions.map((s: { outcome: string }) => s.outcome), ["needs_reauth"])
    const listed = JSON.parse((await runCli(["list", "--json"], { env })).stdout)
    assert.strictEqual(listed[0].state, "needs_reauth")
    const token = await runCli(["token", "local", "--min-ttl", "0"], { env })
    assert.strictEqual(token.code, 3)
    assert.strictEqual(token.stdout, "")
  })

  it("token for an unknown provider exits 2; with no session exits 3 and prints nothing on stdout", async () => {
    const { env } = setup()
    const unknown = await runCli(["token", "nope"], { env })
    assert.strictEqual(unknown.code, 2)
    const none = await runCli(["token", "local"], { env })
    assert.strictEqual(none.code, 3)
    assert.strictEqual(none.stdout, "")
  })

  it("status and recover report every session; run recovers an expired session at startup and stops cleanly on SIGTERM", async () => {
    const shortLived = await OidcServer.start({ accessTokenTtl: 2 })
    try {
      const { env } = setup(shortLived)
      await loginWithCode(env, shortLived)
      const status = await runCli(["status", "--json"], { env })
      assert.strictEqual(status.code, 0, status.stderr)
      const doc = JSON.parse(status.stdout)
      assert.strictEqual(doc.backend, "filesystem")
      assert.isFalse(doc.insecure)
      assert.strictEqual(doc.sessions.length, 1)
      assert.property(doc.sessions[0], "last_refresh_at")
      assert.property(doc.sessions[0], "last_error")

      await new Promise((r) => setTimeout(r, 2500)) // the access token expires
      const before = shortLived.counters().refreshSucceeded
      const daemon = startCli(["run"], { env })
      const deadline = Date.now() + 20_000
      while (!daemon.stderr().includes("refresh supervisor running") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
      }
      assert.strictEqual(shortLived.counters().refreshSucceeded, before + 1, daemon.stderr())
      daemon.kill("SIGTERM")
      const ended = await daemon.done
      assert.strictEqual(ended.code, 0, ended.stderr)
      assert.include(ended.stderr, "refreshed")
      assert.notInclude(ended.stderr + ended.stdout, "ExperimentalWarning")

      const recovered = await runCli(["recover", "--json"], { env })
      assert.strictEqual(recovered.code, 0, recovered.stderr)
      const report = JSON.parse(recovered.stdout)
      for (const k of ["recovered", "refreshed", "needs_reauth", "failed"]) assert.typeOf(report[k], "number")
      assert.strictEqual(report.sessions.length, 1)
      assert.include(["recovered", "refreshed"], report.sessions[0].outcome)
      assert.strictEqual(shortLived.counters().refreshReuseDetected, 0)
    } finally {
      await shortLived.close()
    }
  })
})
