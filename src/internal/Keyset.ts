/**
 * Keyset: the stored form of the file store's data keys (format version 1).
 *
 * JSON `{ version, current, keys: [{ id, key (base64), createdAt }] }`, kept
 * in the OS keyring or a private key file. Keys are random 256-bit values; a
 * key's id is `Envelope.keyIdOf(key)` and is checked on every load, so a
 * damaged or hand-edited keyset is reported rather than used.
 */
import * as Crypto from "node:crypto"
import { Effect, Redacted, Result, Schema } from "effect"
import * as Envelope from "./Envelope.js"

/** The keys a store may use: `current` seals, `all` opens. */
export interface Keyset {
  readonly current: { readonly id: Envelope.KeyId; readonly key: Redacted.Redacted<Uint8Array> }
  readonly all: ReadonlyMap<Envelope.KeyId, Redacted.Redacted<Uint8Array>>
}

/** The stored form. */
export const Stored = Schema.Struct({
  version: Schema.Literal(1),
  current: Schema.String,
  keys: Schema.Array(Schema.Struct({ id: Schema.String, key: Schema.String, createdAt: Schema.Number }))
})
export type Stored = typeof Stored.Type

const StoredJson = Schema.fromJsonString(Stored)

const newKey = (createdAt: number) => {
  const key = Crypto.randomBytes(Envelope.keyBytes)
  return { id: Envelope.keyIdOf(key), key: key.toString("base64"), createdAt }
}

/** A keyset of one new random key. */
export const initial = (now: number): Stored => {
  const k = newKey(now)
  return { version: 1, current: k.id, keys: [k] }
}

/** `stored` plus a new random key, which becomes current. */
export const withNewKey = (stored: Stored, now: number): Stored => {
  const k = newKey(now)
  return { version: 1, current: k.id, keys: [...stored.keys, k] }
}

/** `stored` without the old keys not in `keep`; the current key always stays. */
export const retain = (stored: Stored, keep: ReadonlySet<Envelope.KeyId>): Stored => ({
  ...stored,
  keys: stored.keys.filter((k) => k.id === stored.current || keep.has(k.id))
})

/** A one-key keyset (the env source). */
export const single = (key: Redacted.Redacted<Uint8Array>): Keyset => {
  const id = Envelope.keyIdOf(Redacted.value(key))
  return { current: { id, key }, all: new Map([[id, key]]) }
}

/** Checks a stored keyset: every key 32 bytes under its own id, the current one among them. */
export const keysetOf = (stored: Stored): Result.Result<Keyset, string> => {
  const all = new Map<Envelope.KeyId, Redacted.Redacted<Uint8Array>>()
  for (const k of stored.keys) {
    const bytes = new Uint8Array(Buffer.from(k.key, "base64"))
    if (bytes.length !== Envelope.keyBytes) return Result.fail(`key ${k.id} is not ${Envelope.keyBytes} bytes`)
    if (Envelope.keyIdOf(bytes) !== k.id) return Result.fail(`key ${k.id} does not match its id`)
    all.set(k.id, Redacted.make(bytes))
  }
  const current = all.get(stored.current)
  return current === undefined
    ? Result.fail("the current key is missing")
    : Result.succeed({ current: { id: stored.current, key: current }, all })
}

/** Parses and checks stored text; the failure says what is wrong without quoting the text. */
export const decode = (text: string): Effect.Effect<{ readonly stored: Stored; readonly keyset: Keyset }, string> =>
  Schema.decodeUnknownEffect(StoredJson)(text).pipe(
    Effect.mapError(() => "not a keyset"),
    Effect.flatMap((stored) => Effect.map(Effect.fromResult(keysetOf(stored)), (keyset) => ({ stored, keyset })))
  )

/** The stored text of a keyset. */
export const encode = (stored: Stored): string => Schema.encodeSync(StoredJson)(stored)
