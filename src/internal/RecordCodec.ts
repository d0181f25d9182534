/**
 * RecordCodec: how the file store turns a session record into file bytes and
 * back. Sealed: the record's JSON inside the AES-256-GCM envelope, bound to
 * the namespace and to the record's file key (`MetadataIndex.fileKeyOf(id)`).
 * Plaintext: the JSON itself (`encryption_enabled: false`). Each refuses the
 * other's files rather than misreading them, and a decoded record must belong
 * to the file it was read from. Failures never quote the bytes (they hold secrets).
 */
import { Effect, Option, Redacted, Result, Schema } from "effect"
import * as EncryptionKey from "../EncryptionKey.js"
import * as TokenStore from "../TokenStore.js"
import * as Envelope from "./Envelope.js"
import * as MetadataIndex from "./MetadataIndex.js"

const RecordJson = Schema.fromJsonString(Schema.toCodecJson(TokenStore.SessionRecord))
const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder("utf-8", { fatal: true })

/** Why a record file did not yield its record; `quarantine` is false when the file is fine but of the other mode. */
export interface Problem {
  readonly quarantine: boolean
  readonly detail: string
}

/** How record bytes are protected: sealed with the data key, or plaintext. */
export interface Codec {
  readonly insecure: boolean
  readonly describe: string
  readonly seal: (fileKey: string, plaintext: Uint8Array) => Effect.Effect<Uint8Array>
  readonly open: (fileKey: string, data: Uint8Array) => Effect.Effect<Uint8Array, Problem>
}

const looksLikeJson = (data: Uint8Array) => data.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) === 0x7b

/** Seals with the current key of `key`; opens with any key of its keyset (reloaded once on an unknown key id). */
export const sealed = (key: EncryptionKey.Shape, namespace: string): Codec => {
  const openWith = (keyset: EncryptionKey.Keyset, fileKey: string, data: Uint8Array) =>
    Envelope.open({ keys: EncryptionKey.lookupOf(keyset), namespace, sessionId: fileKey, data })
  return {
    insecure: false,
    describe: `sealed with AES-256-GCM; key: ${key.description}`,
    seal: (fileKey, plaintext) =>
      Effect.map(key.keyset, (ks) =>
        Envelope.seal({ key: Redacted.value(ks.current.key), keyId: ks.current.id, namespace, sessionId: fileKey, plaintext })),
    open: (fileKey, data) =>
      Effect.gen(function*() {
        if (!Envelope.isSealed(data) && looksLikeJson(data)) {
          return yield* Effect.fail<Problem>({
            quarantine: false,
            detail:
              "plaintext record, but token_storage.encryption_enabled is true; fix: log in again to replace it, or set encryption_enabled: false to read it"
          })
        }
        let opened = openWith(yield* key.keyset, fileKey, data)
        if (Result.isFailure(opened) && opened.failure.reason._tag === "UnknownKey") {
          // Another process may have rotated the key since this one loaded the keyset.
          const reloaded = yield* Effect.option(key.reload)
          if (Option.isSome(reloaded)) opened = openWith(reloaded.value, fileKey, data)
        }
        return Result.isSuccess(opened)
          ? opened.success
          : yield* Effect.fail<Problem>({ quarantine: true, detail: opened.failure.message })
      })
  }
}

/** Plaintext JSON: marked insecure. */
export const plaintext: Codec = {
  insecure: true,
  describe:
    "PLAINTEXT (token_storage.encryption_enabled is false): anyone who can read these files can use the tokens",
  seal: (_fileKey, plaintext) => Effect.succeed(plaintext),
  open: (_fileKey, data) =>
    Envelope.isSealed(data)
      ? Effect.fail({
        quarantine: false,
        detail:
          "encrypted record, but token_storage.encryption_enabled is false; fix: set encryption_enabled: true (with the same key) to read it"
      })
      : Effect.succeed(data)
}

/** Decodes record bytes, checking the record belongs to the file it was read from. */
export const decode = (fileKey: string, plaintext: Uint8Array): Effect.Effect<TokenStore.SessionRecord, Problem> =>
  Effect.try({ try: () => fromUtf8.decode(plaintext), catch: (): Problem => ({ quarantine: true, detail: "not UTF-8" }) }).pipe(
    // The decoder's message may quote the input, which holds secrets: only say that it failed.
    Effect.flatMap((text) =>
      Schema.decodeUnknownEffect(RecordJson)(text).pipe(
        Effect.mapError((): Problem => ({ quarantine: true, detail: "not a session record of a known version" }))
      )
    ),
    Effect.filterOrFail(
      (record) => MetadataIndex.fileKeyOf(record.id) === fileKey,
      (): Problem => ({ quarantine: true, detail: "record of another session (copied over this one)" })
    )
  )

/** The bytes of a record before sealing. */
export const encode = (record: TokenStore.SessionRecord): Effect.Effect<Uint8Array> =>
  Schema.encodeEffect(RecordJson)(record).pipe(
    Effect.orDie, // a SessionRecord we hold always encodes
    Effect.map((text) => utf8.encode(text))
  )
