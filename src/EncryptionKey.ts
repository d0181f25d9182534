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
 * hash, see `Envelope.keyIdOf`) are safe to show.
 */
import * as Crypto from "node:crypto"
import { Clock, Context, Data, Effect, FileSystem, Layer, Option, Path, Redacted, Ref, Schema, Semaphore } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as AtomicFile from "./internal/AtomicFile.js"
import * as Envelope from "./internal/Envelope.js"
import * as KeysetFormat from "./internal/Keyset.js"
import * as PrivateFile from "./internal/PrivateFile.js"
import * as Keyring from "./Keyring.js"
import { SessionConfig } from "./SessionConfig.js"
import { expandHome, UserContext } from "./UserContext.js"

/** The concrete sources of a key; `auto` resolves to one of them. */
export type Source = "env" | "keyring" | "file"

/** The keys a store may use: `current` seals, `all` opens. */
export type Keyset = KeysetFormat.Keyset

/** Why the data key cannot be used. Messages name the fix and never the key. */
export type Reason =
  | { readonly _tag: "Missing"; readonly detail: string; readonly fix: string }
  | { readonly _tag: "Unavailable"; readonly detail: string; readonly fix: string }
  | {
    readonly _tag: "InsecureKeyFile"
    readonly path: string
    readonly problem: "InsideSessionDirectory" | "Permissions" | "ForeignOwner" | "NotAFile"
    readonly mode?: number | undefined
    readonly owner?: number | undefined
  }
  | { readonly _tag: "Corrupted"; readonly where: string; readonly detail: string; readonly fix: string }
  | { readonly _tag: "RotationUnsupported" }
  | { readonly _tag: "SourceChanged"; readonly remembered: Source; readonly rememberedIn: string }
  | { readonly _tag: "Io"; readonly path: string; readonly detail: string }

const insecureKeyFileMessage = (r: Extract<Reason, { readonly _tag: "InsecureKeyFile" }>): string => {
  switch (r.problem) {
    case "InsideSessionDirectory":
      return `key file ${r.path} lies inside the session directory, so copying that directory copies the key; fix: set token_storage.encryption_key_file to a path outside it`
    case "Permissions":
      return `key file ${r.path} is accessible by group or others (mode ${
        ((r.mode ?? 0) & 0o777).toString(8).padStart(4, "0")
      }); fix: chmod 600 ${r.path}`
    case "ForeignOwner":
      return `key file ${r.path} is owned by uid ${r.owner}, not by this user; fix: use a key file of your own (token_storage.encryption_key_file)`
    case "NotAFile":
      return `key file ${r.path} is not a regular file; fix: move it away or set token_storage.encryption_key_file`
  }
}

/** The data key could not be loaded, created, rotated or retired. */
export class EncryptionKeyError extends Data.TaggedError("EncryptionKeyError")<{
  readonly source: Source | "auto"
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    const what = `encryption key (${this.source})`
    switch (r._tag) {
      case "Missing":
      case "Unavailable":
        return `${what}: ${r.detail}; fix: ${r.fix}`
      case "InsecureKeyFile":
        return `${what}: ${insecureKeyFileMessage(r)}`
      case "Corrupted":
        return `${what}: ${r.where} is damaged (${r.detail}); fix: ${r.fix}`
      case "RotationUnsupported":
        return `${what}: a key from MAGICTUNNEL_TOKEN_ENCRYPTION_KEY cannot be rotated; fix: rotation needs the keyring or file source (token_storage.encryption_key_source)`
      case "SourceChanged":
        return `${what}: sessions here were sealed with a key from the ${r.remembered} source (remembered in ${r.rememberedIn}), which is not the one this run would use; fix: make the ${r.remembered} source available again, or set token_storage.encryption_key_source explicitly (sessions sealed with the old key will not open)`
      case "Io":
        return `${what}: ${r.path}: ${r.detail}`
    }
  }
}

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

