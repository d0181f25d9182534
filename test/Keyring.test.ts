import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import * as Keyring from "../src/Keyring.js"

const reasonOf = <A>(exit: Exit.Exit<A, Keyring.KeyringError>) =>
  Exit.isFailure(exit) ? exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error] : []))[0] : undefined

/** A stand-in for `@napi-rs/keyring`: records constructions, behaves as `behave` says. */
const fakeModule = (behave: {
  readonly construct?: () => void
  readonly get?: () => Promise<ArrayLike<number> | null>
  readonly set?: (secret: Uint8Array) => Promise<unknown>
  readonly remove?: () => Promise<boolean>
  readonly find?: () => Promise<ReadonlyArray<unknown>>
}) => {
  const constructed: Array<{ service: string; account: string; options: unknown }> = []
  const module: Keyring.NativeModule = {
    AsyncEntry: class {
      constructor(service: string, account: string, options?: unknown) {
        behave.construct?.()
        constructed.push({ service, account, options })
      }
      setSecret = (secret: Uint8Array) => behave.set?.(secret) ?? Promise.resolve()
      getSecret = () => behave.get?.() ?? Promise.resolve(null)
      deleteCredential = () => behave.remove?.() ?? Promise.resolve(false)
    },
    ...(behave.find === undefined ? {} : { findCredentialsAsync: behave.find })
  }
  return { module, constructed }
}

const keyringOf = (layer: Layer.Layer<Keyring.Keyring>) =>
  Effect.gen(function*() {
    return yield* Keyring.Keyring
  }).pipe(Effect.provide(layer))

const nativeWith = (module: Keyring.NativeModule, os: NodeJS.Platform, timeoutMs = 1000) =>
  keyringOf(Keyring.layerNativeWith({ timeoutMs, os, load: () => Promise.resolve(module) }))

describe("Keyring fake", () => {
  it.effect("stores, reads and deletes per service and account", () =>
    Effect.gen(function*() {
      const { keyring, control } = yield* Keyring.makeFake()
      assert.strictEqual(keyring.platform, "keychain")
      yield* keyring.set("svc", "a", "one")
      yield* keyring.set("svc", "b", "two")
      yield* keyring.set("other", "a", "three")
      assert.deepStrictEqual(yield* keyring.get("svc", "a"), Option.some("one"))
      assert.deepStrictEqual(yield* keyring.get("svc", "zzz"), Option.none())
      assert.isTrue(yield* keyring.remove("svc", "a"))
      assert.isFalse(yield* keyring.remove("svc", "a"))
      assert.deepStrictEqual((yield* control.entries).map((e) => `${e.service}/${e.account}=${e.secret}`), [
        "svc/b=two",
        "other/a=three"
      ])
    }))

  it.effect("refuses secrets over the platform limit, in UTF-8 bytes", () =>
    Effect.gen(function*() {
      const { keyring } = yield* Keyring.makeFake({ platform: "credential_manager" })
      assert.strictEqual(keyring.maxSecretBytes, 2560)
      yield* keyring.set("svc", "fits", "x".repeat(2560))
      const exit = yield* Effect.exit(keyring.set("svc", "big", "é".repeat(1281)))
      const e = reasonOf(exit)
      assert.deepStrictEqual(e?.reason, { _tag: "TooLarge", bytes: 2562, limit: 2560 })
      assert.notInclude(e?.message ?? "", "é")
    }))

  it.effect("injects the next error, per operation and count, without touching entries", () =>
    Effect.gen(function*() {
      const { keyring, control } = yield* Keyring.makeFake({ platform: "secret_service" })
      yield* keyring.set("svc", "a", "one")
      yield* control.failNext({ _tag: "AccessDenied", detail: "locked" }, { operation: "get", times: 2 })
      yield* keyring.set("svc", "b", "two") // not a get: unaffected
      assert.strictEqual(reasonOf(yield* Effect.exit(keyring.get("svc", "a")))?.reason._tag, "AccessDenied")
      assert.strictEqual(reasonOf(yield* Effect.exit(keyring.get("svc", "a")))?.reason._tag, "AccessDenied")
      assert.deepStrictEqual(yield* keyring.get("svc", "a"), Option.some("one"))

      yield* control.failNext({ _tag: "Unavailable", detail: "no bus" })
      const e = reasonOf(yield* Effect.exit(keyring.remove("svc", "a")))
      assert.strictEqual(e?.message, "secret_service delete: Unavailable: no bus")
      assert.deepStrictEqual(yield* keyring.get("svc", "a"), Option.some("one"))

      yield* control.failNext({ _tag: "Timeout", afterMs: 10 }, { times: 5 })
      yield* control.clearFailures
      assert.deepStrictEqual(yield* keyring.get("svc", "b"), Option.some("two"))
    }))

  it.effect("the probe reports an answering keyring, and a failing one with its reason", () =>
    Effect.gen(function*() {
      const { keyring, control } = yield* Keyring.makeFake()
      const ok = yield* Keyring.probeWith(keyring)
      assert.isTrue(ok.available, ok.detail)
      assert.isAtLeast(ok.latencyMs, 0)
      assert.deepStrictEqual(yield* control.entries, [], "the probe entry is deleted")

      yield* control.failNext({ _tag: "AccessDenied", detail: "unlock prompt was dismissed" }, { operation: "get" })
      const denied = yield* Keyring.probeWith(keyring)
      assert.isFalse(denied.available)
      assert.include(denied.detail, "unlock prompt was dismissed")
      assert.deepStrictEqual(yield* control.entries, [], "cleaned up after a failure too")

      const viaService = yield* Effect.provideService(Keyring.probe, Keyring.Keyring, keyring)
      assert.isTrue(viaService.available)
    }))
})

