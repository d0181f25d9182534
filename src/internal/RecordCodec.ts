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
  /**
   * `open` without an effect per record, with the keys loaded now (for
   * `list`): `undefined` when it cannot decide (a key it does not have, which
   * `open` reloads before judging).
   */
  readonly opener: Effect.Effect<(fileKey: string, data: Uint8Array) => Result.Result<Uint8Array, Problem> | undefined>
}

const looksLikeJson = (data: Uint8Array) => data.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) === 0x7b

const plaintextHere: Problem = {
  quarantine: false,
  detail:
    "plaintext record, but token_storage.encryption_enabled is true; fix: log in again to replace it, or set encryption_enabled: false to read it"
}
const problemOf = (e: Envelope.EnvelopeError): Problem => ({ quarantine: true, detail: e.message })

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
    opener: Effect.map(key.keyset, (keyset) => (fileKey, data) => {
      if (!Envelope.isSealed(data) && looksLikeJson(data)) return Result.fail(plaintextHere)
      const opened = openWith(keyset, fileKey, data)
      if (Result.isSuccess(opened)) return Result.succeed(opened.success)
      return opened.failure.reason._tag === "UnknownKey" ? undefined : Result.fail(problemOf(opened.failure))
    }),
    open: (fileKey, data) => {
      if (!Envelope.isSealed(data) && looksLikeJson(data)) return Effect.fail(plaintextHere)
      return Effect.flatMap(key.keyset, (keyset) => {
        const opened = openWith(keyset, fileKey, data)
        if (Result.isSuccess(opened)) return Effect.succeed(opened.success)
        if (opened.failure.reason._tag !== "UnknownKey") return Effect.fail(problemOf(opened.failure))
        // Another process may have rotated the key since this one loaded the keyset.
        return Effect.flatMap(Effect.option(key.reload), (reloaded) => {
          const again = Option.isSome(reloaded) ? openWith(reloaded.value, fileKey, data) : opened
          return Result.isSuccess(again) ? Effect.succeed(again.success) : Effect.fail(problemOf(again.failure))
        })
      })
    }
  }
}

const sealedHere: Problem = {
  quarantine: false,
  detail:
    "encrypted record, but token_storage.encryption_enabled is false; fix: set encryption_enabled: true (with the same key) to read it"
}
const openPlaintext = (_fileKey: string, data: Uint8Array): Result.Result<Uint8Array, Problem> =>
  Envelope.isSealed(data) ? Result.fail(sealedHere) : Result.succeed(data)

/** Plaintext JSON: marked insecure. */
export const plaintext: Codec = {
  insecure: true,
  describe:
    "PLAINTEXT (token_storage.encryption_enabled is false): anyone who can read these files can use the tokens",
  seal: (_fileKey, plaintext) => Effect.succeed(plaintext),
  open: (fileKey, data) => Effect.fromResult(openPlaintext(fileKey, data)),
  opener: Effect.succeed(openPlaintext)
}

const decodeRecord = Schema.decodeUnknownResult(RecordJson)
const notUtf8: Problem = { quarantine: true, detail: "not UTF-8" }
// The decoder's message may quote the input, which holds secrets: only say that it failed.
const notARecord: Problem = { quarantine: true, detail: "not a session record of a known version" }
const misplaced: Problem = { quarantine: true, detail: "record of another session (copied over this one)" }

/**
 * Decodes record bytes, checking the record belongs to the file it was read
 * from. Synchronous (the same `Schema` decode, without a fiber per record:
 * `list` decodes every record).
 */
export const decodeResult = (fileKey: string, plaintext: Uint8Array): Result.Result<TokenStore.SessionRecord, Problem> => {
  let text: string
  try {
    text = fromUtf8.decode(plaintext)
  } catch {
    return Result.fail(notUtf8)
  }
  const decoded = decodeRecord(text)
  if (Result.isFailure(decoded)) return Result.fail(notARecord)
  return MetadataIndex.fileKeyOf(decoded.success.id) === fileKey ? Result.succeed(decoded.success) : Result.fail(misplaced)
}

/**
 * The same codec with the three secrets checked as the strings they are on
 * disk rather than wrapped in `Redacted`, and no class instance built: what
 * `list` needs (it returns metadata, never a secret), in about half the time.
 * It accepts and refuses exactly what {@link decodeResult} does.
 */
const ListedJson = Schema.fromJsonString(Schema.toCodecJson(Schema.Struct({
  ...TokenStore.SessionRecord.fields,
  accessToken: Schema.optional(Schema.String),
  refreshToken: Schema.optional(Schema.String),
  idToken: Schema.optional(Schema.String)
})))
const decodeListed = Schema.decodeUnknownResult(ListedJson)

/**
 * Decodes record bytes to the record's metadata, with the same checks as
 * {@link decodeResult}. The secrets never leave this function.
 */
export const decodeMetadata = (
  fileKey: string,
  plaintext: Uint8Array,
  backend: TokenStore.Backend
): Result.Result<TokenStore.SessionMetadata, Problem> => {
  let text: string
  try {
    text = fromUtf8.decode(plaintext)
  } catch {
    return Result.fail(notUtf8)
  }
  const decoded = decodeListed(text)
  if (Result.isFailure(decoded)) return Result.fail(notARecord)
  const r = decoded.success
  if (MetadataIndex.fileKeyOf(r.id) !== fileKey) return Result.fail(misplaced)
  return Result.succeed({
    id: r.id,
    provider: r.provider,
    issuer: Option.fromUndefinedOr(r.issuer),
    clientId: r.clientId,
    scopes: r.scopes,
    resource: Option.fromUndefinedOr(r.resource),
    expiresAt: Option.fromUndefinedOr(r.expiresAt),
    subject: Option.fromUndefinedOr(r.subject),
    state: r.state,
    hasRefreshToken: r.refreshToken !== undefined,
    generation: r.generation,
    updatedAt: r.updatedAt,
    lastRefreshAt: Option.fromUndefinedOr(r.lastRefreshAt),
    lastError: Option.fromUndefinedOr(r.lastError),
    backend
  })
}

/** {@link decodeResult} as an effect. */
export const decode = (fileKey: string, plaintext: Uint8Array): Effect.Effect<TokenStore.SessionRecord, Problem> =>
  Effect.suspend(() => Effect.fromResult(decodeResult(fileKey, plaintext)))

/** The bytes of a record before sealing. */
export const encode = (record: TokenStore.SessionRecord): Effect.Effect<Uint8Array> =>
  Schema.encodeEffect(RecordJson)(record).pipe(
    Effect.orDie, // a SessionRecord we hold always encodes
    Effect.map((text) => utf8.encode(text))
  )
