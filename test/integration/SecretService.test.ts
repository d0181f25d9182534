/**
 * The keyring store against a real Secret Service: gnome-keyring on a private
 * D-Bus session bus (test/support/SecretService.ts), through the native
 * binding exactly as users run it. Buses other than this file's own are
 * checked from child processes, since libdbus reads the address once.
 */
import { spawn } from "node:child_process"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted } from "effect"
import * as Keyring from "../../src/Keyring.js"
import * as KeyringStore from "../../src/TokenStore/Keyring.js"
import type * as TokenStore from "../../src/TokenStore.js"
import { openStore, tempDirectory, uniqueNamespace } from "../support/KeyringFixtures.js"
import * as SecretService from "../support/SecretService.js"
import { conformance, sampleRecord } from "../support/TokenStoreConformance.js"

const secretService = SecretService.useSecretService()

const native = (timeoutMs = Keyring.defaultTimeoutMs) => Keyring.layerNative({ timeoutMs })

conformance("keyring on the real Secret Service (gnome-keyring)", {
  backend: "secret_service",
  persistent: true,
  fresh: Effect.gen(function*() {
    const directory = yield* tempDirectory
    const namespace = uniqueNamespace()
    // Each open builds its own native keyring: a new process, as far as the binding is concerned.
    return openStore(native(), directory, namespace)
  })
})

interface Line {
  readonly step: string
  readonly ok: boolean
  readonly tag?: string
  readonly detail?: string
}

const childScript = Path.resolve(import.meta.dirname, "../support/KeyringChild.ts")

/** Runs store steps in a child process on the bus `env` names; fails if the child does not finish. */
const inChild = (
  env: Readonly<Record<string, string>>,
  input: { readonly directory: string; readonly namespace: string; readonly timeoutMs: number; readonly steps: ReadonlyArray<string> }
) =>
  Effect.callback<ReadonlyArray<Line>, Error>((resume) => {
    const child = spawn(process.execPath, ["--import", "tsx", childScript], {
      cwd: Path.resolve(import.meta.dirname, "../.."),
      env: { ...env, PATH: process.env["PATH"] ?? "/usr/bin:/bin", MTS_KEYRING_CHILD: JSON.stringify(input) },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    // A safety bound, far above what a prompt answer takes: hitting it means a call hung.
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.on("error", (e) => resume(Effect.fail(e)))
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      if (signal === "SIGKILL") return resume(Effect.fail(new Error(`the child hung: ${stdout} ${stderr}`)))
      const lines = stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line)
      resume(lines.length === input.steps.length
        ? Effect.succeed(lines)
        : Effect.fail(new Error(`child exited ${code}: ${stdout}\n${stderr}`)))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const reasonOf = <A>(exit: Exit.Exit<A, TokenStore.TokenStoreError>) =>
  Exit.isFailure(exit) ? exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error.reason._tag] : []))[0] : undefined

