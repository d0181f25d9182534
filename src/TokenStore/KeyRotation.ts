/**
 * Key rotation of the encrypted file store: re-sealing every record with the
 * data key's new current key, and retiring keys no record names any more.
 * Every step is one atomic replace of one file, and old keys stay in the
 * keyset until nothing needs them, so a rotation killed at any point leaves
 * every record readable.
 */
import { Effect, FileSystem, Option, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as AuditLog from "../AuditLog.js"
import * as EncryptionKey from "../EncryptionKey.js"
import * as AtomicFile from "../internal/AtomicFile.js"
import * as Envelope from "../internal/Envelope.js"
import * as RecordCodec from "../internal/RecordCodec.js"
import { SessionConfig } from "../SessionConfig.js"
import * as TokenStore from "../TokenStore.js"
import { UserContext } from "../UserContext.js"
import { reasonOf, recordSuffix } from "./EncryptedFile.js"

const backend = "filesystem" as const

/** What a re-encryption did. */
export interface Reencrypted {
  readonly keyId: Envelope.KeyId
  readonly rewritten: number
  readonly alreadyCurrent: number
  /** Records that did not open (left for `get` to set aside). */
  readonly unreadable: number
}

/**
 * Re-seals every record not sealed with the current key, one atomic replace
 * per file. Old keys stay in the keyset meanwhile, so a crash at any point
 * leaves every record readable.
 */
export const reencryptAll = Effect.fn("TokenStore.filesystem.reencryptAll")(function*() {
  const key = yield* EncryptionKey.EncryptionKey
  const user = yield* UserContext
  const config = yield* SessionConfig
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = user.storageDirectory
  const codec = RecordCodec.sealed(key, user.namespace)
  const keyset = yield* key.keyset
  const fail = (e: PlatformError) => new TokenStore.TokenStoreError({ backend, operation: "put", reason: reasonOf(e) })
  const names = (yield* fs.readDirectory(dir).pipe(Effect.mapError(fail)))
    .filter((n) => n.endsWith(recordSuffix) && !n.startsWith("."))
  let rewritten = 0, alreadyCurrent = 0, unreadable = 0
  for (const name of names) {
    const file = path.join(dir, name)
    const fileKey = name.slice(0, -recordSuffix.length)
    const data = yield* fs.readFile(file).pipe(Effect.option)
    if (Option.isNone(data)) continue
    if (Envelope.keyIdOfSealed(data.value) === keyset.current.id) {
      alreadyCurrent++
      continue
    }
    const plain = yield* Effect.option(codec.open(fileKey, data.value))
    if (Option.isNone(plain)) {
      unreadable++
      continue
    }
    const sealed = yield* codec.seal(fileKey, plain.value)
    // Skip a record replaced since it was read: the writer sealed it with a key of the keyset.
    const again = yield* fs.readFile(file).pipe(Effect.option)
    if (Option.isNone(again) || Buffer.compare(again.value, data.value) !== 0) continue
    yield* AtomicFile.write(file, sealed, config.settings.tokenStorage.filePermissions).pipe(Effect.mapError(fail))
    rewritten++
  }
  return { keyId: keyset.current.id, rewritten, alreadyCurrent, unreadable } satisfies Reencrypted
})

/**
 * Rotates the data key: adds a new current key, re-seals every record with it,
 * then retires the old keys that no record file still names, except the key
 * just replaced: processes that loaded the keyset before the rotation may
 * still seal with it until they reload, so it is kept until the next rotation.
 */
export const rotateKey = Effect.fn("TokenStore.filesystem.rotateKey")(function*() {
  const key = yield* EncryptionKey.EncryptionKey
  const user = yield* UserContext
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  // The key being replaced stays in the keyset until the next rotation: a process
  // that loaded the keyset earlier may still seal one record with it, and that
  // record must stay readable. The next rotation re-seals it before retiring.
  const previous = (yield* key.keyset).current.id
  yield* key.rotate
  const result = yield* reencryptAll()
  const names = yield* fs.readDirectory(user.storageDirectory).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>))
  const stillUsed = new Set<Envelope.KeyId>()
  for (const name of names.filter((n) => n.endsWith(recordSuffix) && !n.startsWith("."))) {
    const data = yield* fs.readFile(path.join(user.storageDirectory, name)).pipe(Effect.option)
    const id = Option.isSome(data) ? Envelope.keyIdOfSealed(data.value) : undefined
    if (id !== undefined) stillUsed.add(id)
  }
  stillUsed.add(previous)
  const keyset = yield* key.retire(stillUsed)
  yield* AuditLog.record({
    event: "key_rotated",
    outcome: "rotated",
    reason: `file store data key rotated; ${keyset.all.size} key(s) kept`,
    backend: "filesystem"
  })
  return { ...result, keysKept: keyset.all.size }
})