/** Temp copies of the key file left by a killed writer are removed once this old (milliseconds). */
export const staleKeyTempMs = 60_000

/** The file under the session directory that remembers what `auto` chose. */
export const rememberedSourceFile = "key-source.json"

/** The keyring account holding the keyset of one session directory. */
export const keyringAccountOf = (sessionDirectory: string): string =>
  `encryption-key:${Crypto.createHash("sha256").update(sessionDirectory).digest("hex").slice(0, 12)}`

const Remembered = Schema.fromJsonString(Schema.Struct({
  version: Schema.Literal(1),
  source: Schema.Literals(["env", "keyring", "file"]),
  chosenAt: Schema.Number
}))

/** Where a keyset is persisted: read (None when absent) and replace. */
interface Backing {
  readonly where: string
  readonly read: Effect.Effect<Option.Option<string>, EncryptionKeyError>
  /** Writes only when nothing is there yet; returns what is there afterwards. */
  readonly create: (text: string) => Effect.Effect<string, EncryptionKeyError>
  readonly replace: (text: string) => Effect.Effect<void, EncryptionKeyError>
}

/** Builds the service; see the module header for how the source is chosen. */
export const make = Effect.gen(function*() {
  const config = yield* SessionConfig
  const user = yield* UserContext
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const keyring = yield* Effect.serviceOption(Keyring.Keyring)
  const settings = config.settings.tokenStorage
  const withFs = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) =>
    e.pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.provideService(Path.Path, path))
  const io = (source: Source | "auto", p: string) => (e: PlatformError) =>
    new EncryptionKeyError({ source, reason: { _tag: "Io", path: p, detail: e.message } })

  const rememberedPath = path.join(user.sessionDirectory, rememberedSourceFile)
  const keyFile = expandHome(path, user.home, settings.encryptionKeyFile)
  const account = keyringAccountOf(user.sessionDirectory)

  // The key file: checked like ssh checks a private key, created so that racing creators agree.
  const policy: PrivateFile.Policy = { uid: user.uid, forbiddenDirectory: user.sessionDirectory }
  const fileError = (e: PrivateFile.Insecure | PlatformError) =>
    e._tag === "PlatformError"
      ? io("file", keyFile)(e)
      : new EncryptionKeyError({
        source: "file",
        reason: {
          _tag: "InsecureKeyFile",
          path: e.path,
          problem: e.problem === "InsideForbiddenDirectory" ? "InsideSessionDirectory" : e.problem,
          mode: e.mode,
          owner: e.owner
        }
      })
  const fileBacking: Backing = {
    where: `key file ${keyFile}`,
    read: withFs(PrivateFile.read(keyFile, policy)).pipe(Effect.mapError(fileError)),
    create: (text) => withFs(PrivateFile.createExclusive(keyFile, text, policy)).pipe(Effect.mapError(fileError)),
    replace: (text) =>
      withFs(AtomicFile.write(keyFile, new TextEncoder().encode(text), 0o600)).pipe(Effect.mapError(io("file", keyFile)))
  }

  // The keyring has no exclusive create: the value is read back after writing.
  const keyringError = (k: Keyring.Shape) => (e: Keyring.KeyringError) =>
    new EncryptionKeyError({
      source: "keyring",
      reason: {
        _tag: "Unavailable",
        detail: `the OS keyring (${k.platform}) did not answer: ${e.message}`,
        fix: "unlock or start the OS keyring (on Linux a Secret Service such as gnome-keyring), or choose token_storage.encryption_key_source: file"
      }
    })
  const keyringBacking = (k: Keyring.Shape): Backing => ({
    where: `keyring entry ${Keyring.serviceName}/${account}`,
    read: k.get(Keyring.serviceName, account).pipe(Effect.mapError(keyringError(k))),
    create: (text) =>
      k.set(Keyring.serviceName, account, text).pipe(
        Effect.andThen(k.get(Keyring.serviceName, account)),
        Effect.map(Option.getOrElse(() => text)),
        Effect.mapError(keyringError(k))
      ),
    replace: (text) => k.set(Keyring.serviceName, account, text).pipe(Effect.mapError(keyringError(k)))
  })

  const decode = (source: Source, where: string, text: string) =>
    KeysetFormat.decode(text).pipe(
      Effect.mapError((detail) =>
        new EncryptionKeyError({
          source,
          reason: {
            _tag: "Corrupted",
            where,
            detail,
            fix:
              "restore it from a backup, or move it away to start over with a new key (sessions sealed with the old key will not open)"
          }
        })
      )
    )

  /** Loads the keyset from a backing; creates it unless it must already exist. */
  const load = (source: Source, b: Backing, mustExist: boolean) =>
    Effect.gen(function*() {
      const existing = yield* b.read
      if (Option.isSome(existing)) return yield* decode(source, b.where, existing.value)
      if (mustExist) {
        return yield* new EncryptionKeyError({
          source,
          reason: {
            _tag: "Missing",
            detail: `the ${b.where} that sealed the sessions in ${user.sessionDirectory} is gone`,
            fix: `restore it, or delete ${rememberedPath} to start over with a new key (existing sessions will not open)`
          }
        })
      }
      const text = yield* b.create(KeysetFormat.encode(KeysetFormat.initial(yield* Clock.currentTimeMillis)))
      return yield* decode(source, b.where, text)
    })

  const envMissing = (fix: string) =>
    new EncryptionKeyError({
      source: "env",
      reason: { _tag: "Missing", detail: "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY is not set", fix }
    })
  const fromEnv = Option.map(config.encryptionKey, KeysetFormat.single)

  const keyringUnavailable = new EncryptionKeyError({
    source: "keyring",
    reason: {
      _tag: "Unavailable",
      detail: "no OS keyring is available to this process",
      fix: "install or enable the OS keyring support (@napi-rs/keyring), or choose token_storage.encryption_key_source: file"
    }
  })

  /** Opens one concrete source. */
  const openSource = (source: Source, mustExist: boolean) =>
    Effect.gen(function*() {
      switch (source) {
        case "env": {
          if (Option.isNone(fromEnv)) {
            return yield* envMissing(
              mustExist
                ? `export MAGICTUNNEL_TOKEN_ENCRYPTION_KEY again with the same key (sessions in ${user.sessionDirectory} were sealed with it)`
                : "export MAGICTUNNEL_TOKEN_ENCRYPTION_KEY=<base64 of 32 random bytes, e.g. from `openssl rand -base64 32`>, or choose the keyring or file source"
            )
          }
          return { backing: Option.none<Backing>(), stored: Option.none<KeysetFormat.Stored>(), keyset: fromEnv.value }
        }
        case "keyring": {
          if (Option.isNone(keyring)) return yield* keyringUnavailable
          const b = keyringBacking(keyring.value)
          const loaded = yield* load("keyring", b, mustExist)
          return { backing: Option.some(b), stored: Option.some(loaded.stored), keyset: loaded.keyset }
        }
        case "file": {
          // A writer killed mid-replace leaves a temp copy of the keyset beside the key file: remove it once
          // surely abandoned, so no copy of a (maybe since retired) key lingers.
          yield* withFs(AtomicFile.sweepTemps(path.dirname(keyFile), yield* Clock.currentTimeMillis, staleKeyTempMs, {
            target: path.basename(keyFile)
          }))
          const loaded = yield* load("file", fileBacking, mustExist)
          return { backing: Option.some(fileBacking), stored: Option.some(loaded.stored), keyset: loaded.keyset }
        }
      }
    })

  const readRemembered = Effect.gen(function*() {
    const text = yield* fs.readFileString(rememberedPath).pipe(
      Effect.map(Option.some),
      Effect.catchTag("PlatformError", (e) =>
        AtomicFile.isNotFound(e) ? Effect.succeedNone : Effect.fail(io("auto", rememberedPath)(e)))
    )
    if (Option.isNone(text)) return Option.none<Source>()
    const remembered = yield* Schema.decodeUnknownEffect(Remembered)(text.value).pipe(
      Effect.mapError(() =>
        new EncryptionKeyError({
          source: "auto",
          reason: {
            _tag: "Corrupted",
            where: rememberedPath,
            detail: "not a remembered key source",
            fix: "set token_storage.encryption_key_source to the source that holds your key, or delete the file to choose again"
          }
        })
      )
    )
    return Option.some<Source>(remembered.source)
  })

  const chooseAuto = Effect.gen(function*() {
    const remembered = yield* readRemembered
    if (Option.isSome(remembered)) {
      const source = remembered.value
      if (source !== "env" && Option.isSome(fromEnv)) {
        return yield* new EncryptionKeyError({
          source: "auto",
          reason: { _tag: "SourceChanged", remembered: source, rememberedIn: rememberedPath }
        })
      }
      return { source, opened: yield* openSource(source, true) }
    }
    const chosen: { source: Source; opened: Effect.Success<ReturnType<typeof openSource>> } = Option.isSome(fromEnv)
      ? { source: "env", opened: yield* openSource("env", false) }
      : yield* openSource("keyring", false).pipe(
        Effect.map((opened) => ({ source: "keyring" as const, opened })),
        // Only a first run may fall back; afterwards the choice is remembered and never silently changed.
        Effect.catchTag("EncryptionKeyError", (e) =>
          e.reason._tag === "Unavailable"
            ? Effect.map(openSource("file", false), (opened) => ({ source: "file" as const, opened }))
            : Effect.fail(e))
      )
    const text = yield* Schema.encodeEffect(Remembered)({
      version: 1,
      source: chosen.source,
      chosenAt: yield* Clock.currentTimeMillis
    }).pipe(Effect.orDie)
    yield* withFs(AtomicFile.write(rememberedPath, new TextEncoder().encode(text), 0o600)).pipe(
      Effect.mapError(io("auto", rememberedPath))
    )
    return chosen
  })

  const setting = settings.encryptionKeySource
  const { source, opened } = setting === "auto"
    ? yield* chooseAuto
    : { source: setting, opened: yield* openSource(setting, false) }

  const protects = source === "env"
    ? "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY (as safe as the environment that holds it; no rotation)"
    : source === "keyring"
    ? `OS keyring ${Option.match(keyring, { onNone: () => "", onSome: (k) => `(${k.platform}) ` })}entry ${Keyring.serviceName}/${account} (protects against the session files being copied or read on their own)`
    : `key file ${keyFile} (protects only against the session directory being copied alone)`
  const description = setting === "auto" ? `${protects}; chosen automatically, remembered in ${rememberedPath}` : protects

  const state = yield* Ref.make({ stored: opened.stored, keyset: opened.keyset })
  const lock = yield* Semaphore.make(1)

  const reload = Effect.gen(function*() {
    if (Option.isNone(opened.backing)) return (yield* Ref.get(state)).keyset
    const loaded = yield* load(source, opened.backing.value, true)
    yield* Ref.set(state, { stored: Option.some(loaded.stored), keyset: loaded.keyset })
    return loaded.keyset
  })

  /** Re-reads, changes and writes back the stored keyset, one change at a time in this process. */
  const update = (f: (stored: KeysetFormat.Stored, now: number) => KeysetFormat.Stored) =>
    lock.withPermits(1)(Effect.gen(function*() {
      if (Option.isNone(opened.backing)) {
        return yield* new EncryptionKeyError({ source, reason: { _tag: "RotationUnsupported" } })
      }
      const b = opened.backing.value
      yield* reload
      const before = Option.getOrThrow((yield* Ref.get(state)).stored)
      const next = f(before, yield* Clock.currentTimeMillis)
      const text = KeysetFormat.encode(next)
      const checked = yield* decode(source, b.where, text)
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
