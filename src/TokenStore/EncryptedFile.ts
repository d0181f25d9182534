/**
 * The encrypted file token store: one file per session under the user
 * context's storage directory, sealed with the data key (`EncryptionKey`) in
 * the AES-256-GCM envelope, written atomically with mode 0600.
 *
 * A record file is named after a hash of its session id
 * (`MetadataIndex.fileKeyOf`), and the envelope's AAD binds it to that name
 * and to the namespace: a file copied over another session's, or into another
 * user's directory, does not open. Binding the file key (rather than the raw
 * id) lets `list` open a record found without its index entry and rebuild the
 * entry from it.
 *
 * The record is the truth; its index entry only names the session when the
 * record cannot. So `put` makes the record durable (fsync, rename, directory
 * fsync) and then replaces the entry atomically but without fsync (it is
 * rebuilt from the record), and only when the entry would name the session
 * differently or is not the file this process last wrote
 * (`MetadataIndex.putUnlessCurrent`): a refresh changes expiry, generation and
 * timestamps only, and leaves the entry as it was. `list` reads the index
 * directory's names only: it opens every record, reads an entry only for a
 * record that is missing, unreadable or does not open, and writes one only
 * where a record has none. An entry left a put behind by a kill is rewritten
 * by the next put.
 *
 * Key rotation (re-sealing every record) is `KeyRotation.ts`; listing (the
 * records and the index reconciled) is `FileListing.ts`.
 *
 * Damage stays local: a record that does not open or decode is moved aside as
 * `<name>.corrupt-<epoch ms>` (never deleted), its index entry is marked
 * `corrupted`, and every other session is untouched. With
 * `token_storage.encryption_enabled: false` records are plaintext JSON (still
 * 0600); the store then says `insecure` and its health says why.
 */
import * as Crypto from "node:crypto"
import { Clock, Duration, Effect, FileSystem, Layer, Option, Path, Result } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as EncryptionKey from "../EncryptionKey.js"
import * as AtomicFile from "../internal/AtomicFile.js"
import * as FileWorker from "../internal/FileWorker.js"
import * as MetadataIndex from "../internal/MetadataIndex.js"
import * as RecordCodec from "../internal/RecordCodec.js"
import { SessionConfig } from "../SessionConfig.js"
import * as TokenStore from "../TokenStore.js"
import { UserContext } from "../UserContext.js"
import * as FileListing from "./FileListing.js"

/** The suffix of record files. */
export const recordSuffix = ".session"
/** What a quarantined record is renamed to: `<name>.corrupt-<epoch ms>`. */
export const quarantineInfix = ".corrupt-"
/** Temp files of killed writers older than this are removed when a store opens. */
export const staleTempAge = Duration.seconds(60)
/** How many opened records a store keeps with their bytes, so re-reading unchanged bytes costs no decrypt or decode. */
export const openedRecords = 1024
/** The health probe gives up after this long. */
export const healthTimeout = Duration.seconds(5)

const backend = "filesystem" as const
const utf8 = new TextEncoder()

/** The store error reason of a file-system failure. */
export const reasonOf = (e: PlatformError): TokenStore.Reason =>
  e.reason._tag === "PermissionDenied"
    ? { _tag: "AccessDenied", detail: e.message }
    : { _tag: "Io", detail: e.message }

/** The provider part of a session id (`provider` or `provider~hash`). */
const providerOf = (id: string) => id.split("~")[0] ?? id

