import { assert, describe, it } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Exit, Layer, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as SessionConfig from "../src/SessionConfig.js"
import * as UserContext from "../src/UserContext.js"

const identity: UserContext.OsIdentity = { username: "alice", uid: process.getuid!(), home: "/home/alice", hostname: "box-1" }

const withDir = (dir: string, hostnameIsolation = true) =>
  Layer.mergeAll(
    SessionConfig.layerWith((s) => ({ ...s, userContext: { ...s.userContext, sessionDirectory: dir, hostnameIsolation } })),
    NodeFileSystem.layer,
    NodePath.layer
  )

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mts-uc-"))

const failureMessage = <A, E>(exit: Exit.Exit<A, E>): string => {
  if (Exit.isSuccess(exit)) return "succeeded"
  const f = exit.cause.reasons.find((r) => r._tag === "Fail")
  return f?._tag === "Fail" ? String((f.error as Error).message) : "no failure"
}

describe("UserContext", () => {
  it("namespaces: user@host:uid, without the host when isolation is off, principals apart", () => {
    assert.strictEqual(UserContext.namespaceOf(identity, { enabled: true, hostnameIsolation: true }), `alice@box-1:${identity.uid}`)
    // A container whose hostname changes keeps its namespace without hostname isolation.
    const a = UserContext.namespaceOf(identity, { enabled: true, hostnameIsolation: false })
    const b = UserContext.namespaceOf({ ...identity, hostname: "box-2" }, { enabled: true, hostnameIsolation: false })
    assert.strictEqual(a, b)
    assert.notStrictEqual(
      UserContext.namespaceOf(identity, { enabled: true, hostnameIsolation: true, principal: "t1/u1" }),
      UserContext.namespaceOf(identity, { enabled: true, hostnameIsolation: true, principal: "t1/u2" })
    )
  })

  it.effect("creates the session directory 0700 whatever the umask, with a per-namespace storage directory", () =>
    Effect.gen(function*() {
      const root = tmp()
      const dir = Path.join(root, "deep", "sessions")
      const old = process.umask(0)
      const ctx = yield* UserContext.make({ identity }).pipe(
        Effect.provide(withDir(dir)),
        Effect.ensuring(Effect.sync(() => process.umask(old)))
      )
      assert.strictEqual(ctx.sessionDirectory, dir)
      assert.strictEqual(ctx.namespace, `alice@box-1:${identity.uid}`)
      assert.strictEqual(Fs.statSync(dir).mode & 0o777, 0o700)
      assert.strictEqual(Fs.statSync(ctx.storageDirectory).mode & 0o777, 0o700)
      assert.strictEqual(Path.dirname(ctx.storageDirectory), dir)
      Fs.rmSync(root, { recursive: true })
    }))

  it.effect("expands ~ in the configured directory", () =>
    Effect.gen(function*() {
      const home = tmp()
      const ctx = yield* UserContext.make({ identity: { ...identity, home } }).pipe(
        Effect.provide(withDir("~/.magictunnel/sessions"))
      )
      assert.strictEqual(ctx.sessionDirectory, Path.join(home, ".magictunnel", "sessions"))
      Fs.rmSync(home, { recursive: true })
    }))

  it.effect("refuses a group/world-writable directory and names the fix, like ssh", () =>
    Effect.gen(function*() {
      const dir = tmp()
      Fs.chmodSync(dir, 0o777)
      const exit = yield* Effect.exit(UserContext.make({ identity }).pipe(Effect.provide(withDir(dir))))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(failureMessage(exit), `chmod 700 ${dir}`)
      assert.strictEqual(Fs.statSync(dir).mode & 0o777, 0o777, "the user's directory is not changed behind their back")
      Fs.rmSync(dir, { recursive: true })
    }))

  it.effect("refuses a directory owned by another user", () =>
    Effect.gen(function*() {
      const dir = tmp()
      Fs.chmodSync(dir, 0o700)
      const exit = yield* Effect.exit(
        UserContext.make({ identity: { ...identity, uid: identity.uid + 4242 } }).pipe(Effect.provide(withDir(dir)))
      )
      assert.include(failureMessage(exit), "owned by uid")
      Fs.rmSync(dir, { recursive: true })
    }))

  it.effect("refuses a file where the directory should be, and odd principals", () =>
    Effect.gen(function*() {
      const root = tmp()
      const file = Path.join(root, "sessions")
      Fs.writeFileSync(file, "x")
      const notDir = yield* Effect.exit(UserContext.make({ identity }).pipe(Effect.provide(withDir(file))))
      assert.include(failureMessage(notDir), "not a directory")
      const bad = yield* Effect.exit(
        UserContext.make({ identity, principal: "evil\n../../x" }).pipe(Effect.provide(withDir(Path.join(root, "s"))))
      )
      assert.include(failureMessage(bad), "invalid principal")
      Fs.rmSync(root, { recursive: true })
    }))

  it.effect("principals of one app get separate storage directories", () =>
    Effect.gen(function*() {
      const root = tmp()
      const a = yield* UserContext.make({ identity, principal: "tenant-1/user-7" }).pipe(Effect.provide(withDir(root)))
      const b = yield* UserContext.make({ identity, principal: "tenant-1/user-8" }).pipe(Effect.provide(withDir(root)))
      assert.notStrictEqual(a.storageDirectory, b.storageDirectory)
      assert.deepStrictEqual(a.principal, Option.some("tenant-1/user-7"))
      Fs.rmSync(root, { recursive: true })
    }))
})
