import * as Fs from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Redacted, Schedule } from "effect"
import * as Keyring from "../../src/Keyring.js"
import * as MetadataIndex from "../../src/internal/MetadataIndex.js"
import * as KeyringStore from "../../src/TokenStore/Keyring.js"
import * as TokenStore from "../../src/TokenStore.js"
import { openStore, tempDirectory, uniqueNamespace } from "../support/KeyringFixtures.js"
import { conformance, sampleRecord } from "../support/TokenStoreConformance.js"

/** A fake keyring of `platform` in a temp directory; the opener builds store instances sharing both. */
const environment = (platform: Keyring.Platform, maxSecretBytes?: number) =>
  Effect.gen(function*() {
    const directory = yield* tempDirectory
    const namespace = uniqueNamespace()
    const fake = yield* Keyring.makeFake({ platform, maxSecretBytes })
    const open = openStore(Layer.succeed(Keyring.Keyring, fake.keyring), directory, namespace)
    return { directory, namespace, open, control: fake.control }
  })

conformance("keyring on a fake keychain", {
  backend: "keychain",
  persistent: true,
  fresh: Effect.map(environment("keychain"), (env) => env.open)
})

conformance("keyring on a fake credential manager (2560-byte secrets)", {
  backend: "credential_manager",
  persistent: true,
  fresh: Effect.map(environment("credential_manager", 2560), (env) => env.open)
})

const reasonOf = <A>(exit: Exit.Exit<A, TokenStore.TokenStoreError>) =>
  Exit.isFailure(exit)
    ? exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error.reason] : []))[0]
    : undefined

const big = (n: number) => sampleRecord(n, { accessToken: Redacted.make(`AT-big-${"y".repeat(6000)}`) })

