/**
 * The leak test: every CLI command, and the status endpoints of `run`,
 * against a real authorization server, with tracing exported to a real
 * OTLP/HTTP receiver and the audit log on. The token values the server
 * issued are read back from the store (the only place allowed to hold them);
 * none may appear in stdout (except `mtsession token`'s), stderr, the audit
 * log, the exported spans, error messages or any file but the store's records.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect, Layer, Redacted } from "effect"
import * as TokenStore from "../../src/TokenStore.js"
import { type CliResult, makeHome, runCli, startCli } from "../support/Cli.js"
import * as OidcServer from "../support/OidcServer.js"
import * as OtlpReceiver from "../support/OtlpReceiver.js"
import { fileConfig, stack } from "../support/SessionsStack.js"

let server: OidcServer.OidcServer
let receiver: Awaited<ReturnType<typeof OtlpReceiver.start>>
let home: string
beforeAll(async () => {
  server = await OidcServer.start({ accessTokenTtl: 120 })
  receiver = await OtlpReceiver.start()
})
afterAll(async () => {
  await server?.close()
  await receiver?.close()
  if (home !== undefined) Fs.rmSync(home, { recursive: true, force: true })
})

const keyBase64 = Buffer.alloc(32, 7).toString("base64")

/** Every secret the store holds now (access, refresh and ID tokens of every session). */
const storeSecrets = (configPath: string) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      const out: Array<string> = []
      for (const m of yield* store.list) {
        const r = yield* store.get(m.id).pipe(Effect.option)
        if (r._tag === "None") continue
        for (const s of [r.value.accessToken, r.value.refreshToken, r.value.idToken]) if (s !== undefined) out.push(Redacted.value(s))
      }
      return out
    }).pipe(Effect.provide(stack(fileConfig(configPath, keyBase64)).pipe(Layer.fresh)))
  )

const walk = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(Path.join(dir, e.name)) : [Path.join(dir, e.name)]
  )

describe("no secret leaks", () => {
  it("through any CLI command, the status endpoints, the audit log, spans or files", async () => {
    const made = makeHome(`auth:
  oauth:
    providers:
      local:
        issuer: "${server.issuer}"
        client_id: "${server.clientId}"
        scopes: ["openid", "offline_access"]
  session_persistence:
    user_context:
      session_directory: "HOME_DIR/sessions"
    token_storage:
      storage_backend: filesystem
      encryption_key_source: env
    observability:
      metrics_exporter: prometheus
`)
    home = made.home
    // The test process reads the same store, so the session directory is named, not derived from HOME.
    Fs.writeFileSync(made.config, Fs.readFileSync(made.config, "utf8").replace("HOME_DIR", home))
    const auditPath = Path.join(home, "logs", "audit.log")
    const env = {
      HOME: home,
      MAGICTUNNEL_CONFIG_PATH: made.config,
      MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: keyBase64,
      MAGICTUNNEL_AUDIT_LOG_PATH: auditPath,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: "mtsession-leaks"
    }
    const secrets = new Set<string>([keyBase64])
    const collect = async () => {
      for (const s of await storeSecrets(made.config)) secrets.add(s)
    }
    const outputs: Array<{ readonly what: string; readonly text: string }> = []
    const record = (what: string, r: CliResult, stdoutMayHoldToken = false) => {
      outputs.push({ what: `${what} stderr`, text: r.stderr })
      if (!stdoutMayHoldToken) outputs.push({ what: `${what} stdout`, text: r.stdout })
      return r
    }
    const cli = async (args: ReadonlyArray<string>, expectCode = 0) => {
      const r = record(args.join(" "), await runCli(args, { env }))
      assert.strictEqual(r.code, expectCode, `${args.join(" ")}: ${r.stderr}`)
      await collect()
      return r
    }

    // login (authorization code + PKCE)
    const login = startCli(["login", "local", "--no-browser", "--json"], { env })
    const { url } = JSON.parse(await login.line((l) => l.includes("authorization_url")))
    assert.strictEqual(await server.approve(url), 200)
    record("login", await login.done)
    await collect()
    assert.isAtLeast(secrets.size, 3)

    // token: its stdout is the one place a token belongs.
    const token = record("token", await runCli(["token", "local"], { env }), true)
    assert.strictEqual(token.code, 0)
    assert.isTrue(secrets.has(token.stdout.trim()), "the token printed is the stored one")
    record("token --min-ttl", await runCli(["token", "local", "--min-ttl", "3600"], { env }), true)
    await collect()

    for (const args of [["list"], ["list", "--json"], ["status"], ["status", "--json"], ["refresh", "--all", "--force", "--json"]]) {
      await cli(args)
    }
    await cli(["recover", "--json"])
    await cli(["recover", "--validate", "--json"])
    await cli(["doctor", "--json"], (await runCli(["doctor", "--json"], { env })).code ?? 0)
    await cli(["config", "show"])
    await cli(["config", "show", "--json"])
    await cli(["token", "nope"], 2)

    // run, with its status endpoints.
    const daemon = startCli(["run", "--status-port", "0"], { env })
    const deadline = Date.now() + 20_000
    while (!/status server on (http:\/\/\S+)\//.test(daemon.stderr()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
    }
    const base = /status server on (http:\/\/\S+)\//.exec(daemon.stderr())?.[1]
    assert.isDefined(base, daemon.stderr())
    for (const path of ["/health/auth", "/status", "/metrics", "/"]) {
      const res = await fetch(`${base}${path}`)
      assert.strictEqual(res.status, 200, path)
      outputs.push({ what: `GET ${path}`, text: await res.text() })
    }
    const metrics = outputs.find((o) => o.what === "GET /metrics")!.text
    assert.include(metrics, "mtsession_sessions", metrics)
    daemon.kill("SIGTERM")
    record("run", await daemon.done)

    // Errors that involve the session: a rotated-out refresh token replayed (needs_reauth).
    await cli(["logout", "local", "--json"])
    await cli(["token", "local"], 3)

    // The audit log has the session's story, and no secret.
    const audit = Fs.readFileSync(auditPath, "utf8")
    const events = audit.trim().split("\n").map((l) => JSON.parse(l).event)
    for (const e of ["login", "refresh", "rotation", "recovery", "revocation", "logout"]) assert.include(events, e)
    assert.strictEqual(Fs.statSync(auditPath).mode & 0o777, 0o600)
    outputs.push({ what: "audit log", text: audit })

    // Spans reached the receiver, and carry no secret.
    await new Promise((r) => setTimeout(r, 200))
    assert.isTrue(receiver.spans().some((s) => s.name === "Sessions.refreshGrant"))
    outputs.push({ what: "exported telemetry", text: receiver.bodies().join("\n") })

    // Every file under HOME, the store's records included: they are sealed, so no secret shows in them either.
    for (const file of walk(home)) {
      outputs.push({ what: `file ${Path.relative(home, file)}`, text: Fs.readFileSync(file).toString("latin1") })
    }

    assert.isAtLeast(secrets.size, 7, "the refreshes issued new tokens")
    // The authorization code and the PKCE verifier of the login must not show anywhere either.
    const protocol = server.protocolSecrets()
    assert.isAtLeast(protocol.length, 2, "the login's code and verifier were seen at the token endpoint")
    for (const s of protocol) secrets.add(s)
    for (const { text, what } of outputs) {
      for (const secret of secrets) {
        assert.isFalse(text.includes(secret), `${what} contains a secret`)
      }
    }
  })
})
