/**
 * EncryptionKey: the data key of the encrypted file token store.
 *
 * A keyset of random 256-bit keys (never derived from user or host names):
 * one current key that seals new records, plus older keys kept after a
 * rotation until every record has been re-sealed and `retire` drops them.
 * The keyset comes from one source, chosen by `token_storage.encryption_key_source`:
 *
 * - `env`: `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY` (one key, no rotation);
 * - `keyring`: a keyset in the OS keyring, created on first use;
 * - `file`: a keyset in a 0600 key file outside the session directory,
 *   created on first use, refused (like ssh) when others can read it;
 * - `auto`: env when set, else the keyring when one answers, else the file;
 *   the choice is remembered in `<sessionDirectory>/key-source.json` and a
 *   later run that cannot use it fails instead of switching keys, which would
 *   orphan every stored session.
 *
 * The key never reaches a log, span or error message; key ids (a truncated
 * hash, see `Envelope.keyIdOf`) are safe to show. Opening a source lives in
 * `internal/KeySource`, the error in `EncryptionKeyError`; this module keeps
 * the keyset once opened and rotates and retires its keys.
 */
import { Clock, Context, Effect, Layer, Option, Redacted, Ref, Semaphore } from "effect"
import { EncryptionKeyError, type Source } from "./EncryptionKeyError.js"
import * as Envelope from "./internal/Envelope.js"
import * as KeySource from "./internal/KeySource.js"
import * as KeysetFormat from "./internal/Keyset.js"

export { EncryptionKeyError, type Reason, type Source } from "./EncryptionKeyError.js"

/** The keys a store may use: `current` seals, `all` opens. */
export type Keyset = KeysetFormat.Keyset

/** The data key service. */
export interface Shape {
  readonly source: Source
  /** Where the key lives and what that protects against, for `doctor` and `status`. */
  readonly description: string
  /** The keyset as this process last loaded or changed it. */
  readonly keyset: Effect.Effect<Keyset>
  /** Re-reads the keyset from its source (another process may have rotated). */
  readonly reload: Effect.Effect<Keyset, EncryptionKeyError>
  /** Adds a new random current key, keeping the old ones so that existing records still open. */
  readonly rotate: Effect.Effect<Keyset, EncryptionKeyError>
  /** Drops every old key except those still in use; the current key always stays. */
  readonly retire: (stillUsed: Iterable<Envelope.KeyId>) => Effect.Effect<Keyset, EncryptionKeyError>
}

/** The file store's data key. */
export class EncryptionKey extends Context.Service<EncryptionKey, Shape>()("magictunnel-session/EncryptionKey") {}

/** The keyset as an `Envelope` key lookup. */
export const lookupOf = (keyset: Keyset): Envelope.KeyLookup => (id) => {
  const k = keyset.all.get(id)
  return k === undefined ? undefined : Redacted.value(k)
}

export { keyringAccountOf, rememberedSourceFile, staleKeyTempMs } from "./internal/KeySource.js"

/** Builds the service; see the module header for how the source is chosen. */
export const make = Effect.gen(function*() {
  const { source, description, persisted, ...opened } = yield* KeySource.open

  const state = yield* Ref.make({ stored: opened.stored, keyset: opened.keyset })
  const lock = yield* Semaphore.make(1)

  const reload = Effect.gen(function*() {
    if (Option.isNone(persisted)) return (yield* Ref.get(state)).keyset
    const loaded = yield* persisted.value.reload
    yield* Ref.set(state, { stored: Option.some(loaded.stored), keyset: loaded.keyset })
    return loaded.keyset
  })

  /** Re-reads, changes and writes back the stored keyset, one change at a time in this process. */
  const update = (f: (stored: KeysetFormat.Stored, now: number) => KeysetFormat.Stored) =>
    lock.withPermits(1)(Effect.gen(function*() {
      if (Option.isNone(persisted)) {
        return yield* new EncryptionKeyError({ source, reason: { _tag: "RotationUnsupported" } })
      }
      const b = persisted.value
      yield* reload
      const before = Option.getOrThrow((yield* Ref.get(state)).stored)
      const next = f(before, yield* Clock.currentTimeMillis)
      const text = KeysetFormat.encode(next)
      const checked = yield* KeySource.decode(source, b.where, text)
      yield* b.replace(text)
      yield* Ref.set(state, { stored: Option.some(next), keyset: checked.keyset })
      return checked.keyset
    }))

  const rotate = Effect.withSpan("EncryptionKey.rotate")(update(KeysetFormat.withNewKey))
  const retire = (stillUsed: Iterable<Envelope.KeyId>) => {
    const keep = new Set(stillUsed)
    return Effect.withSpan("EncryptionKey.retire")(update((stored) => KeysetFormat.retain(stored, keep)))
  }

  return EncryptionKey.of({
    source,
    description,
    keyset: Effect.map(Ref.get(state), (s) => s.keyset),
    reload,
    rotate,
    retire
  })
})

/** The data key from the configured source; uses the OS keyring only when a `Keyring` is provided. */
export const layer = Layer.effect(EncryptionKey, make)