describe("TokenStore keyring", () => {
  it.live("a record larger than the credential manager takes round-trips through a sealed overflow file", () =>
    Effect.gen(function*() {
      const env = yield* environment("credential_manager", 2560)
      const store = yield* env.open
      const record = big(1)
      yield* store.put(record)

      const account = KeyringStore.sessionAccountOf(env.namespace, record.id)
      const stored = yield* env.control.entries
      assert.isFalse(stored.some((e) => e.account === account), "the record is not in the keyring")
      assert.isTrue(stored.some((e) => e.account === KeyringStore.overflowKeyAccountOf(env.namespace)))
      for (const e of stored) assert.isAtMost(Buffer.byteLength(e.secret), 2560)
      const files = Fs.readdirSync(Path.join(env.directory, "ns", KeyringStore.overflowDirectoryName))
      assert.strictEqual(files.length, 1)
      const onDisk = Fs.readFileSync(Path.join(env.directory, "ns", KeyringStore.overflowDirectoryName, files[0]!))
      assert.notInclude(onDisk.toString("latin1"), "AT-big", "the overflow file is sealed")

      const again = yield* env.open
      const back = yield* again.get(record.id)
      assert.strictEqual(Redacted.value(back.accessToken!), `AT-big-${"y".repeat(6000)}`)
      const listed = yield* again.list
      assert.deepStrictEqual(listed.map((m) => [m.id, m.backend, m.state]), [[record.id, "credential_manager", "active"]])

      // Shrinking moves it back into the keyring and deletes the file.
      yield* again.put(sampleRecord(1, { generation: 1 }))
      assert.strictEqual(Fs.readdirSync(Path.join(env.directory, "ns", KeyringStore.overflowDirectoryName)).length, 0)
      assert.strictEqual((yield* store.get(record.id)).generation, 1)

      yield* again.put(big(1))
      yield* again.remove(record.id)
      assert.strictEqual(reasonOf(yield* Effect.exit(store.get(record.id)))?._tag, "NotFound")
      assert.deepStrictEqual(yield* store.list, [])
      assert.strictEqual(Fs.readdirSync(Path.join(env.directory, "ns", KeyringStore.overflowDirectoryName)).length, 0)
      assert.isFalse((yield* env.control.entries).some((e) => e.account === account))
    }).pipe(Effect.scoped))

  it.live("an unavailable keyring is Unavailable, never NotFound, and a failed first write leaves nothing listed", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const store = yield* env.open
      yield* store.put(sampleRecord(1))
      const down = { _tag: "Unavailable", detail: "no keychain in this session" } as const

      yield* env.control.failNext(down)
      const got = reasonOf(yield* Effect.exit(store.get("provider-1")))
      assert.strictEqual(got?._tag, "Unavailable")

      yield* env.control.failNext(down)
      const missing = yield* Effect.exit(store.get("nobody"))
      assert.strictEqual(reasonOf(missing)?._tag, "Unavailable", "a keyring that does not answer is not an empty one")

      yield* env.control.failNext(down, { operation: "set" })
      const put = yield* Effect.exit(store.put(sampleRecord(2)))
      assert.strictEqual(reasonOf(put)?._tag, "Unavailable")
      assert.isTrue(Exit.isFailure(put) && put.cause.reasons.some((r) => r._tag === "Fail" && r.error.retryable))
      assert.deepStrictEqual((yield* store.list).map((m) => m.id), ["provider-1"])

      yield* env.control.failNext(down, { operation: "delete" })
      assert.strictEqual(reasonOf(yield* Effect.exit(store.remove("provider-1")))?._tag, "Unavailable")
      assert.deepStrictEqual((yield* store.list).map((m) => m.id), ["provider-1"], "still listed: its secret is still there")
      assert.strictEqual(Redacted.value((yield* store.get("provider-1")).refreshToken!), "RT-secret-1")

      yield* env.control.failNext({ _tag: "Timeout", afterMs: 5000 })
      assert.deepStrictEqual(reasonOf(yield* Effect.exit(store.get("provider-1"))), { _tag: "Timeout", afterMs: 5000 })
    }).pipe(Effect.scoped))

  it.live("a locked keyring is AccessDenied, and the health probe says so", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const store = yield* env.open
      yield* store.put(sampleRecord(1))
      const locked = { _tag: "AccessDenied", detail: "the keyring is locked" } as const
      yield* env.control.failNext(locked)
      const exit = yield* Effect.exit(store.get("provider-1"))
      assert.strictEqual(reasonOf(exit)?._tag, "AccessDenied")
      assert.isTrue(Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Fail" && !r.error.retryable))

      yield* env.control.failNext(locked, { operation: "set", times: 2 })
      const health = yield* store.health
      assert.isFalse(health.available)
      assert.include(health.detail, "locked")
      assert.strictEqual(health.backend, "keychain")
      yield* env.control.clearFailures
      assert.isTrue((yield* store.health).available)
      assert.isFalse((yield* env.control.entries).some((e) => e.account.startsWith(Keyring.probeAccountPrefix)))
    }).pipe(Effect.scoped))

  it.live("a damaged secret is set aside and reported for that session only", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const store = yield* env.open
      yield* store.put(sampleRecord(1))
      yield* store.put(sampleRecord(2))
      const account = KeyringStore.sessionAccountOf(env.namespace, "provider-1")
      yield* env.control.setRaw(Keyring.serviceName, account, "{\"version\":1,\"id\":\"provider-1\",trunc")

      const exit = yield* Effect.exit(store.get("provider-1"))
      const reason = reasonOf(exit)
      assert.strictEqual(reason?._tag, "Corrupted")
      const quarantinedAs = reason?._tag === "Corrupted" ? reason.quarantinedAs : undefined
      assert.match(quarantinedAs ?? "", new RegExp(`^magictunnel/.*${KeyringStore.quarantineInfix}\\d+$`))
      const entries = yield* env.control.entries
      assert.isFalse(entries.some((e) => e.account === account), "the damaged secret left its place")
      assert.isTrue(entries.some((e) => `${e.service}/${e.account}` === quarantinedAs && e.secret.endsWith("trunc")))
      assert.notInclude(Exit.isFailure(exit) ? String(exit.cause.reasons.map((r) => r._tag === "Fail" ? r.error.message : "")) : "", "trunc")

      assert.strictEqual(Redacted.value((yield* store.get("provider-2")).accessToken!), "AT-secret-2-xx")
      const states = new Map((yield* store.list).map((m) => [m.id, m.state]))
      assert.strictEqual(states.get("provider-1"), "corrupted")
      assert.strictEqual(states.get("provider-2"), "active")
      // Still reported on the next read, until a login replaces it or it is removed.
      assert.strictEqual(reasonOf(yield* Effect.exit(store.get("provider-1")))?._tag, "Corrupted")

      // A new login replaces it; removing the session later also deletes the quarantined copy (it holds tokens).
      yield* store.put(sampleRecord(1, { generation: 1 }))
      assert.strictEqual((yield* store.get("provider-1")).generation, 1)
      assert.strictEqual((yield* store.list).find((m) => m.id === "provider-1")?.state, "active")
      yield* store.remove("provider-1")
      assert.isFalse((yield* env.control.entries).some((e) => `${e.service}/${e.account}` === quarantinedAs))
      assert.deepStrictEqual((yield* store.list).map((m) => m.id), ["provider-2"])
    }).pipe(Effect.scoped))

  it.live("a damaged overflow file is set aside; a missing overflow key is reported and the file kept", () =>
    Effect.gen(function*() {
      const env = yield* environment("credential_manager", 2560)
      const store = yield* env.open
      yield* store.put(big(1))
      yield* store.put(big(2))
      const dir = Path.join(env.directory, "ns", KeyringStore.overflowDirectoryName)
      const target = Path.join(dir, `${MetadataIndex.fileKeyOf("provider-1")}.sealed`)
      const bytes = Fs.readFileSync(target)
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1
      Fs.writeFileSync(target, bytes)
      const reason = reasonOf(yield* Effect.exit(store.get("provider-1")))
      assert.strictEqual(reason?._tag, "Corrupted")
      assert.include(reason?._tag === "Corrupted" ? reason.detail : "", "authentication failed")
      assert.isFalse(Fs.existsSync(target))
      assert.isTrue(Fs.readdirSync(dir).some((n) => n.includes(KeyringStore.quarantineInfix)), "moved aside, not deleted")
      const healthy = "provider-2"
      assert.strictEqual((yield* store.get(healthy)).id, healthy)

      // The data key gone from the keyring: the file cannot be opened here, but it is not damaged.
      const key = (yield* env.control.entries).find((e) => e.account === KeyringStore.overflowKeyAccountOf(env.namespace))!
      const wiped = yield* Keyring.makeFake({ platform: "credential_manager" })
      const noKey = yield* openStore(Layer.succeed(Keyring.Keyring, wiped.keyring), env.directory, env.namespace)
      const missing = reasonOf(yield* Effect.exit(noKey.get(healthy)))
      assert.strictEqual(missing?._tag, "Corrupted")
      assert.include(missing?._tag === "Corrupted" ? missing.detail : "", "overflow key")
      yield* wiped.control.setRaw(key.service, key.account, key.secret)
      assert.strictEqual((yield* noKey.get(healthy)).id, healthy, "with the key back, it opens")
    }).pipe(Effect.scoped))

  it.live("a secret holding another session's record is not served under this id", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const store = yield* env.open
      yield* store.put(sampleRecord(1))
      yield* store.put(sampleRecord(2))
      const e = (yield* env.control.entries).find((x) => x.account === KeyringStore.sessionAccountOf(env.namespace, "provider-2"))!
      yield* env.control.setRaw(Keyring.serviceName, KeyringStore.sessionAccountOf(env.namespace, "provider-1"), e.secret)
      assert.strictEqual(reasonOf(yield* Effect.exit(store.get("provider-1")))?._tag, "Corrupted")
    }).pipe(Effect.scoped))

  it.live("a process killed around the first write never leaves a stored session unlisted", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const store = yield* env.open
      const dies = (afterApplying: boolean, n: number) =>
        Effect.gen(function*() {
          yield* env.control.stallNext({ operation: "set", afterApplying })
          const fiber = yield* Effect.forkChild(store.put(sampleRecord(n)))
          yield* env.control.stalled.pipe(Effect.repeat({ schedule: Schedule.spaced(1), until: (k) => k > 0 }))
          yield* Fiber.interrupt(fiber)
        })
      yield* dies(true, 1) // the secret landed, then the process died
      yield* dies(false, 2) // the process died before the secret landed

      const after = yield* env.open
      assert.deepStrictEqual((yield* after.list).map((m) => m.id).sort(), ["provider-1", "provider-2"])
      assert.strictEqual((yield* after.get("provider-1")).id, "provider-1")
      const lost = reasonOf(yield* Effect.exit(after.get("provider-2")))
      assert.strictEqual(lost?._tag, "Corrupted", "listed but unreadable is reported, not hidden")
      assert.strictEqual((yield* after.list).find((m) => m.id === "provider-2")?.state, "corrupted")
      // Logging in again repairs it.
      yield* after.put(sampleRecord(2, { generation: 1 }))
      assert.strictEqual((yield* after.get("provider-2")).generation, 1)
    }).pipe(Effect.scoped))

  it.live("a listed session whose secret vanished is reported, not silently missing", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const store = yield* env.open
      yield* store.put(sampleRecord(1))
      const fake = yield* Keyring.makeFake()
      // The user wiped the keyring (or it was reset): same index, empty keyring.
      const wiped = yield* openStore(Layer.succeed(Keyring.Keyring, fake.keyring), env.directory, env.namespace)
      const reason = reasonOf(yield* Effect.exit(wiped.get("provider-1")))
      assert.strictEqual(reason?._tag, "Corrupted")
      assert.include(reason?._tag === "Corrupted" ? reason.detail : "", "missing")
      assert.strictEqual((yield* wiped.list)[0]?.state, "corrupted")
      // When the keyring comes back, the record is read and the index repaired.
      assert.strictEqual((yield* store.get("provider-1")).id, "provider-1")
      assert.strictEqual((yield* store.list)[0]?.state, "active")
    }).pipe(Effect.scoped))

  it.live("a lost index entry is rebuilt from the record", () =>
    Effect.gen(function*() {
      const env = yield* environment("credential_manager", 2560)
      const store = yield* env.open
      yield* store.put(sampleRecord(1))
      yield* store.put(big(2))
      Fs.rmSync(Path.join(env.directory, "ns", "index"), { recursive: true })
      const again = yield* env.open
      assert.deepStrictEqual(yield* again.list, [])
      assert.strictEqual((yield* again.get("provider-1")).id, "provider-1")
      assert.strictEqual((yield* again.get("provider-2")).id, "provider-2")
      assert.deepStrictEqual((yield* again.list).map((m) => m.id).sort(), ["provider-1", "provider-2"])
    }).pipe(Effect.scoped))

  it.live("accounts: readable when short, hashed beyond the platform-safe length", () =>
    Effect.sync(() => {
      assert.strictEqual(KeyringStore.sessionAccountOf("alice@host:1000", "github"), "alice@host:1000/github")
      const long = KeyringStore.sessionAccountOf(`alice@host:1000/principal:${"p".repeat(300)}`, "github")
      assert.match(long, /^sha256:[0-9a-f]{64}$/)
      assert.notStrictEqual(long, KeyringStore.sessionAccountOf(`alice@host:1000/principal:${"p".repeat(300)}`, "gitlab"))
    }))

  it.live("namespaces sharing a keyring do not see each other's sessions", () =>
    Effect.gen(function*() {
      const env = yield* environment("keychain")
      const fake = Layer.succeed(Keyring.Keyring, (yield* Keyring.makeFake()).keyring)
      const dirB = yield* tempDirectory
      const a = yield* openStore(fake, env.directory, "alice@host:1000")
      const b = yield* openStore(fake, dirB, "bob@host:1001")
      yield* a.put(sampleRecord(0))
      assert.strictEqual(reasonOf(yield* Effect.exit(b.get("github")))?._tag, "NotFound")
      assert.deepStrictEqual(yield* b.list, [])
    }).pipe(Effect.scoped))
})
