/**
 * What a command evaluates at start, which is most of its cold start: each
 * command's body is imported when it runs (src/cli/Handler.ts) and bundled as
 * a lazily initialised module, so `token` and `status` evaluate neither the
 * login flow, nor the status server, nor MCP, nor a backend they do not use,
 * and `--help` no command body at all. Read from V8's coverage of the bundle
 * (support/Evaluated.ts) and from the built-ins the process required.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Os from "node:os"
import { cliEnv, cliPath, makeHome, runCli, tokenResponse } from "../support/Cli.js"
import { evaluation } from "../support/Evaluated.js"

const hook = Path.resolve(import.meta.dirname, "trace-modules.mjs")
const homes: Array<string> = []
afterEach(() => {
  for (const h of homes.splice(0)) Fs.rmSync(h, { recursive: true, force: true })
})

const setup = () => {
  const { home, config } = makeHome()
  homes.push(home)
  return cliEnv(home, config)
}

/** What a CLI call evaluated: `evaluated(module)`, and the `node:` built-ins it required. */
const modulesOf = (args: ReadonlyArray<string>, env: Record<string, string>) => {
  const coverage = Fs.mkdtempSync(Path.join(Os.tmpdir(), "mtsession-coverage-"))
  try {
    const r = spawnSync(process.execPath, ["--import", hook, cliPath, ...args], {
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env, NODE_V8_COVERAGE: coverage },
      cwd: env["HOME"],
      encoding: "utf8",
      timeout: 30_000
    })
    assert.strictEqual(r.status, 0, r.stderr)
    const urls = r.stderr.split("\n").filter((l) => l.startsWith("MODULE ")).map((l) => l.slice("MODULE ".length))
    const evaluated = evaluation(Path.join(Path.dirname(cliPath), "cli.cjs"), coverage)
    return {
      stdout: r.stdout,
      evaluated: (modules: ReadonlyArray<string>) => modules.filter(evaluated),
      builtins: urls.filter((u) => u.startsWith("node:"))
    }
  } finally {
    Fs.rmSync(coverage, { recursive: true, force: true })
  }
}

const handlers = ["config", "doctor", "import", "list", "login", "mcp", "migrate", "recover", "refresh", "run", "status", "token"]
  .map((h) => `src/cli/handlers/${h}.ts`)
/** Modules a read of the file store never needs: other commands' bodies (`status` shares `list`'s reading), the browser flow, the status server, recovery, MCP, the Redis backends. */
const notForReading = [
  ...handlers.filter((h) => !/\/(token|status|list)\.ts$/.test(h)),
  "src/oauth/AuthorizationCode.ts",
  "src/oauth/Loopback.ts",
  "src/StatusServer.ts",
  "src/Recovery.ts",
  "src/mcp/Discovery.ts",
  "src/TokenStore/Redis.ts",
  "src/RedisLock.ts",
  "src/FleetSync.ts"
]

describe("what a CLI call loads", () => {
  it("token loads its own body and the file store, not login, run, MCP, the fleet backends, a terminal or child processes", async () => {
    const env = setup()
    const imported = await runCli(["import", "demo"], { env, stdin: tokenResponse("one") })
    assert.strictEqual(imported.code, 0, imported.stderr)
    const token = modulesOf(["token", "demo"], env)
    assert.match(token.stdout, /^at-one-SECRETVALUE\n$/)
    assert.deepStrictEqual(token.evaluated(["src/cli/handlers/token.ts", "src/Sessions.ts"]), ["src/cli/handlers/token.ts", "src/Sessions.ts"])
    assert.deepStrictEqual(token.evaluated([...notForReading, "src/cli/handlers/list.ts"]), [])
    for (const b of ["node:child_process", "node:readline", "node:sqlite", "node:http", "node:net", "node:tls", "node:zlib"]) {
      assert.notInclude(token.builtins, b)
    }
  })

  it("status reads the store without loading the OAuth client or Sessions", async () => {
    const env = setup()
    const status = modulesOf(["status"], env)
    assert.deepStrictEqual(status.evaluated(["src/cli/handlers/status.ts", "src/cli/handlers/list.ts"]), [
      "src/cli/handlers/status.ts",
      "src/cli/handlers/list.ts"
    ])
    assert.deepStrictEqual(status.evaluated([...notForReading, "src/cli/handlers/token.ts", "src/Sessions.ts", "src/OAuthClient.ts"]), [])
    assert.notInclude(status.builtins, "node:http")
  })

  it("--help loads no command body", () => {
    const help = modulesOf(["--help"], setup())
    assert.include(help.stdout, "token")
    assert.deepStrictEqual(help.evaluated(handlers), [])
  })
})
