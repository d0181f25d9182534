/**
 * Keyring overflow: records too large for the OS keyring (Windows Credential
 * Manager takes 2560 bytes) kept as sealed files beside the metadata index,
 * `<storageDirectory>/keyring-overflow/<file key>.sealed`, written atomically.
 *
 * A file is sealed with the AES-256-GCM envelope whose AAD binds namespace and
 * session id, under a data key that lives in the keyring itself (account
 * `overflow-key:<namespace>`): a copied file is useless without that keyring
 * entry, as a copied keychain item would be. The key is created on first use
 * and read back after writing, so two processes creating it at once converge
 * on the one that was stored last (the envelope's key id says so if one lost).
 */
import * as Crypto from "node:crypto"
import { Clock, Data, Effect, FileSystem, Option, Path, Result } from "effect"
import type { PlatformError } from "effect/PlatformError"
import type * as Keyring from "../Keyring.js"
import * as AtomicFile from "./AtomicFile.js"
import * as Envelope from "./Envelope.js"
import { fileKeyOf } from "./MetadataIndex.js"

/** The data key entry is unusable (not 32 bytes of base64, or gone right after being written). */
export class OverflowKeyError extends Data.TaggedError("OverflowKeyError")<{ readonly detail: string }> {}

/** What reading an overflow file found. */
export type Read =
  | { readonly _tag: "Opened"; readonly text: string }
  /** `quarantine` is false when the file may be fine but cannot be opened here (its key is missing). */
  | { readonly _tag: "Damaged"; readonly detail: string; readonly quarantine: boolean }

/** The overflow files of one namespace. */
export interface Overflow {
  readonly directory: string
  /** None when the session has no overflow file. */
  readonly read: (id: string) => Effect.Effect<Option.Option<Read>, PlatformError | Keyring.KeyringError>
  readonly write: (id: string, text: string) => Effect.Effect<void, PlatformError | Keyring.KeyringError | OverflowKeyError>
  /** Removing a missing file succeeds. */
  readonly remove: (id: string) => Effect.Effect<void, PlatformError>
  /** Moves the file aside as `<file><infix><epoch ms>`; returns the new path. */
  readonly quarantine: (id: string, infix: string) => Effect.Effect<string, PlatformError>
}

const sealedSuffix = ".sealed"
const fromUtf8 = new TextDecoder("utf-8", { fatal: true })

/** Opens (creating 0700 if needed) the overflow directory `directory`. */
export const make = Effect.fnUntraced(function*(options: {
  readonly keyring: Keyring.Shape
  readonly service: string
  readonly keyAccount: string
  readonly namespace: string
  readonly directory: string
  readonly fileMode: number
}) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const { directory, keyAccount, keyring, namespace, service } = options
  if (!(yield* fs.exists(directory))) {
    yield* fs.makeDirectory(directory, { recursive: true, mode: 0o700 })
    yield* fs.chmod(directory, 0o700)
  }
  const fileOf = (id: string) => path.join(directory, fileKeyOf(id) + sealedSuffix)
  const where = `${service}/${keyAccount}`

  const parseKey = (text: string): Option.Option<Uint8Array> => {
    const bytes = Buffer.from(text, "base64")
    return bytes.length === Envelope.keyBytes ? Option.some(new Uint8Array(bytes)) : Option.none()
  }
  const readKey = Effect.map(keyring.get(service, keyAccount), Option.flatMap(parseKey))

  const keyForWriting = Effect.gen(function*() {
    const existing = yield* keyring.get(service, keyAccount)
    if (Option.isSome(existing)) {
      const key = parseKey(existing.value)
      if (Option.isNone(key)) {
        return yield* new OverflowKeyError({ detail: `the overflow key in the keyring (${where}) is malformed; remove it and log in again` })
      }
      return key.value
    }
    yield* keyring.set(service, keyAccount, Crypto.randomBytes(Envelope.keyBytes).toString("base64"))
    const back = yield* readKey
    if (Option.isNone(back)) return yield* new OverflowKeyError({ detail: `the overflow key written to ${where} did not read back` })
    return back.value
  })

  const read: Overflow["read"] = (id) =>
    Effect.gen(function*() {
      const data = yield* fs.readFile(fileOf(id)).pipe(
        Effect.map(Option.some),
        Effect.catchTag("PlatformError", (e) => AtomicFile.isNotFound(e) ? Effect.succeedNone : Effect.fail(e))
      )
      if (Option.isNone(data)) return Option.none()
      const damaged = (detail: string, quarantine: boolean): Option.Option<Read> =>
        Option.some({ _tag: "Damaged", detail, quarantine })
      const key = yield* readKey
      if (Option.isNone(key)) return damaged(`the overflow key (${where}) is missing from the ${keyring.platform}`, false)
      const opened = Envelope.open({
        keys: new Map([[Envelope.keyIdOf(key.value), key.value]]),
        namespace,
        sessionId: id,
        data: data.value
      })
      if (Result.isFailure(opened)) return damaged(opened.failure.message, true)
      const text = Result.try(() => fromUtf8.decode(opened.success))
      return Result.isSuccess(text) ? Option.some<Read>({ _tag: "Opened", text: text.success }) : damaged("not UTF-8", true)
    })

  const write: Overflow["write"] = (id, text) =>
    Effect.gen(function*() {
      const key = yield* keyForWriting
      const sealed = Envelope.seal({ key, keyId: Envelope.keyIdOf(key), namespace, sessionId: id, plaintext: new TextEncoder().encode(text) })
      yield* AtomicFile.write(fileOf(id), sealed, options.fileMode).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.provideService(Path.Path, path)
      )
    })

  const remove: Overflow["remove"] = (id) =>
    fs.remove(fileOf(id)).pipe(
      Effect.catchTag("PlatformError", (e) => AtomicFile.isNotFound(e) ? Effect.void : Effect.fail(e))
    )

  const quarantine: Overflow["quarantine"] = (id, infix) =>
    Effect.gen(function*() {
      const target = `${fileOf(id)}${infix}${yield* Clock.currentTimeMillis}`
      yield* fs.rename(fileOf(id), target)
      return target
    })

  return { directory, read, write, remove, quarantine } satisfies Overflow
})
