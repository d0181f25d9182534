/**
 * Envelope: authenticated encryption of one stored record (AES-256-GCM).
 *
 * Layout: `MTS` (3 bytes) + version (1) + key id (8) + nonce (12, random) +
 * ciphertext + tag (16). The key id is the first 8 bytes of SHA-256 over a
 * fixed label and the key, so a reader picks the right key of a keyset (and
 * knows when it has none) without trying each one. The additional
 * authenticated data is the header plus `magictunnel-session/v1\0<namespace>\0<sessionId>`:
 * a sealed record copied to another session, namespace or user does not open.
 *
 * Pure and synchronous (CPU only). Failures are values with a typed reason and
 * carry no key, plaintext or ciphertext.
 */
import * as Crypto from "node:crypto"
import { Data, Result } from "effect"

/** `MTS`: recognises a sealed record. */
export const magic: Uint8Array = Uint8Array.of(0x4d, 0x54, 0x53)

/** The format version this module writes and reads. */
export const version = 1

/** Bytes of the key id in the header. */
export const keyIdBytes = 8
/** Bytes of the GCM nonce. */
export const nonceBytes = 12
/** Bytes of the GCM tag. */
export const tagBytes = 16
/** Bytes of an AES-256 key. */
export const keyBytes = 32

const headerBytes = magic.length + 1 + keyIdBytes
/** The shortest possible sealed blob (empty plaintext). */
export const minimumLength = headerBytes + nonceBytes + tagBytes

const keyIdLabel = Buffer.from("magictunnel-session/key-id/v1\0", "utf8")
const aadLabel = "magictunnel-session/v1\0"

/** A key id: 16 lowercase hex characters (8 bytes). */
export type KeyId = string

/** Looks a key up by its id: a map, or a function returning `undefined` when unknown. */
export type KeyLookup = ReadonlyMap<KeyId, Uint8Array> | ((keyId: KeyId) => Uint8Array | undefined)

/** The id of a key: first 8 bytes of SHA-256(label || key), hex. Not reversible. */
export const keyIdOf = (key: Uint8Array): KeyId =>
  Crypto.createHash("sha256").update(keyIdLabel).update(key).digest().subarray(0, keyIdBytes).toString("hex")

/** Why a blob did not open. None of them carries secret material. */
export type Reason =
  | { readonly _tag: "Truncated"; readonly length: number }
  | { readonly _tag: "BadMagic" }
  | { readonly _tag: "UnsupportedVersion"; readonly version: number }
  /** Sealed with a key that is not in the keyset: the wrong key. */
  | { readonly _tag: "UnknownKey"; readonly keyId: KeyId }
  /** Tampered with, or sealed for another namespace or session. */
  | { readonly _tag: "AuthenticationFailed" }

/** A blob that did not open. */
export class EnvelopeError extends Data.TaggedError("EnvelopeError")<{
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    switch (r._tag) {
      case "Truncated":
        return `truncated: ${r.length} bytes, at least ${minimumLength} expected`
      case "BadMagic":
        return "not a sealed record (bad magic)"
      case "UnsupportedVersion":
        return `unsupported envelope version ${r.version} (this build reads ${version})`
      case "UnknownKey":
        return `sealed with key ${r.keyId}, which is not in the keyset (wrong or retired key)`
      case "AuthenticationFailed":
        return "authentication failed (tampered, or sealed for another session or namespace)"
    }
  }
}

const header = (keyId: KeyId): Buffer => {
  const id = Buffer.from(keyId, "hex")
  // A malformed key id is a programming error: the header would not round-trip.
  if (id.length !== keyIdBytes || id.toString("hex") !== keyId.toLowerCase()) {
    throw new TypeError(`Envelope: key id must be ${keyIdBytes * 2} hex characters`)
  }
  return Buffer.concat([magic, Uint8Array.of(version), id])
}

const aadOf = (headerBytes: Uint8Array, namespace: string, sessionId: string): Buffer =>
  Buffer.concat([headerBytes, Buffer.from(`${aadLabel}${namespace}\0${sessionId}`, "utf8")])

const checkKey = (key: Uint8Array) => {
  if (key.length !== keyBytes) throw new TypeError(`Envelope: key must be ${keyBytes} bytes`)
}

/** Seals `plaintext` for one session of one namespace with `key` (whose id is `keyId`). */
export const seal = (options: {
  readonly key: Uint8Array
  readonly keyId: KeyId
  readonly namespace: string
  readonly sessionId: string
  readonly plaintext: Uint8Array
}): Uint8Array => {
  checkKey(options.key)
  const head = header(options.keyId)
  const nonce = Crypto.randomBytes(nonceBytes)
  const cipher = Crypto.createCipheriv("aes-256-gcm", options.key, nonce, { authTagLength: tagBytes })
  cipher.setAAD(aadOf(head, options.namespace, options.sessionId))
  const body = Buffer.concat([cipher.update(options.plaintext), cipher.final()])
  return new Uint8Array(Buffer.concat([head, nonce, body, cipher.getAuthTag()]))
}

/** The key id in a blob's header, when it looks like a sealed record of this version. */
export const keyIdOfSealed = (data: Uint8Array): KeyId | undefined =>
  data.length >= headerBytes && isSealed(data) && data[magic.length] === version
    ? Buffer.from(data.subarray(magic.length + 1, headerBytes)).toString("hex")
    : undefined

/** True when `data` starts with the envelope magic (whatever its version or integrity). */
export const isSealed = (data: Uint8Array): boolean =>
  data.length >= magic.length && magic.every((b, i) => data[i] === b)

/** Opens a blob sealed for `namespace`/`sessionId` with one of `keys`. */
export const open = (options: {
  readonly keys: KeyLookup
  readonly namespace: string
  readonly sessionId: string
  readonly data: Uint8Array
}): Result.Result<Uint8Array, EnvelopeError> => {
  const data = options.data
  const fail = (reason: Reason) => Result.fail(new EnvelopeError({ reason }))
  // Magic and version are judged first so that a short foreign file says what it is.
  if (data.length >= magic.length && !isSealed(data)) return fail({ _tag: "BadMagic" })
  if (data.length > magic.length && data[magic.length] !== version) {
    return fail({ _tag: "UnsupportedVersion", version: data[magic.length]! })
  }
  if (data.length < minimumLength) return fail({ _tag: "Truncated", length: data.length })
  // A view, not a copy: the blob is read once per open (every record, in `list`).
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const head = bytes.subarray(0, headerBytes)
  const keyId = bytes.toString("hex", magic.length + 1, headerBytes)
  const key = typeof options.keys === "function" ? options.keys(keyId) : options.keys.get(keyId)
  if (key === undefined) return fail({ _tag: "UnknownKey", keyId })
  checkKey(key)
  const nonce = bytes.subarray(headerBytes, headerBytes + nonceBytes)
  const body = bytes.subarray(headerBytes + nonceBytes, bytes.length - tagBytes)
  const tag = bytes.subarray(bytes.length - tagBytes)
  try {
    const decipher = Crypto.createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: tagBytes })
    decipher.setAAD(aadOf(head, options.namespace, options.sessionId))
    decipher.setAuthTag(tag)
    const plain = decipher.update(body)
    // GCM's final() only checks the tag: it never returns bytes, so the plaintext is not copied again.
    const rest = decipher.final()
    return Result.succeed(rest.length === 0 ? plain : Buffer.concat([plain, rest]))
  } catch {
    // node's message ("Unsupported state or unable to authenticate data") adds nothing and is dropped.
    return fail({ _tag: "AuthenticationFailed" })
  }
}
