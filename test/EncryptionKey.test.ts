import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Effect, Exit, Redacted } from "effect"
import * as EncryptionKey from "../src/EncryptionKey.js"
import * as Envelope from "../src/internal/Envelope.js"
import * as Keyring from "../src/Keyring.js"
import { environment, fakeKeyring, type Options, sessionDirectoryOf, tempDir } from "./support/FileStoreFixtures.js"

/** Builds a new key service, as a new process would. */
const open = (o: Options) => EncryptionKey.make.pipe(Effect.provide(environment(o)))

/** The error of a failed open, with the assertion that its message names no key. */
const failure = Effect.fnUntraced(function*(o: Options, keys: ReadonlyArray<Uint8Array> = []) {
  const exit = yield* Effect.exit(open(o))
  assert.isTrue(Exit.isFailure(exit), "expected the key service to fail")
  const e = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  const error = e?._tag === "Fail" ? e.error : undefined
  assert.instanceOf(error, EncryptionKey.EncryptionKeyError)
  noKeyIn((error as EncryptionKey.EncryptionKeyError).message, keys)
  return error as EncryptionKey.EncryptionKeyError
})

const noKeyIn = (text: string, keys: ReadonlyArray<Uint8Array>) => {
  for (const k of keys) {
    assert.notInclude(text, Buffer.from(k).toString("base64"))
    assert.notInclude(text, Buffer.from(k).toString("hex"))
  }
}

const keyFileOf = (home: string) => NodePathModule.join(home, ".magictunnel", "encryption.key")
const modeOf = (p: string) => Fs.statSync(p).mode & 0o777
const storedKeys = (text: string): Array<Uint8Array> =>
  (JSON.parse(text) as { keys: Array<{ key: string }> }).keys.map((k) => new Uint8Array(Buffer.from(k.key, "base64")))
const rememberedOf = (home: string) =>
  (JSON.parse(Fs.readFileSync(NodePathModule.join(sessionDirectoryOf(home), "key-source.json"), "utf8")) as {
    source: string
  }).source

