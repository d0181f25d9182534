/**
 * What a command loads at start, which is most of its cold start: each
 * command's body is a chunk of its own (src/cli/Handler.ts), so `token` and
 * `status` evaluate neither the login flow, nor the status server, nor MCP,
 * nor a backend they do not use, and `--help` no command body at all.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { cliEnv, cliPath, makeHome, runCli, tokenResponse } from "../support/Cli.js"

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

/** The modules a CLI call loaded (chunk file names without their hash, and `node:` built-ins). */
const modulesOf = (args: ReadonlyArray<string>, env: Record<string, string>) => {
  const r = spawnSync(process.execPath, ["--import", hook, cliPath, ...args], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env },
    cwd: env["HOME"],
    encoding: "utf8",
    timeout: 30_000
  })
  assert.strictEqual(r.status, 0, r.stderr)
  const urls = r.stderr.split("\n").filter((l) => l.startsWith("MODULE ")).map((l) => l.slice("MODULE ".length))
  return {
    stdout: r.stdout,
    chunks: urls.flatMap((u) => {
      const m = /\/dist\/chunks\/([A-Za-z]+)-[A-Z0-9]+\.mjs$/.exec(u)
      return m === null || m[1] === "chunk" ? [] : [m[1]!]
    }),
    builtins: urls.filter((u) => u.startsWith("node:"))
  }
}

/** Bodies and services a read of the file store never needs (`FleetBackends`: the Redis store and its fleet services). */
const notForReading = ["run", "login", "mcp", "doctor", "migrate", "Recovery", "FleetBackends"]

describe("what a CLI call loads", () => {
  it("token loads its own body and the file store, not login, run, MCP, the fleet backends, a terminal or child processes", async () => {
    const env = setup()
    const imported = await runCli(["import", "demo"], { env, stdin: tokenResponse("one") })
    assert.strictEqual(imported.code, 0, imported.stderr)
    const token = modulesOf(["token", "demo"], env)
    assert.match(token.stdout, /^at-one-SECRETVALUE\n$/)
    assert.include(token.chunks, "token")
    for (const c of notForReading) assert.notInclude(token.chunks, c)
    for (const b of ["node:child_process", "node:readline", "node:sqlite", "node:net", "node:tls", "node:zlib"]) {
      assert.notInclude(token.builtins, b)
    }
  })

  it("status reads the store without loading the OAuth client or Sessions", async () => {
    const env = setup()
    const status = modulesOf(["status"], env)
    assert.include(status.chunks, "status")
    for (const c of [...notForReading, "token", "Sessions", "OAuthClient"]) assert.notInclude(status.chunks, c)
    assert.notInclude(status.builtins, "node:http")
  })

  it("--help loads no command body", () => {
    const help = modulesOf(["--help"], setup())
    assert.include(help.stdout, "token")
    assert.deepStrictEqual(help.chunks, [])
  })
})