/** Builds the store on `codec`. */
const makeWith = Effect.fnUntraced(function*(codec: RecordCodec.Codec) {
  const config = yield* SessionConfig
  const user = yield* UserContext
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = user.storageDirectory
  const mode = config.settings.tokenStorage.filePermissions
  const services = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) =>
    e.pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.provideService(Path.Path, path))
  const fail = (operation: TokenStore.TokenStoreError["operation"], sessionId?: string) => (e: PlatformError) =>
    new TokenStore.TokenStoreError({ backend, operation, sessionId, reason: reasonOf(e) })

  const index = yield* services(MetadataIndex.make(dir, mode)).pipe(Effect.mapError(fail("open")))
  const now = yield* Clock.currentTimeMillis
  for (const d of [dir, index.directory]) {
    yield* services(AtomicFile.sweepTemps(d, now, Duration.toMillis(staleTempAge)))
  }

  // Reads and replaces go through a worker thread once the store is busy (see FileWorker.ts).
  const files = yield* FileWorker.make().pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.provideService(Path.Path, path))
  const fileOf = (fileKey: string) => path.join(dir, fileKey + recordSuffix)
  const readBytes = files.read
  // The records last read or written, by file key, with the exact bytes they came from: a get that
  // reads the same bytes again (the read under the refresh lock after the read before it, or the read
  // after this process's own put) is answered without opening and decoding them again. Identical
  // bytes under the same key and binding open to the same record, so nothing is trusted that was
  // not checked once; different bytes are opened as usual. Bounded (least recently used dropped).
  const opened = new Map<string, { readonly bytes: Uint8Array; readonly record: TokenStore.SessionRecord }>()
  const remember = (fileKey: string, bytes: Uint8Array, record: TokenStore.SessionRecord) => {
    opened.delete(fileKey)
    opened.set(fileKey, { bytes, record })
    if (opened.size > openedRecords) {
      const [oldest] = opened.keys()
      if (oldest !== undefined) opened.delete(oldest)
    }
  }
  const readRecord = (fileKey: string, data: Uint8Array) => {
    const known = opened.get(fileKey)
    if (known !== undefined && Buffer.compare(known.bytes, data) === 0) return Effect.succeed(known.record)
    return Effect.flatMap(codec.open(fileKey, data), (plain) => Effect.fromResult(RecordCodec.decodeResult(fileKey, plain))).pipe(
      Effect.tap((record) => Effect.sync(() => remember(fileKey, data, record)))
    )
  }

  /** Moves a damaged record aside (if it is still the bytes we judged) and marks its index entry. */
  const quarantine = (id: string, fileKey: string, data: Uint8Array, problem: RecordCodec.Problem) =>
    Effect.gen(function*() {
      const file = fileOf(fileKey)
      if (!problem.quarantine) return undefined
      const again = yield* readBytes(file).pipe(Effect.mapError(fail("get", id)))
      if (Option.isNone(again) || Buffer.compare(again.value, data) !== 0) {
        return yield* new TokenStore.TokenStoreError({
          backend,
          operation: "get",
          sessionId: id,
          reason: { _tag: "Conflict", detail: "the record changed while it was read; try again" }
        })
      }
      const target = `${file}${quarantineInfix}${yield* Clock.currentTimeMillis}`
      yield* fs.rename(file, target).pipe(Effect.mapError(fail("get", id)))
      yield* index.markCorrupted(id, { provider: providerOf(id), backend }, problem.detail, target).pipe(
        Effect.catch((e) => Effect.logWarning(`could not mark session ${id} corrupted in the index: ${e.message}`))
      )
      return target
    })

  const corrupted = (id: string, fileKey: string, data: Uint8Array) => (problem: RecordCodec.Problem) =>
    Effect.flatMap(quarantine(id, fileKey, data, problem), (quarantinedAs) =>
      Effect.fail(
        new TokenStore.TokenStoreError({
          backend,
          operation: "get",
          sessionId: id,
          reason: { _tag: "Corrupted", detail: problem.detail, quarantinedAs }
        })
      ))

  const get = Effect.fn("TokenStore.filesystem.get")(function*(id: string) {
    const fileKey = MetadataIndex.fileKeyOf(id)
    const data = yield* readBytes(fileOf(fileKey)).pipe(Effect.mapError(fail("get", id)))
    if (Option.isNone(data)) {
      // A session set aside earlier (by `list` or another process) stays Corrupted until it is put or removed.
      const entry = yield* index.get(id).pipe(Effect.orElseSucceed(() => Option.none<MetadataIndex.IndexEntry>()))
      const reason: TokenStore.Reason = Option.isSome(entry) && entry.value.state === "corrupted"
        ? { _tag: "Corrupted", detail: entry.value.lastError ?? "set aside earlier", quarantinedAs: entry.value.quarantinedAs }
        : { _tag: "NotFound" }
      return yield* new TokenStore.TokenStoreError({ backend, operation: "get", sessionId: id, reason })
    }
    return yield* readRecord(fileKey, data.value).pipe(Effect.catch(corrupted(id, fileKey, data.value)))
  })

  const put = Effect.fn("TokenStore.filesystem.put")(function*(record: TokenStore.SessionRecord) {
    const fileKey = MetadataIndex.fileKeyOf(record.id)
    const data = yield* codec.seal(fileKey, yield* RecordCodec.encode(record))
    // Record first (durable), then its index entry (atomic, not fsynced: it is rebuilt from the record).
    // The entry is written only once the record is durable, so it is never ahead of its record, even
    // after a power loss.
    opened.delete(fileKey)
    yield* files.replace({ target: fileOf(fileKey), data, mode, durable: true }).pipe(Effect.mapError(fail("put", record.id)))
    remember(fileKey, data, record)
    yield* index.putUnlessCurrent(MetadataIndex.entryOf(TokenStore.metadataOf(record, backend)), files).pipe(
      Effect.mapError(fail("put", record.id))
    )
  })

  const remove = Effect.fn("TokenStore.filesystem.remove")(function*(id: string) {
    opened.delete(MetadataIndex.fileKeyOf(id))
    yield* fs.remove(fileOf(MetadataIndex.fileKeyOf(id))).pipe(
      Effect.catchTag("PlatformError", (e) => AtomicFile.isNotFound(e) ? Effect.void : Effect.fail(e)),
      Effect.andThen(index.remove(id)),
      Effect.mapError(fail("remove", id))
    )
  })

  const list = FileListing.make({ dir, recordSuffix, fs, index, codec, files, fileOf, failure: fail("list"), quarantine })

  const health = TokenStore.timedProbe({
    backend,
    where: `files in ${dir}`,
    how: codec.describe,
    timeout: healthTimeout,
    // Write, read back and remove a sealed probe record, as a put and a get would.
    probe: Effect.gen(function*() {
      const probe = path.join(dir, `.health-probe${AtomicFile.tempInfix}${Crypto.randomBytes(6).toString("hex")}`)
      const payload = utf8.encode(`probe ${probe}`)
      yield* Effect.gen(function*() {
        const sealed = yield* codec.seal("health-probe", payload)
        yield* services(AtomicFile.write(probe, sealed, mode))
        const back = yield* fs.readFile(probe)
        const opened = yield* Effect.result(codec.open("health-probe", back))
        if (!(Result.isSuccess(opened) && Buffer.compare(opened.success, payload) === 0)) {
          return yield* Effect.fail({ message: "the probe record did not read back" })
        }
      }).pipe(Effect.ensuring(fs.remove(probe).pipe(Effect.ignore)))
    })
  })

  return TokenStore.TokenStore.of({
    backend,
    durability: "persistent",
    insecure: codec.insecure,
    get,
    put,
    remove,
    list: list(),
    // list opens every record (and sets damaged ones aside), so nobody needs to get each one to verify it.
    listVerifies: true,
    health
  })
})

/** The store as configured: sealed with `EncryptionKey`, or plaintext when `encryption_enabled` is false. */
export const make = Effect.gen(function*() {
  const config = yield* SessionConfig
  if (!config.settings.tokenStorage.encryptionEnabled) return yield* makeWith(RecordCodec.plaintext)
  const key = yield* EncryptionKey.EncryptionKey
  const user = yield* UserContext
  return yield* makeWith(RecordCodec.sealed(key, user.namespace))
})

/** A plaintext store (marked `insecure`), whatever the configuration says. */
export const makePlaintext = makeWith(RecordCodec.plaintext)

/** The file store; needs the `EncryptionKey` service (used only when encryption is enabled). */
export const layer = Layer.effect(TokenStore.TokenStore, make)

/** The file store with its data key from the configured source; builds no key when encryption is off. */
export const layerConfig = Layer.unwrap(Effect.map(SessionConfig, (config) =>
  config.settings.tokenStorage.encryptionEnabled
    ? layer.pipe(Layer.provide(EncryptionKey.layer))
    : Layer.effect(TokenStore.TokenStore, makePlaintext)))
