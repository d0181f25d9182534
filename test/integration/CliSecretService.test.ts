/**
 * The CLI on the real Secret Service: `auto` picks it when it answers, a
 * session imported by one process is listed by the next, and the token lives
 * in the Secret Service, not in a file.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { defaultConfig, makeHome, runCli, tokenResponse } from "../support/Cli.js"
import { useSecretService } from "../support/SecretService.js"

const secretService = useSecretService()
const homes: Array<string> = []
afterAll(() => {
  for (const h of homes) Fs.rmSync(h, { recursive: true, force: true })
})

const autoConfig = defaultConfig.replace("storage_backend: filesystem", "storage_backend: auto")

describe("mtsession on the Secret Service", () => {
  it("auto selects secret_service, and a session imported by one process is read by another", async () => {
    const ss = secretService()
    const { home, config } = makeHome(autoConfig)
    homes.push(home)
    const env = { ...ss.env, HOME: home, MAGICTUNNEL_CONFIG_PATH: config }

    const imported = await runCli(["import", "demo", "--json"], { env, stdin: tokenResponse("ss") })
    assert.strictEqual(imported.code, 0, imported.stderr)
    assert.strictEqual(JSON.parse(imported.stdout).backend, "secret_service")
    assert.include(imported.stderr, "storage backend: secret_service", "the choice is logged once")

    const listed = await runCli(["list", "--json"], { env })
    assert.strictEqual(listed.code, 0, listed.stderr)
    const [e] = JSON.parse(listed.stdout)
    assert.strictEqual(e.backend, "secret_service")
    assert.strictEqual(e.state, "active")
    assert.notInclude(listed.stderr, "storage backend:", "logged once, not on every run")

    // No file under the session directory holds the token.
    const files: Array<string> = []
    const walk = (d: string) => {
      for (const n of Fs.readdirSync(d, { withFileTypes: true })) {
        const p = Path.join(d, n.name)
        n.isDirectory() ? walk(p) : files.push(p)
      }
    }
    walk(Path.join(home, ".magictunnel"))
    for (const f of files) assert.notInclude(Fs.readFileSync(f, "latin1"), "SECRETVALUE", f)

    const doctor = await runCli(["doctor", "--json"], { env })
    const doc = JSON.parse(doctor.stdout)
    assert.strictEqual(doc.selected, "secret_service")
    assert.isTrue(doc.backends.find((b: { name: string }) => b.name === "secret_service").available)
    assert.strictEqual(doctor.code, 0, JSON.stringify(doc.problems))
  })

  it("an explicit secret_service backend with no Secret Service exits 4 with the fix, never falls back", async () => {
    const { home, config } = makeHome(defaultConfig.replace("storage_backend: filesystem", "storage_backend: secret_service"))
    homes.push(home)
    const env = { HOME: home, MAGICTUNNEL_CONFIG_PATH: config, DBUS_SESSION_BUS_ADDRESS: "unix:path=/nonexistent/bus" }
    const r = await runCli(["list"], { env })
    assert.strictEqual(r.code, 4, r.stderr)
    assert.include(r.stderr, "fix:")
    assert.isFalse(Fs.readdirSync(Path.join(home, ".magictunnel", "sessions")).some((n) => n === "backend.json"))
  })

  it.effect("the stored secret is visible to the Secret Service itself (not kernel keyutils)", () =>
    Effect.gen(function*() {
      const ss = secretService()
      const found = yield* ss.lookup({ service: "magictunnel" }).pipe(Effect.orElseSucceed(() => Option.none()))
      assert.isTrue(Option.isSome(found))
    }))
})
