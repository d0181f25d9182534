import { assert, describe, it } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Exit, Layer, Ref } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as StoreSelection from "../src/StoreSelection.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)
const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mts-sel-"))

const probeWith = (available: boolean) =>
  Effect.gen(function*() {
    const calls = yield* Ref.make(0)
    const probe = Ref.update(calls, (n) => n + 1).pipe(
      Effect.as({ available, detail: available ? "ok" : "no Secret Service on the session bus", latencyMs: 3 })
    )
    return { probe, calls }
  })

const messageOf = <A, E>(exit: Exit.Exit<A, E>) => {
  if (Exit.isSuccess(exit)) return "succeeded"
  const f = exit.cause.reasons.find((r) => r._tag === "Fail")
  return f?._tag === "Fail" ? (f.error as Error).message : "?"
}

describe("StoreSelection", () => {
  it.effect("auto on Linux uses the Secret Service when the probe succeeds, and remembers it", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const { probe } = yield* probeWith(true)
      const first = yield* StoreSelection.choose({ configured: "auto", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe })
      assert.strictEqual(first.backend, "secret_service")
      assert.isFalse(first.remembered)
      assert.strictEqual(Fs.statSync(Path.join(dir, "backend.json")).mode & 0o777, 0o600)
      const again = yield* StoreSelection.choose({ configured: "auto", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe })
      assert.strictEqual(again.backend, "secret_service")
      assert.isTrue(again.remembered)
      assert.include(again.reason, "remembered")
    }).pipe(Effect.provide(platform)))

  it.effect("auto falls back to the file store when the probe fails, says so, and keeps that choice later", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const down = yield* probeWith(false)
      const first = yield* StoreSelection.choose({ configured: "auto", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe: down.probe })
      assert.strictEqual(first.backend, "filesystem")
      assert.include(first.reason, "no Secret Service")
      // The Secret Service comes back: sessions must not split across backends.
      const up = yield* probeWith(true)
      const later = yield* StoreSelection.choose({ configured: "auto", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe: up.probe })
      assert.strictEqual(later.backend, "filesystem")
      assert.strictEqual(yield* Ref.get(up.calls), 0, "a remembered file choice needs no probe")
    }).pipe(Effect.provide(platform)))

  it.effect("a remembered keyring that is now unavailable is an error, never a silent switch", () =>
    Effect.gen(function*() {
      const dir = tmp()
      yield* StoreSelection.choose({ configured: "auto", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe: (yield* probeWith(true)).probe })
      const exit = yield* Effect.exit(
        StoreSelection.choose({ configured: "auto", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe: (yield* probeWith(false)).probe })
      )
      assert.include(messageOf(exit), "secret_service is unavailable")
      assert.include(messageOf(exit), "fix:")
    }).pipe(Effect.provide(platform)))

  it.effect("an explicit keyring backend that is unavailable, or of another platform, is refused", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const down = yield* Effect.exit(
        StoreSelection.choose({ configured: "secret_service", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe: (yield* probeWith(false)).probe })
      )
      assert.include(messageOf(down), "no Secret Service")
      const wrong = yield* Effect.exit(
        StoreSelection.choose({ configured: "keychain", platform: "linux", sessionDirectory: dir, fileMode: 0o600, probe: (yield* probeWith(true)).probe })
      )
      assert.include(messageOf(wrong), "not available on linux")
      assert.isFalse(Fs.existsSync(Path.join(dir, "backend.json")), "explicit choices are not remembered")
    }).pipe(Effect.provide(platform)))

  it.effect("macOS and Windows pick their keyrings; a dry run remembers nothing", () =>
    Effect.gen(function*() {
      const { probe } = yield* probeWith(true)
      const mac = yield* StoreSelection.choose({ configured: "auto", platform: "darwin", sessionDirectory: tmp(), fileMode: 0o600, probe })
      assert.strictEqual(mac.backend, "keychain")
      const dir = tmp()
      const win = yield* StoreSelection.choose({ configured: "auto", platform: "win32", sessionDirectory: dir, fileMode: 0o600, probe, dryRun: true })
      assert.strictEqual(win.backend, "credential_manager")
      assert.isFalse(Fs.existsSync(Path.join(dir, "backend.json")))
    }).pipe(Effect.provide(platform)))
})