describe("Keyring native layer", () => {
  it.effect("a binding that cannot be loaded makes every call Unavailable, and says why", () =>
    Effect.gen(function*() {
      const keyring = yield* keyringOf(
        Keyring.layerNativeWith({
          timeoutMs: 1000,
          os: "linux",
          load: () => Promise.reject(new Error("Cannot find module '@napi-rs/keyring-linux-x64-gnu'"))
        })
      )
      assert.strictEqual(keyring.platform, "secret_service")
      for (const call of [keyring.get("s", "a"), keyring.set("s", "a", "v"), Effect.map(keyring.remove("s", "a"), () => Option.none())]) {
        const e = reasonOf(yield* Effect.exit(call))
        assert.strictEqual(e?.reason._tag, "Unavailable")
        assert.include(e?.message ?? "", "native keyring module not installed")
        assert.include(e?.message ?? "", "keyring-linux-x64-gnu")
      }
      const probe = yield* Keyring.probeWith(keyring)
      assert.isFalse(probe.available)
      assert.include(probe.detail, "not installed")
    }))

  it.effect("a call that never answers is a Timeout after the configured bound", () =>
    Effect.gen(function*() {
      const { module } = fakeModule({ get: () => new Promise(() => {}) })
      const keyring = yield* nativeWith(module, "darwin", 2000)
      const fiber = yield* Effect.forkChild(Effect.exit(keyring.get("s", "a")))
      yield* TestClock.adjust(1999)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(1)
      const exit = yield* Fiber.join(fiber)
      assert.deepStrictEqual(reasonOf(exit)?.reason, { _tag: "Timeout", afterMs: 2000 })
      assert.strictEqual(reasonOf(exit)?.message, "keychain get: timed out after 2000 ms")
    }))

  it.effect("on Linux a Secret Service that does not answer times out before an entry is built (the constructor blocks)", () =>
    Effect.gen(function*() {
      const { constructed, module } = fakeModule({ find: () => new Promise(() => {}) })
      const keyring = yield* nativeWith(module, "linux", 500)
      const fiber = yield* Effect.forkChild(Effect.exit(keyring.set("s", "a", "v")))
      yield* TestClock.adjust(500)
      assert.strictEqual(reasonOf(yield* Fiber.join(fiber))?.reason._tag, "Timeout")
      assert.strictEqual(constructed.length, 0)
    }))

  it.effect("pins the Secret Service on Linux, and builds each entry once", () =>
    Effect.gen(function*() {
      let stored: Uint8Array | null = null
      const { constructed, module } = fakeModule({
        find: () => Promise.resolve([]),
        set: (s) => {
          stored = s
          return Promise.resolve()
        },
        get: () => Promise.resolve(stored === null ? null : Array.from(stored))
      })
      const keyring = yield* nativeWith(module, "linux")
      yield* keyring.set("magictunnel", "ns/a", "sécret")
      assert.deepStrictEqual(yield* keyring.get("magictunnel", "ns/a"), Option.some("sécret"))
      yield* keyring.remove("magictunnel", "ns/a")
      assert.deepStrictEqual(constructed, [
        { service: "magictunnel", account: "ns/a", options: { linux: { store: "secret-service" } } }
      ])

      const mac = fakeModule({})
      const keychain = yield* nativeWith(mac.module, "darwin")
      yield* keychain.get("magictunnel", "ns/a")
      assert.strictEqual(keychain.platform, "keychain")
      assert.isUndefined(mac.constructed[0]?.options)
      const win = yield* nativeWith(fakeModule({}).module, "win32")
      assert.deepStrictEqual([win.platform, win.maxSecretBytes], ["credential_manager", 2560])
    }))

  it.effect("maps the binding's errors to reasons, and never echoes the secret", () =>
    Effect.gen(function*() {
      const failing = (message: string) =>
        fakeModule({
          find: () => Promise.resolve([]),
          get: () => Promise.reject(new Error(message)),
          set: () => Promise.reject(new Error(`${message} while storing hunter2-SECRET`))
        }).module
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["Couldn't access platform storage: Secret Service: unlock prompt was dismissed", "AccessDenied"],
        ["Couldn't access platform storage: Secret Service: no result found", "Unavailable"],
        ["Platform failure: DBus error: The name org.freedesktop.secrets was not provided by any .service files", "Unavailable"],
        ["Platform failure: DBus error: Did not receive a reply. Possible causes include: the reply timeout expired", "Unavailable"],
        ["User interaction is not allowed.", "AccessDenied"],
        ["Entry is matched by 2 credentials", "Other"]
      ]
      for (const [message, tag] of cases) {
        const keyring = yield* nativeWith(failing(message), "linux")
        assert.strictEqual(reasonOf(yield* Effect.exit(keyring.get("s", "a")))?.reason._tag, tag, message)
        const e = reasonOf(yield* Effect.exit(keyring.set("s", "a", "hunter2-SECRET")))
        assert.strictEqual(e?.reason._tag, tag, message)
        assert.notInclude(e?.message ?? "", "hunter2")
      }
      const written = reasonOf(
        yield* Effect.exit((yield* nativeWith(failing("Secret Service: no result found"), "linux")).set("s", "a", "v"))
      )
      assert.include(written?.message ?? "", "unlock the login keyring")
    }))

  it.effect("a constructor that throws (no session bus) is Unavailable, and is retried on the next call", () =>
    Effect.gen(function*() {
      let bus = false
      const { constructed, module } = fakeModule({
        find: () => Promise.resolve([]),
        construct: () => {
          if (!bus) throw new Error("Platform failure: DBus error: Failed to connect to socket /run/user/1000/bus: No such file or directory")
        }
      })
      const keyring = yield* nativeWith(module, "linux")
      const e = reasonOf(yield* Effect.exit(keyring.get("s", "a")))
      assert.strictEqual(e?.reason._tag, "Unavailable")
      assert.include(e?.message ?? "", "Failed to connect")
      bus = true
      assert.deepStrictEqual(yield* keyring.get("s", "a"), Option.none())
      assert.strictEqual(constructed.length, 1)
    }))
})
