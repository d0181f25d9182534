/**
 * Secrets stay where they belong: the data key and the tokens never reach
 * the argv or the environment of a process the CLI starts (the browser
 * opener gets the authorization URL and an environment without them:
 * checked from that process's own /proc/<pid>/cmdline and environ), and
 * never land in a temp file, in TMPDIR or beside the records, in clear.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { makeHome, runCli, startCli, tokenResponse } from "../support/Cli.js"
import { walk } from "../support/hardening/Stores.js"
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

const key = Buffer.alloc(32, 7)
const clientSecret = "client-SECRET-0123456789abcdef"

const setup = () => {
  const { home, config } = makeHome(`auth:
  oauth:
    providers:
      local:
        issuer: "${server.issuer}"
        client_id: "${server.clientId}"
        scopes: ["openid", "offline_access"]
      conf:
        issuer: "${server.issuer}"
        client_id: "${server.confidentialClientId}"
        client_secret_env: MTS_TEST_CLIENT_SECRET
  session_persistence:
    token_storage:
      storage_backend: filesystem
      encryption_key_source: env
`)
  homes.push(home)
  const tmp = NodePath.join(home, "tmp")
  const bin = NodePath.join(home, "bin")
  const seen = NodePath.join(home, "opener")
  for (const d of [tmp, bin, seen]) Fs.mkdirSync(d, { mode: 0o700 })
  // A browser opener that records what it was given, from the kernel's view of its own process.
  for (const name of ["xdg-open", "open"]) {
    Fs.writeFileSync(
      NodePath.join(bin, name),
      `#!/bin/sh\ncat /proc/$$/environ > "${seen}/environ.tmp"\ncat /proc/$$/cmdline > "${seen}/cmdline"\nmv "${seen}/environ.tmp" "${seen}/environ"\n`,
      { mode: 0o755 }
    )
  }
  const env = {
    HOME: home,
    TMPDIR: tmp,
    PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}`,
    DISPLAY: ":0",
    MAGICTUNNEL_CONFIG_PATH: config,
    MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key.toString("base64"),
    MTS_TEST_CLIENT_SECRET: clientSecret
  }
  return { home, tmp, seen, env }
}

const waitFor = async (file: string, timeoutMs = 10_000) => {
  for (let waited = 0; !Fs.existsSync(file); waited += 20) {
    if (waited > timeoutMs) throw new Error(`${file} did not appear`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Every file under `root` whose bytes contain one of `needles` (as text, or raw for buffers). */
const filesContaining = (root: string, needles: ReadonlyArray<string | Buffer>) =>
  walk(root).filter((e) => !e.dir).filter((e) => {
    const bytes = Fs.readFileSync(e.path)
    return needles.some((n) => bytes.includes(typeof n === "string" ? Buffer.from(n) : n))
  }).map((e) => e.path)

describe("secrets", () => {
  it("the browser opener gets the URL only: no key, token or client secret in its argv or environment", async () => {
    const { env, seen } = setup()
    const cli = startCli(["login", "local", "--json"], { env })
    const { url } = JSON.parse(await cli.line((l) => l.includes("authorization_url")))
    await waitFor(NodePath.join(seen, "environ"))
    assert.strictEqual(await server.approve(url), 200)
    const result = await cli.done
    assert.strictEqual(result.code, 0, result.stderr)

    const argv = Fs.readFileSync(NodePath.join(seen, "cmdline"), "utf8").split("\0").filter((a) => a.length > 0)
    assert.deepStrictEqual(argv.slice(-2), [NodePath.join(env.HOME, "bin", "xdg-open"), url], "the opener and the URL, nothing else")
    const environ = Fs.readFileSync(NodePath.join(seen, "environ"), "utf8").split("\0").filter((a) => a.length > 0)
    assert.isAbove(environ.length, 0)
    const names = environ.map((e) => e.split("=")[0])
    assert.include(names, "DISPLAY", "what a browser needs is passed on")
    assert.include(names, "HOME")
    const all = environ.join("\n")
    for (const secret of [key.toString("base64"), clientSecret]) assert.notInclude(all, secret)
    assert.deepStrictEqual(names.filter((n) => n?.startsWith("MAGICTUNNEL_")), [])
    assert.notInclude(all, "MTS_TEST_CLIENT_SECRET")
    // The URL itself carries no secret either (PKCE sends only the challenge).
    for (const secret of [key.toString("base64"), clientSecret]) assert.notInclude(url, secret)
    assert.notInclude(url, "code_verifier")
  })

  it("import, token, refresh, list, status and logout leave no secret in TMPDIR or in any file in clear", async () => {
    const { env, home, tmp } = setup()
    const imported = await runCli(["import", "local"], { env, stdin: tokenResponse("scan") })
    assert.strictEqual(imported.code, 0, imported.stderr)
    // A real grant too, refreshed (rotating) so that new tokens are written.
    const cli = startCli(["login", "local", "--no-browser", "--json", "--scope", "openid", "--scope", "offline_access", "--resource", server.resource], { env })
    const { url } = JSON.parse(await cli.line((l) => l.includes("authorization_url")))
    await server.approve(url)
    const logged = await cli.done
    assert.strictEqual(logged.code, 0, logged.stderr)
    const tokens: Array<string> = ["at-scan-SECRETVALUE", "rt-scan-SECRETVALUE"]
    for (const args of [["token", "local"], ["refresh", "--all", "--force", "--json"], ["list", "--json"], ["status", "--json"], ["doctor", "--json"]]) {
      const r = await runCli(args, { env })
      if (args[0] === "token") {
        assert.strictEqual(r.code, 0, r.stderr)
        tokens.push(r.stdout.trim())
      }
      assert.deepStrictEqual(Fs.readdirSync(tmp), [], `${args.join(" ")} left something in TMPDIR`)
    }
    const needles = [...tokens, key.toString("base64"), key, clientSecret]
    assert.deepStrictEqual(filesContaining(tmp, needles), [], "no secret in TMPDIR")
    assert.deepStrictEqual(filesContaining(NodePath.join(home, ".magictunnel"), needles), [], "no secret in clear on disk")
    // The launcher's code cache (bytecode, in ~/.cache) was written by these runs and holds none either.
    assert.isNotEmpty(Fs.readdirSync(NodePath.join(home, ".cache", "magictunnel-session", "code-cache")))
    assert.deepStrictEqual(filesContaining(NodePath.join(home, ".cache"), needles), [], "no secret in the code cache")
    assert.deepStrictEqual(walk(NodePath.join(home, ".magictunnel")).filter((e) => e.path.includes(".tmp-")), [], "no temp file left")
    const out = await runCli(["logout", "local", "--json"], { env })
    assert.strictEqual(out.code, 0, out.stderr)
    assert.deepStrictEqual(filesContaining(tmp, needles), [])
    assert.deepStrictEqual(filesContaining(home, [...tokens, key.toString("base64"), clientSecret]).filter((p) => !p.startsWith(NodePath.join(home, "bin"))), [])
  })
})
