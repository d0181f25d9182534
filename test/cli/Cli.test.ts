/**
 * The CLI as scripts use it: separate processes, exit codes, `--json`
 * contracts, and no secret on any output.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { cliEnv, defaultConfig, makeHome, runCli, tokenResponse } from "../support/Cli.js"

const homes: Array<string> = []
afterEach(() => {
  for (const h of homes.splice(0)) Fs.rmSync(h, { recursive: true, force: true })
})

const setup = (yaml?: string) => {
  const { home, config } = makeHome(yaml)
  homes.push(home)
  return { home, config, env: cliEnv(home, config) }
}

const storageDir = (home: string) => {
  const root = Path.join(home, ".magictunnel", "sessions")
  const ns = Fs.readdirSync(root).find((n) => n.startsWith("ns-"))
  assert.isDefined(ns)
  return Path.join(root, ns!)
}

const assertNoSecret = (...outputs: Array<string>) => {
  for (const o of outputs) assert.notInclude(o, "SECRETVALUE")
}

describe("mtsession CLI", () => {
  it("imports a token response and a new process lists it with the --json contract", async () => {
    const { env } = setup()
    const imported = await runCli(["import", "demo", "--json"], { env, stdin: tokenResponse("one") })
    assert.strictEqual(imported.code, 0, imported.stderr)
    assertNoSecret(imported.stdout, imported.stderr)
    assert.strictEqual(JSON.parse(imported.stdout).id, "demo")

    const listed = await runCli(["list", "--json"], { env })
    assert.strictEqual(listed.code, 0, listed.stderr)
    assertNoSecret(listed.stdout, listed.stderr)
    const elements = JSON.parse(listed.stdout)
    assert.strictEqual(elements.length, 1)
    const e = elements[0]
    assert.strictEqual(e.id, "demo")
    assert.strictEqual(e.provider, "demo")
    assert.strictEqual(e.state, "active")
    assert.strictEqual(e.backend, "filesystem")
    assert.deepStrictEqual(e.scopes, ["openid", "offline_access"])
    assert.match(e.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
    const ttl = Date.parse(e.expires_at) - Date.now()
    assert.isTrue(ttl > 3500_000 && ttl <= 3600_000, `expires_at is absolute, about an hour ahead: ${ttl}`)

    const human = await runCli(["list"], { env })
    assert.strictEqual(human.code, 0)
    assert.match(human.stdout, /^PROVIDER\s+SESSION\s+STATE\s+EXPIRES\s+SCOPES\s+BACKEND/m)
    assert.match(human.stdout, /^demo\s+demo\s+active\s+/m)
    assert.notInclude(human.stdout, "\x1b[", "no colour when stdout is not a terminal")
  })

  it("flipping one byte of one session file reports exactly that session as corrupted and keeps the file aside", async () => {
    const { home, env } = setup()
    for (const [provider, extra] of [["demo", []], ["other", []], ["demo", ["--resource", "https://api.example"]]] as const) {
      const r = await runCli(["import", provider, ...extra], { env, stdin: tokenResponse(provider) })
      assert.strictEqual(r.code, 0, r.stderr)
    }
    const dir = storageDir(home)
    const files = Fs.readdirSync(dir).filter((n) => n.endsWith(".session"))
    assert.strictEqual(files.length, 3)
    // Find the file of the "other" session: the one the others do not share.
    const before = JSON.parse((await runCli(["list", "--json"], { env })).stdout) as Array<{ id: string; state: string }>
    assert.deepStrictEqual(before.map((e) => e.state), ["active", "active", "active"])
    const victim = Path.join(dir, files[0]!)
    const bytes = Fs.readFileSync(victim)
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01
    Fs.writeFileSync(victim, bytes)

    const after = await runCli(["list", "--json"], { env })
    assert.strictEqual(after.code, 0, after.stderr)
    const states = JSON.parse(after.stdout) as Array<{ id: string; state: string }>
    assert.strictEqual(states.filter((e) => e.state === "corrupted").length, 1)
    assert.strictEqual(states.filter((e) => e.state === "active").length, 2)
    const kept = Fs.readdirSync(dir).filter((n) => n.includes(".corrupt-"))
    assert.strictEqual(kept.length, 1)
    assert.isTrue(kept[0]!.startsWith(files[0]!))
    // Reported again by a later process, and the others still read.
    const again = JSON.parse((await runCli(["list", "--json"], { env })).stdout) as Array<{ state: string }>
    assert.strictEqual(again.filter((e) => e.state === "corrupted").length, 1)
  })

  it("config show --json gives the effective tree and where each value came from", async () => {
    const { config, env } = setup()
    const r = await runCli(["config", "show", "--json"], {
      env: { ...env, MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD: "7" }
    })
    assert.strictEqual(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.strictEqual(doc.session_persistence.token_refresh.refresh_threshold_minutes, 7)
    assert.strictEqual(doc.sources["token_refresh.refresh_threshold_minutes"], "env:MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD")
    assert.strictEqual(doc.session_persistence.token_storage.storage_backend, "filesystem")
    assert.strictEqual(doc.sources["token_storage.storage_backend"], "file")
    assert.strictEqual(doc.sources["token_refresh.concurrent_refresh_limit"], "default")
    assert.notInclude(r.stdout, Buffer.alloc(32, 7).toString("base64"))
    const human = await runCli(["config", "show"], { env })
    assert.include(human.stdout, `${config}:`)
  })

  it("bad configuration exits 2 naming the key, where it came from and what was expected", async () => {
    const { env } = setup(defaultConfig.replace("storage_backend: filesystem", "storage_backend: filesystem\n      max_tokens_per_providr: 4"))
    const typo = await runCli(["config", "validate"], { env })
    assert.strictEqual(typo.code, 2)
    assert.include(typo.stderr, "max_tokens_per_providr")
    assert.match(typo.stderr, /config\.yaml:\d+/)
    assert.include(typo.stderr, "max_tokens_per_provider")

    const badEnv = await runCli(["list"], { env: { ...env, MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT: "lots" } })
    assert.strictEqual(badEnv.code, 2)
    assert.include(badEnv.stderr, "MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT")

    const ok = await runCli(["config", "validate", "--json"], { env: setup().env })
    assert.strictEqual(ok.code, 0, ok.stderr)
    assert.strictEqual(JSON.parse(ok.stdout).valid, true)
  })

  it("import refuses unknown providers and bad token responses without echoing them", async () => {
    const { env } = setup()
    const unknown = await runCli(["import", "nope"], { env, stdin: tokenResponse("x") })
    assert.strictEqual(unknown.code, 2)
    assert.include(unknown.stderr, "demo")
    const bad = await runCli(["import", "demo"], { env, stdin: '{"access_token":"at-SECRETVALUE","expires_in":-4}' })
    assert.strictEqual(bad.code, 2)
    assert.include(bad.stderr, "token_type")
    assertNoSecret(bad.stdout, bad.stderr)
    const empty = await runCli(["import", "demo", "--json"], { env, stdin: "" })
    assert.strictEqual(empty.code, 2)
    assert.strictEqual(JSON.parse(empty.stderr).error.code, 2)
  })

  it("a group-writable session directory is refused with exit 4 and the fix", async () => {
    const { home, env } = setup()
    const dir = Path.join(home, ".magictunnel", "sessions")
    Fs.mkdirSync(dir, { recursive: true })
    Fs.chmodSync(dir, 0o777)
    const r = await runCli(["list"], { env })
    assert.strictEqual(r.code, 4)
    assert.include(r.stderr, `chmod 700 ${dir}`)
  })

  it("doctor --json reports the selected backend, every backend and the problems", async () => {
    const { env } = setup()
    const r = await runCli(["doctor", "--json"], { env: { ...env, MAGICTUNNEL_TOKEN_ENCRYPTION_ENABLED: "false" } })
    const doc = JSON.parse(r.stdout)
    assert.strictEqual(doc.selected, "filesystem")
    assert.deepStrictEqual(
      doc.backends.map((b: { name: string }) => b.name).sort(),
      ["credential_manager", "filesystem", "keychain", "memory", "secret_service"]
    )
    for (const b of doc.backends) {
      assert.typeOf(b.available, "boolean")
      assert.typeOf(b.detail, "string")
      assert.isTrue(b.latency_ms === null || typeof b.latency_ms === "number")
    }
    assert.isTrue(doc.backends.find((b: { name: string }) => b.name === "filesystem").available)
    assert.isTrue(doc.problems.some((p: { message: string }) => p.message.includes("plaintext")))
    assert.strictEqual(r.code, 1, "problems found")
  })

  it("a reader that closes the pipe early ends the command quietly with 141, as SIGPIPE would", async () => {
    const { env } = setup()
    const result = await runCli(["config", "show"], { env, closeStdout: true })
    assert.strictEqual(result.code, 141)
    assert.notInclude(result.stderr, "EPIPE")
    assert.notInclude(result.stderr, "    at ", "no stack trace")
  })

  it("prints help and exits 0; an unknown command exits 2", async () => {
    const { env } = setup()
    const help = await runCli(["--help"], { env })
    assert.strictEqual(help.code, 0)
    for (const c of ["list", "import", "doctor", "config"]) assert.include(help.stdout, c)
    const bad = await runCli(["frobnicate"], { env })
    assert.strictEqual(bad.code, 2)
  })
})