describe("EncryptionKey", () => {
  it.effect("env: uses MAGICTUNNEL_TOKEN_ENCRYPTION_KEY and refuses to rotate", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const envKey = new Uint8Array(Crypto.randomBytes(32))
      const key = yield* open({ home, source: "env", envKey })
      assert.strictEqual(key.source, "env")
      const ks = yield* key.keyset
      assert.strictEqual(ks.current.id, Envelope.keyIdOf(envKey))
      assert.deepStrictEqual(Redacted.value(ks.current.key), envKey)
      assert.include(key.description, "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY")
      const rotated = yield* Effect.flip(key.rotate)
      assert.strictEqual(rotated.reason._tag, "RotationUnsupported")
      assert.include(rotated.message, "keyring or file source")
      noKeyIn(rotated.message, [envKey])
      assert.strictEqual((yield* Effect.flip(key.retire([]))).reason._tag, "RotationUnsupported")
      // Nothing is written anywhere for the env source.
      assert.isFalse(Fs.existsSync(keyFileOf(home)))
    }).pipe(Effect.scoped))

  it.effect("env: a missing variable is a clear error", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const e = yield* failure({ home, source: "env" })
      assert.strictEqual(e.reason._tag, "Missing")
      assert.include(e.message, "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY is not set")
      assert.include(e.message, "fix:")
    }).pipe(Effect.scoped))

  it.effect("keyring: creates a random keyset on first use under a per-directory account, and reuses it", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const keyring = fakeKeyring()
      const first = yield* open({ home, source: "keyring", keyring })
      assert.strictEqual(first.source, "keyring")
      const account = EncryptionKey.keyringAccountOf(sessionDirectoryOf(home))
      assert.match(account, /^encryption-key:[0-9a-f]{12}$/)
      const stored = keyring.entries.get(`${Keyring.serviceName}/${account}`)
      assert.isDefined(stored)
      assert.strictEqual(storedKeys(stored!).length, 1)
      const second = yield* open({ home, source: "keyring", keyring })
      assert.strictEqual((yield* second.keyset).current.id, (yield* first.keyset).current.id)
      assert.isFalse(Fs.existsSync(keyFileOf(home)), "no key file for the keyring source")
      // Another session directory gets another key.
      const otherHome = yield* tempDir("mts-key-")
      const other = yield* open({ home: otherHome, source: "keyring", keyring })
      assert.notStrictEqual((yield* other.keyset).current.id, (yield* first.keyset).current.id)
    }).pipe(Effect.scoped))

  it.effect("keyring: no keyring, or one that does not answer, is Unavailable naming the fix", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const none = yield* failure({ home, source: "keyring" })
      assert.strictEqual(none.reason._tag, "Unavailable")
      assert.include(none.message, "encryption_key_source: file")
      const keyring = fakeKeyring()
      keyring.available = false
      const down = yield* failure({ home, source: "keyring", keyring })
      assert.strictEqual(down.reason._tag, "Unavailable")
      assert.include(down.message, "no Secret Service")
    }).pipe(Effect.scoped))

  it.effect("file: created 0600 in a 0700 directory outside the session directory, and reused", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const previous = process.umask(0)
      const first = yield* open({ home, source: "file" }).pipe(Effect.ensuring(Effect.sync(() => process.umask(previous))))
      const file = keyFileOf(home)
      assert.strictEqual(first.source, "file")
      assert.strictEqual(modeOf(file), 0o600)
      assert.strictEqual(modeOf(NodePathModule.dirname(file)), 0o700)
      assert.include(first.description, file)
      assert.include(first.description, "only against the session directory being copied alone")
      const keys = storedKeys(Fs.readFileSync(file, "utf8"))
      assert.strictEqual(keys.length, 1)
      assert.strictEqual((yield* first.keyset).current.id, Envelope.keyIdOf(keys[0]!))
      const second = yield* open({ home, source: "file" })
      assert.strictEqual((yield* second.keyset).current.id, (yield* first.keyset).current.id)
      // No leftover temp files from the exclusive create.
      assert.deepStrictEqual(Fs.readdirSync(NodePathModule.dirname(file)).filter((n) => n.includes(".tmp-")), [])
    }).pipe(Effect.scoped))

  it.effect("file: processes creating the key at once all end up with one key", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      for (let round = 0; round < 5; round++) {
        const keyFile = NodePathModule.join(home, `race-${round}`, "encryption.key")
        const opened = yield* Effect.forEach(
          Array.from({ length: 6 }),
          () => EncryptionKey.make.pipe(Effect.provide(environment({ home, source: "file", keyFile }))),
          { concurrency: "unbounded" }
        )
        const ids = new Set(yield* Effect.forEach(opened, (k) => Effect.map(k.keyset, (ks) => ks.current.id)))
        assert.strictEqual(ids.size, 1, `round ${round}`)
        assert.strictEqual(storedKeys(Fs.readFileSync(keyFile, "utf8")).length, 1)
      }
    }).pipe(Effect.scoped))

  it.effect("file: refused when group/world-readable, inside the session directory, or not a file", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const key = yield* open({ home, source: "file" })
      const secret = storedKeys(Fs.readFileSync(keyFileOf(home), "utf8"))
      void key
      Fs.chmodSync(keyFileOf(home), 0o644)
      const loose = yield* failure({ home, source: "file" }, secret)
      assert.deepInclude(loose.reason, { _tag: "InsecureKeyFile", problem: "Permissions" })
      assert.include(loose.message, `chmod 600 ${keyFileOf(home)}`)
      assert.include(loose.message, "0644")

      const inside = NodePathModule.join(sessionDirectoryOf(home), "encryption.key")
      const e2 = yield* failure({ home, source: "file", keyFile: inside })
      assert.deepInclude(e2.reason, { _tag: "InsecureKeyFile", problem: "InsideSessionDirectory" })
      assert.include(e2.message, "token_storage.encryption_key_file")
      assert.isFalse(Fs.existsSync(inside), "no key is written inside the session directory")

      const dir = NodePathModule.join(home, "a-directory")
      Fs.mkdirSync(dir)
      const e3 = yield* failure({ home, source: "file", keyFile: dir })
      assert.deepInclude(e3.reason, { _tag: "InsecureKeyFile", problem: "NotAFile" })
    }).pipe(Effect.scoped))

  it.effect("file: a damaged key file is Corrupted, not replaced", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      yield* open({ home, source: "file" })
      const secret = storedKeys(Fs.readFileSync(keyFileOf(home), "utf8"))
      const text = Fs.readFileSync(keyFileOf(home), "utf8")
      Fs.writeFileSync(keyFileOf(home), text.slice(0, text.length - 20), { mode: 0o600 })
      const e = yield* failure({ home, source: "file" }, secret)
      assert.strictEqual(e.reason._tag, "Corrupted")
      assert.include(e.message, "restore it from a backup")
      assert.strictEqual(Fs.readFileSync(keyFileOf(home), "utf8"), text.slice(0, text.length - 20))
    }).pipe(Effect.scoped))

  it.effect("auto: the env key when set, remembered; a later run without it fails instead of switching", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const envKey = new Uint8Array(Crypto.randomBytes(32))
      const keyring = fakeKeyring()
      const key = yield* open({ home, envKey, keyring })
      assert.strictEqual(key.source, "env")
      assert.include(key.description, "remembered in")
      assert.strictEqual(rememberedOf(home), "env")
      assert.strictEqual(modeOf(NodePathModule.join(sessionDirectoryOf(home), "key-source.json")), 0o600)
      const e = yield* failure({ home, keyring })
      assert.strictEqual(e.reason._tag, "Missing")
      assert.include(e.message, "same key")
      assert.strictEqual(keyring.entries.size, 0, "no keyring key was made behind the user's back")
    }).pipe(Effect.scoped))

  it.effect("auto: the keyring when it answers, remembered; a later run with the keyring down fails", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const keyring = fakeKeyring()
      const key = yield* open({ home, keyring })
      assert.strictEqual(key.source, "keyring")
      assert.strictEqual(rememberedOf(home), "keyring")
      const again = yield* open({ home, keyring })
      assert.strictEqual((yield* again.keyset).current.id, (yield* key.keyset).current.id)
      keyring.available = false
      const e = yield* failure({ home, keyring })
      assert.strictEqual(e.reason._tag, "Unavailable")
      assert.isFalse(Fs.existsSync(keyFileOf(home)), "did not switch to a key file")
      // A key set in the environment later does not silently replace the remembered keyring key either.
      keyring.available = true
      const changed = yield* failure({ home, keyring, envKey: new Uint8Array(Crypto.randomBytes(32)) })
      assert.strictEqual(changed.reason._tag, "SourceChanged")
      assert.include(changed.message, "key-source.json")
      // And a keyring entry that vanished is reported, not recreated.
      keyring.entries.clear()
      const gone = yield* failure({ home, keyring })
      assert.strictEqual(gone.reason._tag, "Missing")
      assert.strictEqual(keyring.entries.size, 0)
    }).pipe(Effect.scoped))

  it.effect("auto: the file when no keyring answers, remembered even once a keyring appears", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-key-")
      const keyring = fakeKeyring()
      keyring.available = false
      const key = yield* open({ home, keyring })
      assert.strictEqual(key.source, "file")
      assert.strictEqual(rememberedOf(home), "file")
      keyring.available = true
      const later = yield* open({ home, keyring })
      assert.strictEqual(later.source, "file")
      assert.strictEqual((yield* later.keyset).current.id, (yield* key.keyset).current.id)
      assert.strictEqual(keyring.entries.size, 0)
      // Without any Keyring service at all, auto also picks the file.
      const bare = yield* tempDir("mts-key-")
      assert.strictEqual((yield* open({ home: bare })).source, "file")
    }).pipe(Effect.scoped))

  it.effect("rotation adds a current key, keeps the old one readable, and retire drops unused ones", () =>
    Effect.gen(function*() {
      for (const source of ["file", "keyring"] as const) {
        const home = yield* tempDir("mts-key-")
        const keyring = fakeKeyring()
        const key = yield* open({ home, source, keyring })
        const before = yield* key.keyset
        const oldKey = Redacted.value(before.current.key)
        const sealed = Envelope.seal({ key: oldKey, keyId: before.current.id, namespace: "n", sessionId: "s", plaintext: Uint8Array.of(1, 2, 3) })
        const after = yield* key.rotate
        assert.notStrictEqual(after.current.id, before.current.id)
        assert.strictEqual(after.all.size, 2)
        assert.strictEqual((yield* key.keyset).current.id, after.current.id)
        // A new process sees the rotated keyset and still opens the old record.
        const fresh = yield* open({ home, source, keyring })
        const ks = yield* fresh.keyset
        assert.strictEqual(ks.current.id, after.current.id)
        const opened = Envelope.open({ keys: EncryptionKey.lookupOf(ks), namespace: "n", sessionId: "s", data: sealed })
        assert.strictEqual(opened._tag, "Success")
        // Retire keeps what is still in use, then drops it.
        assert.strictEqual((yield* key.retire([before.current.id])).all.size, 2)
        const retired = yield* key.retire([])
        assert.deepStrictEqual([...retired.all.keys()], [after.current.id])
        const reloaded = yield* fresh.reload
        assert.deepStrictEqual([...reloaded.all.keys()], [after.current.id])
        if (source === "file") assert.strictEqual(modeOf(keyFileOf(home)), 0o600)
      }
    }).pipe(Effect.scoped))

  it("error messages never contain key material", () => {
    const key = Crypto.randomBytes(32)
    const reasons: Array<EncryptionKey.Reason> = [
      { _tag: "Missing", detail: "d", fix: "f" },
      { _tag: "Unavailable", detail: "d", fix: "f" },
      { _tag: "InsecureKeyFile", path: "/k", problem: "Permissions", mode: 0o644 },
      { _tag: "InsecureKeyFile", path: "/k", problem: "ForeignOwner", owner: 0 },
      { _tag: "Corrupted", where: "key file /k", detail: "not a keyset", fix: "restore it" },
      { _tag: "RotationUnsupported" },
      { _tag: "SourceChanged", remembered: "keyring", rememberedIn: "/s/key-source.json" },
      { _tag: "Io", path: "/k", detail: "EIO" }
    ]
    for (const reason of reasons) {
      const m = new EncryptionKey.EncryptionKeyError({ source: "file", reason }).message
      assert.include(m, "encryption key (file)")
      noKeyIn(m, [key])
    }
  })
})
