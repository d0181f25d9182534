import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Context, DateTime, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as EncryptionKey from "../../src/EncryptionKey.js"
import * as Envelope from "../../src/internal/Envelope.js"
import * as FileWorker from "../../src/internal/FileWorker.js"
import * as MetadataIndex from "../../src/internal/MetadataIndex.js"
import * as TokenStore from "../../src/TokenStore.js"
import * as EncryptedFile from "../../src/TokenStore/EncryptedFile.js"
import * as KeyRotation from "../../src/TokenStore/KeyRotation.js"
import { UserContext } from "../../src/UserContext.js"
import { environment, type Options, sessionDirectoryOf, tempDir } from "../support/FileStoreFixtures.js"
import { conformance, sampleRecord } from "../support/TokenStoreConformance.js"

class StorageDir extends Context.Service<StorageDir, string>()("test/StorageDir") {}

/** Everything a process would build: config, user context, data key (when encrypting) and store. */
const processLayer = (o: Options) =>
  Layer.mergeAll(
    EncryptedFile.layerConfig,
    Layer.effect(StorageDir, Effect.map(UserContext, (u) => u.storageDirectory))
  ).pipe(Layer.provideMerge(environment(o)))

/** What the key rotation command of a process would build. */
const rotationLayer = (o: Options) => EncryptionKey.layer.pipe(Layer.provideMerge(environment(o)))

/** Opens a store as a new process would; also returns its storage directory. */
const openStore = (o: Options) =>
  Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const dir = yield* StorageDir
    return { store, dir }
  }).pipe(Effect.provide(processLayer(o)))

const fileOf = (dir: string, id: string) => NodePathModule.join(dir, MetadataIndex.fileKeyOf(id) + EncryptedFile.recordSuffix)
const indexFileOf = (dir: string, id: string) => NodePathModule.join(dir, "index", MetadataIndex.fileKeyOf(id) + ".json")
const modeOf = (p: string) => Fs.statSync(p).mode & 0o777

const errorOf = <A>(exit: Exit.Exit<A, TokenStore.TokenStoreError>): TokenStore.TokenStoreError => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const r = Exit.isFailure(exit) ? exit.cause.reasons.find((x) => x._tag === "Fail") : undefined
  assert.isDefined(r)
  return (r as { error: TokenStore.TokenStoreError }).error
}

const secretOf = (r: TokenStore.SessionRecord) => r.refreshToken === undefined ? undefined : Redacted.value(r.refreshToken)

conformance("filesystem (encrypted)", {
  backend: "filesystem",
  persistent: true,
  fresh: Effect.map(tempDir("mts-ef-"), (home) => Effect.map(openStore({ home, source: "file" }), (s) => s.store))
})

conformance("filesystem (plaintext)", {
  backend: "filesystem",
  persistent: true,
  fresh: Effect.map(tempDir("mts-ef-"), (home) => Effect.map(openStore({ home, encryption: false }), (s) => s.store))
})

