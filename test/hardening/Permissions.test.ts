/**
 * Permissions, as another user of the machine would test them: every file
 * 0600 and every directory 0700 whatever the umask (CLI processes under
 * umask 000, and the lock and quarantine files of a store); a session or
 * storage directory or key file that others may write, or that another user
 * owns, refused with the fix named; and a second OS user (`nobody`, uid
 * 65534, spawned with `uid`/`gid`) cannot read the first user's session
 * files, nor use them through the CLI. The tests run as root here; on a
 * machine without root they fail (the second-user test needs it) rather than skip.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { Effect, Layer } from "effect"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as TokenStore from "../../src/TokenStore.js"
import { UserContext } from "../../src/UserContext.js"
import * as MetadataIndex from "../../src/internal/MetadataIndex.js"
import { cliPath, makeHome, tokenResponse } from "../support/Cli.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import { fileStore, walk } from "../support/hardening/Stores.js"
import { sampleRecord } from "../support/TokenStoreConformance.js"

const nobody = { uid: 65534, gid: 65534 }
const homes: Array<string> = []
afterAll(() => {
  for (const h of homes) Fs.rmSync(h, { recursive: true, force: true })
})

const config = `auth:
  oauth:
    providers:
      demo:
        issuer: "http://127.0.0.1:9"
        client_id: "demo-client"
  session_persistence:
    token_storage:
      storage_backend: filesystem
      encryption_key_source: file
`

/** Runs the CLI synchronously with `umask` (via sh), optionally as another user. */
const cli = (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  options: { readonly umask?: string; readonly stdin?: string; readonly as?: { uid: number; gid: number } } = {}
) => {
  const quoted = [process.execPath, cliPath, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")
  const r = spawnSync("/bin/sh", ["-c", `umask ${options.umask ?? "022"}; exec ${quoted}`], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env },
    cwd: Os.tmpdir(),
    input: options.stdin ?? "",
    encoding: "utf8",
    timeout: 30_000,
    ...(options.as ?? {})
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** A home like a real one: 0755, with a config file; the CLI's environment for it. */
const homeWithSession = () => {
  const { home, config: configPath } = makeHome(config)
  homes.push(home)
  Fs.chmodSync(home, 0o755)
  Fs.chmodSync(configPath, 0o644)
  const env = { HOME: home, MAGICTUNNEL_CONFIG_PATH: configPath }
  return { home, env }
}

const assertPrivate = (root: string) => {
  const entries = walk(root)
  assert.isAbove(entries.length, 3)
  for (const e of entries) assert.strictEqual(e.mode, e.dir ? 0o700 : 0o600, `${e.path} is ${e.mode.toString(8)}`)
  return entries
}

describe("permissions", () => {
  for (const umask of ["000", "077", "022"]) {
    it(`umask ${umask}: every file the CLI creates is 0600 and every directory 0700`, () => {
      const { home, env } = homeWithSession()
      const imported = cli(["import", "demo", "--json"], env, { umask, stdin: tokenResponse("perm") })
      assert.strictEqual(imported.code, 0, imported.stderr)
      assert.strictEqual(cli(["list", "--json"], env, { umask }).code, 0)
      cli(["doctor", "--json"], env, { umask })
      const entries = assertPrivate(NodePath.join(home, ".magictunnel"))
      assert.isTrue(entries.some((e) => e.path.endsWith("encryption.key")))
      assert.isTrue(entries.some((e) => e.path.endsWith(".session")))
    })
  }

  it.live("umask 000: lock files, index entries and quarantined records of a store are private too", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-perm-")
      const old = process.umask(0)
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const lock = yield* RefreshLock.RefreshLock
        const user = yield* UserContext
        yield* store.put(sampleRecord(1))
        yield* store.put(sampleRecord(2))
        yield* lock.withLock("provider-1", Effect.void)
        const victim = NodePath.join(user.storageDirectory, MetadataIndex.fileKeyOf("provider-2") + ".session")
        Fs.writeFileSync(victim, "garbage", { mode: 0o600 })
        yield* Effect.exit(store.get("provider-2"))
        const entries = assertPrivate(NodePath.join(home, ".magictunnel"))
        assert.isTrue(entries.some((e) => e.path.endsWith(".lock")))
        assert.isTrue(entries.some((e) => e.path.includes(".corrupt-")))
      }).pipe(
        Effect.provide(Layer.provideMerge(RefreshLock.layerFile, fileStore(home))),
        Effect.ensuring(Effect.sync(() => process.umask(old)))
      )
    }).pipe(Effect.scoped))

  it("a storage directory others may write, or another user owns, is refused with the fix", () => {
    const { home, env } = homeWithSession()
    assert.strictEqual(cli(["import", "demo"], env, { stdin: tokenResponse("a") }).code, 0)
    const sessions = NodePath.join(home, ".magictunnel", "sessions")
    const ns = NodePath.join(sessions, Fs.readdirSync(sessions).find((n) => n.startsWith("ns-"))!)
    Fs.chmodSync(ns, 0o757)
    const loose = cli(["token", "demo"], env)
    assert.strictEqual(loose.code, 4)
    assert.include(loose.stderr, `chmod 700 ${ns}`)
    assert.strictEqual(loose.stdout, "")
    Fs.chmodSync(ns, 0o700)
    Fs.chownSync(ns, nobody.uid, nobody.gid)
    const foreign = cli(["token", "demo"], env)
    assert.strictEqual(foreign.code, 4)
    assert.include(foreign.stderr, "owned by uid 65534")
    assert.include(foreign.stderr, "fix:")
    assert.strictEqual(foreign.stdout, "")
    Fs.chownSync(sessions, nobody.uid, nobody.gid)
    Fs.chownSync(ns, 0, 0)
    const foreignTop = cli(["list"], env)
    assert.strictEqual(foreignTop.code, 4)
    assert.include(foreignTop.stderr, `session directory ${sessions} is owned by uid 65534`)
  })

  it("a key file others may read, or another user owns, is refused with the fix", () => {
    const { home, env } = homeWithSession()
    assert.strictEqual(cli(["import", "demo"], env, { stdin: tokenResponse("k") }).code, 0)
    const keyFile = NodePath.join(home, ".magictunnel", "encryption.key")
    for (const mode of [0o640, 0o604, 0o660]) {
      Fs.chmodSync(keyFile, mode)
      const r = cli(["token", "demo"], env)
      assert.strictEqual(r.code, 4, r.stderr)
      assert.include(r.stderr, `chmod 600 ${keyFile}`)
      assert.strictEqual(r.stdout, "")
    }
    Fs.chmodSync(keyFile, 0o600)
    Fs.chownSync(keyFile, nobody.uid, nobody.gid)
    const r = cli(["token", "demo"], env)
    assert.strictEqual(r.code, 4, r.stderr)
    assert.include(r.stderr, `key file ${keyFile} is owned by uid 65534`)
    assert.include(r.stderr, "fix:")
    Fs.chownSync(keyFile, 0, 0)
    assert.strictEqual(cli(["token", "demo"], env).code, 0, "back to normal once fixed")
  })

  it("a second OS user (nobody) can read none of the session files, nor use them through the CLI", () => {
    assert.strictEqual(process.getuid?.(), 0, "this test needs root to spawn a process as another user")
    const { home, env } = homeWithSession()
    assert.strictEqual(cli(["import", "demo"], env, { stdin: tokenResponse("victim") }).code, 0)
    const token = cli(["token", "demo"], env).stdout.trim()
    assert.include(token, "at-victim")
    const root = NodePath.join(home, ".magictunnel")
    const paths = walk(root).map((e) => e.path)

    const probe = (files: ReadonlyArray<string>) => {
      const script = `const fs=require("node:fs");const out={};for(const p of JSON.parse(process.argv[1])){try{fs.readFileSync(p);out[p]="READ"}catch(e){out[p]=e.code}}process.stdout.write(JSON.stringify(out))`
      const r = spawnSync(process.execPath, ["-e", script, JSON.stringify(files)], { ...nobody, encoding: "utf8", timeout: 20_000 })
      // A checkout nobody may not enter (a 0700 temp dir) cannot run node as nobody: say so, not "null".
      assert.strictEqual(r.status, 0, `probe as nobody failed: ${r.error?.message ?? `signal ${r.signal}`}; ${r.stderr}`)
      return JSON.parse(r.stdout) as Record<string, string>
    }
    const asNobody = (args: ReadonlyArray<string>) => cli(args, env, { as: nobody })

    // As the user left them: the private tree stops nobody at its top.
    for (const [p, outcome] of Object.entries(probe(paths))) assert.oneOf(outcome, ["EACCES", "EISDIR"], p)
    for (const args of [["token", "demo"], ["list", "--json"], ["status", "--json"]]) {
      const r = asNobody(args)
      assert.notStrictEqual(r.code, 0, `${args.join(" ")}: ${r.stdout}`)
      assert.notInclude(r.stdout + r.stderr, "at-victim")
    }
    // Even with the upper directories opened up by mistake, each storage directory and file keeps nobody out,
    // and the CLI refuses a session directory that is not nobody's own.
    Fs.chmodSync(root, 0o755)
    Fs.chmodSync(NodePath.join(root, "sessions"), 0o755)
    for (const [p, outcome] of Object.entries(probe(paths))) assert.oneOf(outcome, ["EACCES", "EISDIR"], p)
    const r = asNobody(["token", "demo"])
    assert.strictEqual(r.code, 4, r.stderr)
    assert.include(r.stderr, "is owned by uid 0")
    assert.notInclude(r.stdout + r.stderr, "at-victim")
    // The owner still reads them.
    assert.strictEqual(cli(["token", "demo"], env).stdout.trim(), token)
  })
})
