/**
 * The launcher's code cache (scripts/launcher.cjs, docs/cli.md "The code
 * cache"): written after a command succeeded, in a directory only the user
 * can write, used by later starts, never trusted when others could have
 * written it, never holding a secret, and never changing what a command does.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { cliEnv, makeHome, runCli, tokenResponse } from "../support/Cli.js"

const homes: Array<string> = []
afterEach(() => {
  for (const h of homes.splice(0)) Fs.rmSync(h, { recursive: true, force: true })
})

/** A HOME with a session for `demo`, and where the cache goes when NODE_COMPILE_CACHE is `<home>/cc`. */
const setup = async () => {
  const { home, config } = makeHome()
  homes.push(home)
  const env = { ...cliEnv(home, config), NODE_COMPILE_CACHE: Path.join(home, "cc") }
  const imported = await runCli(["import", "demo"], { env, stdin: tokenResponse("cache") })
  assert.strictEqual(imported.code, 0, imported.stderr)
  return { home, env, dir: Path.join(home, "cc", "mtsession") }
}

const filesOf = (dir: string) => Fs.existsSync(dir) ? Fs.readdirSync(dir).sort() : []
const tokenFile = (dir: string) => {
  const files = filesOf(dir).filter((f) => f.startsWith("token-"))
  assert.strictEqual(files.length, 1, `one cache file of token in ${filesOf(dir).join(", ")}`)
  return Path.join(dir, files[0]!)
}

describe("the code cache", () => {
  it("a command that succeeded leaves its cache, private, without the token; the next start uses it as it is", async () => {
    const { dir, env } = await setup()
    const first = await runCli(["token", "demo"], { env })
    assert.strictEqual(first.code, 0, first.stderr)
    assert.strictEqual(first.stdout, "at-cache-SECRETVALUE\n")
    const file = tokenFile(dir)
    assert.strictEqual(Fs.statSync(dir).mode & 0o777, 0o700)
    assert.strictEqual(Fs.statSync(file).mode & 0o777, 0o600)
    const bytes = Fs.readFileSync(file)
    assert.isAbove(bytes.length, 100_000)
    for (const secret of ["at-cache-SECRETVALUE", "rt-cache-SECRETVALUE"]) assert.isFalse(bytes.includes(secret), secret)

    // V8 took it: the launcher rewrites a cache only when there was none or V8 turned it down.
    const before = Fs.statSync(file)
    const second = await runCli(["token", "demo"], { env })
    assert.strictEqual(second.stdout, first.stdout)
    const after = Fs.statSync(file)
    assert.deepStrictEqual([after.ino, after.mtimeMs], [before.ino, before.mtimeMs])
    assert.deepStrictEqual(filesOf(dir).filter((f) => f.startsWith(".")), [], "no temporary file left")
  })

  it("a damaged cache file changes nothing the command does, and is written anew", async () => {
    const { dir, env } = await setup()
    assert.strictEqual((await runCli(["token", "demo"], { env })).code, 0)
    const file = tokenFile(dir)
    const size = Fs.statSync(file).size
    for (const damage of [Buffer.alloc(size, 0x41), Fs.readFileSync(file).subarray(0, 1000)]) {
      Fs.writeFileSync(file, damage)
      const r = await runCli(["token", "demo"], { env })
      assert.strictEqual(r.code, 0, r.stderr)
      assert.strictEqual(r.stdout, "at-cache-SECRETVALUE\n")
      assert.strictEqual(r.stderr, "")
      const rewritten = Fs.readFileSync(tokenFile(dir))
      assert.isAbove(rewritten.length, 100_000)
      assert.isFalse(rewritten.equals(damage))
    }
  })

  it("a cache directory others can write is neither used nor written", async () => {
    const { dir, env } = await setup()
    Fs.rmSync(dir, { recursive: true, force: true })
    Fs.mkdirSync(dir, { recursive: true })
    Fs.chmodSync(dir, 0o777)
    const r = await runCli(["token", "demo"], { env })
    assert.strictEqual(r.code, 0, r.stderr)
    assert.strictEqual(r.stdout, "at-cache-SECRETVALUE\n")
    assert.deepStrictEqual(filesOf(dir), [])
  })

  it("a failed command writes no cache; NODE_DISABLE_COMPILE_CACHE=1 writes none", async () => {
    const { dir, env } = await setup()
    const unknown = await runCli(["token", "nobody"], { env })
    assert.strictEqual(unknown.code, 2, unknown.stderr)
    assert.deepStrictEqual(filesOf(dir).filter((f) => f.startsWith("token-")), [])
    const disabled = await runCli(["token", "demo"], { env: { ...env, NODE_DISABLE_COMPILE_CACHE: "1" } })
    assert.strictEqual(disabled.code, 0, disabled.stderr)
    assert.deepStrictEqual(filesOf(dir).filter((f) => f.startsWith("token-")), [])
  })

  it("a cache directory that cannot be made: this user's own in TMPDIR instead, used from then on", async () => {
    const { home, env } = await setup()
    const { NODE_COMPILE_CACHE: _, ...plain } = env
    const blocked = Path.join(home, "not-a-directory")
    Fs.writeFileSync(blocked, "")
    const tmp = Path.join(home, "tmp")
    Fs.mkdirSync(tmp)
    const run = { env: { ...plain, XDG_CACHE_HOME: blocked, TMPDIR: tmp } }
    const first = await runCli(["token", "demo"], run)
    assert.strictEqual(first.stdout, "at-cache-SECRETVALUE\n", first.stderr)
    const fallback = Path.join(tmp, `magictunnel-session-code-cache-${process.getuid!()}`)
    const file = tokenFile(fallback)
    assert.strictEqual(Fs.statSync(fallback).mode & 0o777, 0o700)
    const before = Fs.statSync(file)
    assert.strictEqual((await runCli(["token", "demo"], run)).stdout, first.stdout)
    assert.strictEqual(Fs.statSync(file).mtimeMs, before.mtimeMs, "read, not written again")
  })

  it("without NODE_COMPILE_CACHE it goes to the user's cache directory, XDG_CACHE_HOME when set", async () => {
    const { home, env } = await setup()
    const { NODE_COMPILE_CACHE: _, ...plain } = env
    assert.strictEqual((await runCli(["status"], { env: plain })).code, 0)
    assert.lengthOf(filesOf(Path.join(home, ".cache", "magictunnel-session", "code-cache")).filter((f) => f.startsWith("status-")), 1)
    const xdg = Path.join(home, "xdg-cache")
    assert.strictEqual((await runCli(["status"], { env: { ...plain, XDG_CACHE_HOME: xdg } })).code, 0)
    assert.lengthOf(filesOf(Path.join(xdg, "magictunnel-session", "code-cache")).filter((f) => f.startsWith("status-")), 1)
  })
})