describe("EncryptedFile", () => {
  it.live("one damaged record of three is reported and set aside; the other two are untouched", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* Effect.forEach([1, 2, 3], (n) => store.put(sampleRecord(n)))
      const victim = fileOf(dir, "provider-2")
      const bytes = Fs.readFileSync(victim)
      bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0x01
      Fs.writeFileSync(victim, bytes)

      const e = errorOf(yield* Effect.exit(store.get("provider-2")))
      assert.strictEqual(e.reason._tag, "Corrupted")
      const quarantinedAs = e.reason._tag === "Corrupted" ? e.reason.quarantinedAs : undefined
      assert.isDefined(quarantinedAs)
      assert.match(quarantinedAs!, /\.session\.corrupt-\d+$/)
      assert.isFalse(Fs.existsSync(victim))
      assert.deepStrictEqual(Fs.readFileSync(quarantinedAs!), bytes, "moved aside, not deleted")
      assert.strictEqual(e.retryable, false)
      assert.notInclude(e.message, "secret")

      assert.strictEqual(secretOf(yield* store.get("provider-1")), "RT-secret-1")
      assert.strictEqual(secretOf(yield* store.get("provider-3")), "RT-secret-3")
      const states = new Map((yield* store.list).map((m) => [m.id, m.state]))
      assert.deepStrictEqual(
        [...states].sort(),
        [["provider-1", "active"], ["provider-2", "corrupted"], ["provider-3", "active"]]
      )
      // Asked again, the session is still reported corrupted, and a new process agrees.
      assert.strictEqual(errorOf(yield* Effect.exit(store.get("provider-2"))).reason._tag, "Corrupted")
      const again = yield* openStore({ home, source: "file" })
      const listed = yield* again.store.list
      assert.strictEqual(listed.find((m) => m.id === "provider-2")?.state, "corrupted")

      // A fresh login replaces it normally.
      yield* store.put(sampleRecord(2, { refreshToken: Redacted.make("RT-new") }))
      assert.strictEqual(secretOf(yield* store.get("provider-2")), "RT-new")
      assert.strictEqual((yield* store.list).find((m) => m.id === "provider-2")?.state, "active")
      assert.isTrue(Fs.existsSync(quarantinedAs!), "the quarantined copy is kept")
    }).pipe(Effect.scoped))

  it.live("a store big enough to be listed by a worker thread reports damage exactly as a small one", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      const count = FileWorker.manyFiles + 20
      yield* Effect.forEach(Array.from({ length: count }, (_, i) => i + 1), (n) => store.put(sampleRecord(n)), { concurrency: 16 })
      // One record damaged, one unreadable (a directory in its place).
      const victim = fileOf(dir, "provider-7")
      const bytes = Fs.readFileSync(victim)
      bytes.writeUInt8(bytes.readUInt8(bytes.length - 20) ^ 0x01, bytes.length - 20)
      Fs.writeFileSync(victim, bytes)
      Fs.rmSync(fileOf(dir, "provider-9"))
      Fs.mkdirSync(fileOf(dir, "provider-9"))

      const listed = yield* store.list
      assert.strictEqual(listed.length, count)
      const byId = new Map(listed.map((m) => [m.id, m]))
      assert.strictEqual(byId.get("provider-7")?.state, "corrupted")
      assert.isFalse(Fs.existsSync(victim), "set aside")
      assert.isTrue(Fs.readdirSync(dir).some((n) => n.startsWith(`${NodePathModule.basename(victim)}${EncryptedFile.quarantineInfix}`)))
      assert.match(Option.getOrElse(byId.get("provider-9")!.lastError, () => ""), /record unreadable/)
      assert.strictEqual(listed.filter((m) => m.state === "active").length, count - 1)
      assert.strictEqual(secretOf(yield* store.get(`provider-${count}`)), `RT-secret-${count}`)
    }).pipe(Effect.scoped))

  it.live("list alone finds a damaged record, reports it and sets it aside", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* Effect.forEach([1, 2, 3], (n) => store.put(sampleRecord(n)))
      Fs.truncateSync(fileOf(dir, "provider-3"), 20)
      const listed = yield* store.list
      assert.strictEqual(listed.length, 3)
      assert.deepStrictEqual(listed.filter((m) => m.state === "corrupted").map((m) => m.id), ["provider-3"])
      assert.strictEqual(Fs.readdirSync(dir).filter((n) => n.includes(EncryptedFile.quarantineInfix)).length, 1)
      const e = errorOf(yield* Effect.exit(store.get("provider-3")))
      assert.strictEqual(e.reason._tag, "Corrupted")
      assert.include(e.message, "truncated")
    }).pipe(Effect.scoped))

  it.live("a record copied over another session's file does not open (bound to its session)", () =>
    Effect.gen(function*() {
      for (const encryption of [true, false]) {
        const home = yield* tempDir("mts-ef-")
        const { dir, store } = yield* openStore({ home, source: "file", encryption })
        yield* store.put(sampleRecord(1))
        yield* store.put(sampleRecord(2))
        Fs.copyFileSync(fileOf(dir, "provider-1"), fileOf(dir, "provider-2"))
        const e = errorOf(yield* Effect.exit(store.get("provider-2")))
        assert.strictEqual(e.reason._tag, "Corrupted", `encryption ${encryption}`)
        assert.strictEqual(secretOf(yield* store.get("provider-1")), "RT-secret-1")
      }
    }).pipe(Effect.scoped))

  it.live("records read before are never served stale: another process's write is read, tampering after a read is refused", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      const other = (yield* openStore({ home, source: "file" })).store
      yield* store.put(sampleRecord(1))
      assert.strictEqual((yield* store.get("provider-1")).generation, sampleRecord(1).generation)
      // Another process rotates the tokens: this one reads them, not what it wrote or read before.
      yield* other.put(new TokenStore.SessionRecord({ ...sampleRecord(1), generation: 7, refreshToken: Redacted.make("RT-rotated") }))
      const seen = yield* store.get("provider-1")
      assert.strictEqual(seen.generation, 7)
      assert.strictEqual(secretOf(seen), "RT-rotated")
      // One flipped byte in bytes this process has opened before still does not open.
      const file = fileOf(dir, "provider-1")
      const bytes = Fs.readFileSync(file)
      bytes.writeUInt8(bytes.readUInt8(bytes.length - 5) ^ 0x01, bytes.length - 5)
      Fs.writeFileSync(file, bytes)
      assert.strictEqual(errorOf(yield* Effect.exit(store.get("provider-1"))).reason._tag, "Corrupted")
    }).pipe(Effect.scoped))

  it.live("a record of another user (namespace) or sealed with another key does not open", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* store.put(sampleRecord(1))
      // Same key, same session id, but another namespace: another user's directory.
      const other = yield* tempDir("mts-ef-")
      const keyFile = NodePathModule.join(home, ".magictunnel", "encryption.key")
      const principalStore = yield* openStore({ home: other, source: "file", keyFile, username: "mallory" })
      Fs.copyFileSync(fileOf(dir, "provider-1"), fileOf(principalStore.dir, "provider-1"))
      const e = errorOf(yield* Effect.exit(principalStore.store.get("provider-1")))
      assert.strictEqual(e.reason._tag, "Corrupted")
      assert.include(e.message, "authentication failed")
      // Another key altogether.
      const wrong = yield* openStore({ home, source: "file", keyFile: NodePathModule.join(other, "other.key") })
      const e2 = errorOf(yield* Effect.exit(wrong.store.get("provider-1")))
      assert.strictEqual(e2.reason._tag, "Corrupted")
      assert.include(e2.message, "not in the keyset")
    }).pipe(Effect.scoped))

  it.live("files are 0600 and directories 0700 even with umask 000", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const previous = process.umask(0)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.umask(previous)))
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* store.put(sampleRecord(1))
      yield* store.put(sampleRecord(1, { generation: 1 }))
      assert.strictEqual(modeOf(fileOf(dir, "provider-1")), 0o600)
      assert.strictEqual(modeOf(indexFileOf(dir, "provider-1")), 0o600)
      assert.strictEqual(modeOf(dir), 0o700)
      assert.strictEqual(modeOf(NodePathModule.join(dir, "index")), 0o700)
      assert.strictEqual(modeOf(sessionDirectoryOf(home)), 0o700)
      assert.strictEqual(modeOf(NodePathModule.join(home, ".magictunnel", "encryption.key")), 0o600)
    }).pipe(Effect.scoped))

  it.live("encrypted files hold no secret; the store is not insecure and says how it is protected", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* store.put(sampleRecord(1))
      const raw = Fs.readFileSync(fileOf(dir, "provider-1"))
      assert.isTrue(Envelope.isSealed(raw))
      assert.notInclude(raw.toString("latin1"), "secret")
      assert.notInclude(Fs.readFileSync(indexFileOf(dir, "provider-1"), "utf8"), "secret")
      assert.isFalse(store.insecure)
      assert.strictEqual(store.durability, "persistent")
      const h = yield* store.health
      assert.isTrue(h.available, h.detail)
      assert.include(h.detail, "AES-256-GCM")
      assert.include(h.detail, "encryption.key")
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((n) => n.startsWith(".")), [], "the probe cleans up")
    }).pipe(Effect.scoped))

  it.live("plaintext mode: JSON files, marked insecure, and the modes never misread each other", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const plain = yield* openStore({ home, source: "file", encryption: false })
      assert.isTrue(plain.store.insecure)
      assert.include((yield* plain.store.health).detail, "PLAINTEXT")
      yield* plain.store.put(sampleRecord(1))
      const json = JSON.parse(Fs.readFileSync(fileOf(plain.dir, "provider-1"), "utf8")) as Record<string, unknown>
      assert.strictEqual(json["refreshToken"], "RT-secret-1")
      assert.strictEqual(modeOf(fileOf(plain.dir, "provider-1")), 0o600)

      // An encrypting store refuses the plaintext record without moving it.
      const sealed = yield* openStore({ home, source: "file" })
      const e = errorOf(yield* Effect.exit(sealed.store.get("provider-1")))
      assert.strictEqual(e.reason._tag, "Corrupted")
      assert.include(e.message, "plaintext record")
      assert.isTrue(Fs.existsSync(fileOf(plain.dir, "provider-1")))
      // ...and the plaintext store refuses an encrypted one.
      yield* sealed.store.put(sampleRecord(2))
      const e2 = errorOf(yield* Effect.exit(plain.store.get("provider-2")))
      assert.strictEqual(e2.reason._tag, "Corrupted")
      assert.include(e2.message, "encrypted record")
      assert.isTrue(Fs.existsSync(fileOf(plain.dir, "provider-2")))
      assert.strictEqual(secretOf(yield* plain.store.get("provider-1")), "RT-secret-1")
    }).pipe(Effect.scoped))

  it.live("list repairs the index where it matters: missing entries written, orphans dropped; damaged ones follow the next put", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* Effect.forEach([1, 2, 3, 4], (n) => store.put(sampleRecord(n)))
      Fs.rmSync(indexFileOf(dir, "provider-1"))
      Fs.writeFileSync(indexFileOf(dir, "provider-2"), "{ not json")
      Fs.writeFileSync(indexFileOf(dir, "provider-3"), Fs.readFileSync(indexFileOf(dir, "provider-4")))
      Fs.rmSync(fileOf(dir, "provider-4"))
      const junk = NodePathModule.join(dir, "index", `${MetadataIndex.fileKeyOf("gone")}.json`)
      Fs.writeFileSync(junk, "garbage")
      const entryOf = (id: string) => JSON.parse(Fs.readFileSync(indexFileOf(dir, id), "utf8")) as { id: string; state: string }
      // The records decide what is listed, whatever their entries say.
      const ids = (yield* store.list).map((m) => m.id).sort()
      assert.deepStrictEqual(ids, ["provider-1", "provider-2", "provider-3"])
      assert.strictEqual(entryOf("provider-1").id, "provider-1", "a missing entry is written from its record")
      assert.isFalse(Fs.existsSync(indexFileOf(dir, "provider-4")), "an entry without a record is dropped")
      assert.isFalse(Fs.existsSync(junk), "a damaged index file without a record is dropped")
      // The entry of a record that opens is never read by list (the record is the truth), so a damaged
      // one stays until the next put of its session rewrites it.
      yield* Effect.forEach([2, 3], (n) => store.put(sampleRecord(n)))
      for (const id of ["provider-2", "provider-3"]) {
        assert.strictEqual(entryOf(id).id, id)
        assert.strictEqual(entryOf(id).state, "active")
      }
      // Once its record is gone bad, the entry is what names the session: it is listed as corrupted.
      Fs.writeFileSync(fileOf(dir, "provider-2"), "garbage")
      const listed = yield* store.list
      assert.deepStrictEqual(
        listed.map((m) => [m.id, m.state]).sort(),
        [["provider-1", "active"], ["provider-2", "corrupted"], ["provider-3", "active"]]
      )
    }).pipe(Effect.scoped))

  it.live("a refresh leaves the index entry alone; a new state, or an entry replaced or removed by anyone, is written again", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      const entryFile = indexFileOf(dir, "provider-1")
      const entry = () => JSON.parse(Fs.readFileSync(entryFile, "utf8")) as { id: string; state: string; generation: number }
      yield* store.put(sampleRecord(1))
      const written = Fs.statSync(entryFile).ino

      // A refresh: new tokens, expiry and generation. The record changes, its entry does not.
      const refreshed = sampleRecord(1, {
        generation: 1,
        accessToken: Redacted.make("AT-secret-refreshed"),
        expiresAt: DateTime.makeUnsafe(1_900_000_500_000)
      })
      yield* store.put(refreshed)
      assert.strictEqual((yield* store.get("provider-1")).generation, 1)
      assert.strictEqual(Fs.statSync(entryFile).ino, written, "the entry was not replaced")
      assert.strictEqual(entry().generation, 0, "it keeps the generation of its last write")

      // The grant dies: the entry must say so, should the record later not open.
      const dead = sampleRecord(1, { generation: 1, state: "needs_reauth", accessToken: undefined, refreshToken: undefined })
      yield* store.put(dead)
      assert.strictEqual(entry().state, "needs_reauth")

      // Another process replaced the entry (here with a stale one): the next put writes it again.
      Fs.writeFileSync(`${entryFile}.other`, JSON.stringify({ ...entry(), state: "active" }))
      Fs.renameSync(`${entryFile}.other`, entryFile)
      yield* store.put(dead)
      assert.strictEqual(entry().state, "needs_reauth")

      // Removed: written again.
      Fs.rmSync(entryFile)
      yield* store.put(dead)
      assert.strictEqual(entry().id, "provider-1")

      // The session listed from its entry once its record goes bad names it as the last put did.
      Fs.writeFileSync(fileOf(dir, "provider-1"), "garbage")
      const listed = yield* store.list
      assert.deepStrictEqual(listed.map((m) => [m.id, m.state]), [["provider-1", "corrupted"]])
    }).pipe(Effect.scoped))

  it.live("a busy store (its files read and written by a worker thread) behaves exactly as a new one", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      // Busy enough to start its worker, then give it time to come online.
      for (let i = 0; i <= FileWorker.startAfter; i++) yield* store.put(sampleRecord(1, { generation: i }))
      yield* Effect.sleep("300 millis")
      yield* Effect.forEach([2, 3, 4], (n) => store.put(sampleRecord(n)))
      assert.strictEqual((yield* store.get("provider-1")).generation, FileWorker.startAfter)
      assert.strictEqual(secretOf(yield* store.get("provider-3")), "RT-secret-3")
      assert.strictEqual(modeOf(fileOf(dir, "provider-4")), 0o600)
      const entryFile = indexFileOf(dir, "provider-2")
      const entryIno = Fs.statSync(entryFile).ino
      yield* store.put(sampleRecord(2, { generation: 1 }))
      assert.strictEqual(Fs.statSync(entryFile).ino, entryIno, "a refresh leaves the entry alone")
      Fs.rmSync(entryFile)
      yield* store.put(sampleRecord(2, { generation: 2 }))
      assert.isTrue(Fs.existsSync(entryFile), "a removed entry is written again")

      // Damage is found and set aside the same way.
      const victim = fileOf(dir, "provider-3")
      const bytes = Fs.readFileSync(victim)
      bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 0x01
      Fs.writeFileSync(victim, bytes)
      const e = errorOf(yield* Effect.exit(store.get("provider-3")))
      assert.strictEqual(e.reason._tag, "Corrupted")
      assert.isFalse(Fs.existsSync(victim))
      assert.strictEqual(errorOf(yield* Effect.exit(store.get("provider-9"))).reason._tag, "NotFound")

      // Another process reads what it wrote.
      const other = yield* openStore({ home, source: "file" })
      assert.strictEqual((yield* other.store.get("provider-2")).generation, 2)
      assert.deepStrictEqual(
        (yield* other.store.list).map((m) => [m.id, m.state]).sort(),
        [["provider-1", "active"], ["provider-2", "active"], ["provider-3", "corrupted"], ["provider-4", "active"]]
      )
    }).pipe(Effect.scoped))

  it.live("key rotation re-seals every record with the new key; everything still reads", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* Effect.forEach([1, 2, 3], (n) => store.put(sampleRecord(n)))
      const keyIds = () => [1, 2, 3].map((n) => Envelope.keyIdOfSealed(Fs.readFileSync(fileOf(dir, `provider-${n}`))))
      const before = keyIds()
      assert.strictEqual(new Set(before).size, 1)

      const result = yield* KeyRotation.rotateKey().pipe(Effect.provide(rotationLayer({ home, source: "file" })))
      assert.strictEqual(result.rewritten, 3)
      assert.strictEqual(result.keysKept, 2, "the replaced key stays until the next rotation")
      const after = keyIds()
      assert.deepStrictEqual(after, [result.keyId, result.keyId, result.keyId])
      assert.notStrictEqual(result.keyId, before[0])
      const keyFile = JSON.parse(Fs.readFileSync(NodePathModule.join(home, ".magictunnel", "encryption.key"), "utf8")) as {
        keys: Array<unknown>
      }
      assert.strictEqual(keyFile.keys.length, 2)

      const next = yield* openStore({ home, source: "file" })
      for (const n of [1, 2, 3]) assert.strictEqual(secretOf(yield* next.store.get(`provider-${n}`)), `RT-secret-${n}`)
      // The store opened before the rotation still reads (it reloads the keyset on an unknown key id).
      assert.strictEqual(secretOf(yield* store.get("provider-1")), "RT-secret-1")
      // A process that loaded the keyset before the rotation may still seal with the old key: readable.
      yield* store.put(sampleRecord(4))
      assert.strictEqual(secretOf(yield* next.store.get("provider-4")), "RT-secret-4")

      // The next rotation re-seals that record too, then retires the first key.
      const second = yield* KeyRotation.rotateKey().pipe(Effect.provide(rotationLayer({ home, source: "file" })))
      assert.strictEqual(second.keysKept, 2)
      const ids = [1, 2, 3, 4].map((n) => Envelope.keyIdOfSealed(Fs.readFileSync(fileOf(dir, `provider-${n}`))))
      assert.deepStrictEqual(ids, [second.keyId, second.keyId, second.keyId, second.keyId])
      const finalKeys = JSON.parse(Fs.readFileSync(NodePathModule.join(home, ".magictunnel", "encryption.key"), "utf8")) as {
        keys: Array<{ id: string }>
      }
      assert.notInclude(finalKeys.keys.map((k) => k.id), before[0], "the first key is retired")
    }).pipe(Effect.scoped))

  it.live("a rotation interrupted before re-encryption leaves every record readable", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* Effect.forEach([1, 2], (n) => store.put(sampleRecord(n)))
      const oldId = Envelope.keyIdOfSealed(Fs.readFileSync(fileOf(dir, "provider-1")))
      // The new key is persisted, then the process dies: no record was re-sealed yet.
      yield* Effect.flatMap(EncryptionKey.EncryptionKey, (k) => k.rotate).pipe(
        Effect.provide(rotationLayer({ home, source: "file" }))
      )
      const next = yield* openStore({ home, source: "file" })
      assert.strictEqual(secretOf(yield* next.store.get("provider-1")), "RT-secret-1")
      yield* next.store.put(sampleRecord(3))
      const newId = Envelope.keyIdOfSealed(Fs.readFileSync(fileOf(dir, "provider-3")))
      assert.notStrictEqual(newId, oldId)
      // Half of a re-encryption: one record re-sealed, then the process dies again.
      const rest = yield* KeyRotation.reencryptAll().pipe(Effect.provide(rotationLayer({ home, source: "file" })))
      assert.deepStrictEqual([rest.rewritten, rest.alreadyCurrent, rest.unreadable], [2, 1, 0])
      const last = yield* openStore({ home, source: "file" })
      assert.deepStrictEqual((yield* last.store.list).map((m) => m.state), ["active", "active", "active"])
    }).pipe(Effect.scoped))

  it.live("temp files of killed writers are swept when a store opens; fresh ones are left alone", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-ef-")
      const { dir, store } = yield* openStore({ home, source: "file" })
      yield* store.put(sampleRecord(1))
      const stale = NodePathModule.join(dir, `.${MetadataIndex.fileKeyOf("x")}.session.tmp-${Crypto.randomBytes(6).toString("hex")}`)
      const staleIndex = NodePathModule.join(dir, "index", `.abc.json.tmp-0123456789ab`)
      const fresh = NodePathModule.join(dir, `.fresh.session.tmp-0123456789ab`)
      for (const f of [stale, staleIndex, fresh]) Fs.writeFileSync(f, "partial", { mode: 0o600 })
      const old = new Date(Date.now() - 5 * 60_000)
      Fs.utimesSync(stale, old, old)
      Fs.utimesSync(staleIndex, old, old)
      const next = yield* openStore({ home, source: "file" })
      assert.isFalse(Fs.existsSync(stale))
      assert.isFalse(Fs.existsSync(staleIndex))
      assert.isTrue(Fs.existsSync(fresh), "a writer may still be working on it")
      assert.deepStrictEqual((yield* next.store.list).map((m) => m.id), ["provider-1"])
    }).pipe(Effect.scoped))
})