describe("Secret Service", () => {
  it("runs against a private, unlocked gnome-keyring (fails, never skips, when it cannot start)", () => {
    const service = secretService()
    assert.match(service.address, /^unix:/)
    assert.strictEqual(process.env["DBUS_SESSION_BUS_ADDRESS"], service.address)
  })

  it.live("secrets land in the Secret Service (the store is pinned, not kernel keyutils)", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const namespace = uniqueNamespace()
      const store = yield* openStore(native(), directory, namespace)
      yield* store.put(sampleRecord(0))
      const seen = yield* secretService().lookup({ service: Keyring.serviceName, username: `${namespace}/github` })
      assert.isTrue(Option.isSome(seen), "secret-tool finds the record through the daemon")
      const json = JSON.parse(Option.getOrThrow(seen)) as { id: string; refreshToken: string }
      assert.strictEqual(json.id, "github")
      assert.strictEqual(json.refreshToken, "RT-secret-0")
      yield* store.remove("github")
      assert.isTrue(Option.isNone(yield* secretService().lookup({ service: Keyring.serviceName, username: `${namespace}/github` })))
      const health = yield* store.health
      assert.isTrue(health.available, health.detail)
    }).pipe(Effect.scoped))

  it.live("a session stored by one instance is listed and read by a new one, a large record via overflow", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const namespace = uniqueNamespace()
      const first = yield* openStore(native(), directory, namespace)
      const huge = `AT-huge-${"z".repeat(70 * 1024)}`
      yield* first.put(sampleRecord(1))
      yield* first.put(sampleRecord(2, { accessToken: Redacted.make(huge) }))
      const key = yield* secretService().lookup({
        service: Keyring.serviceName,
        username: KeyringStore.overflowKeyAccountOf(namespace)
      })
      assert.isTrue(Option.isSome(key), "the overflow data key lives in the Secret Service")

      const second = yield* openStore(native(), directory, namespace)
      assert.deepStrictEqual((yield* second.list).map((m) => m.id).sort(), ["provider-1", "provider-2"])
      assert.strictEqual(Redacted.value((yield* second.get("provider-1")).refreshToken!), "RT-secret-1")
      assert.strictEqual(Redacted.value((yield* second.get("provider-2")).accessToken!), huge)
    }).pipe(Effect.scoped))

  it.live("a Secret Service that stops answering times out within the bound, without blocking the process", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const namespace = uniqueNamespace()
      const warm = yield* openStore(native(400), directory, namespace)
      yield* warm.put(sampleRecord(1))
      const cold = yield* openStore(native(400), directory, namespace)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* secretService().pause
        // An entry built before: its call runs on the pool and is abandoned at the bound.
        assert.strictEqual(reasonOf(yield* Effect.exit(warm.get("provider-1"))), "Timeout")
        // No entry yet: the readiness check times out, so the blocking constructor never runs.
        assert.strictEqual(reasonOf(yield* Effect.exit(cold.get("provider-1"))), "Timeout")
        const health = yield* cold.health
        assert.isFalse(health.available)
      }))
      // Answering again: the same instances recover.
      const again = yield* warm.get("provider-1").pipe(
        Effect.retry({ times: 20, while: (e) => e.reason._tag === "Timeout" })
      )
      assert.strictEqual(again.id, "provider-1")
    }).pipe(Effect.scoped))

  it.live("no Secret Service on the bus, or no bus at all: Unavailable, never NotFound, and sessions stay listed", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const namespace = uniqueNamespace()
      const store = yield* openStore(native(), directory, namespace)
      yield* store.put(sampleRecord(0))

      const bare = yield* SecretService.startBus
      const steps = ["get", "list", "put", "health"]
      const onBare = yield* inChild(bare.env, { directory, namespace, timeoutMs: 5000, steps })
      const dead = yield* inChild(
        { ...bare.env, DBUS_SESSION_BUS_ADDRESS: `unix:path=${Path.join(bare.directory, "no-such-socket")}` },
        { directory, namespace, timeoutMs: 5000, steps }
      )
      for (const lines of [onBare, dead]) {
        const by = new Map(lines.map((l) => [l.step, l]))
        assert.strictEqual(by.get("get")?.tag, "Unavailable", by.get("get")?.detail)
        assert.deepStrictEqual([by.get("list")?.ok, by.get("list")?.detail], [true, "github:active"])
        assert.strictEqual(by.get("put")?.tag, "Unavailable", by.get("put")?.detail)
        assert.isFalse(by.get("health")?.ok)
      }
      assert.include(onBare[0]?.detail ?? "", "org.freedesktop.secrets")
      // Nothing was lost meanwhile.
      assert.strictEqual((yield* store.get("github")).id, "github")
    }).pipe(Effect.scoped))

  it.live("a locked collection: AccessDenied promptly, for reads and writes, and the session stays listed", () =>
    Effect.gen(function*() {
      const other = yield* SecretService.start
      const directory = yield* tempDirectory
      const lines = yield* inChild(other.env, {
        directory,
        namespace: uniqueNamespace(),
        timeoutMs: 5000,
        steps: ["put", "get", "lock", "get", "put", "list", "health"]
      })
      assert.deepStrictEqual(
        lines.map((l) => `${l.step}:${l.ok ? "ok" : l.tag}`),
        ["put:ok", "get:ok", "lock:ok", "get:AccessDenied", "put:AccessDenied", "list:ok", "health:Other"]
      )
      assert.strictEqual(lines[5]?.detail, "github:active")
      assert.include(lines[3]?.detail ?? "", "locked")
      assert.include(lines[6]?.detail ?? "", "unlock prompt was dismissed")
    }).pipe(Effect.scoped))
})
