/**
 * KeySource: where the keyset of the encrypted file token store comes from.
 *
 * Opens the source chosen by `token_storage.encryption_key_source` (see the
 * `EncryptionKey` header): the environment, the OS keyring or a 0600 key file
 * (the two "backings" that persist a keyset, created on first use), or `auto`,
 * which picks one on the first run and remembers it in
 * `<sessionDirectory>/key-source.json`. Also says, for `doctor` and `status`,
 * where the key lives and what that protects against. `EncryptionKey` keeps
 * the keyset once opened and changes it through the backing returned here.
 */
import * as Crypto from "node:crypto"
import { Clock, Effect, FileSystem, Option, Path, Schema } from "effect"
import type { PlatformError } from "effect/PlatformError"
import { EncryptionKeyError, type Source } from "../EncryptionKeyError.js"
import * as Keyring from "../Keyring.js"
import { SessionConfig } from "../SessionConfig.js"
import { expandHome, UserContext } from "../UserContext.js"
import * as AtomicFile from "./AtomicFile.js"
import * as KeysetFormat from "./Keyset.js"
import * as PrivateFile from "./PrivateFile.js"

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

/** A keyset as stored, and the keys it gives. */
export interface Loaded {
  readonly stored: KeysetFormat.Stored
  readonly keyset: KeysetFormat.Keyset
}

/** Where a keyset is persisted: read (None when absent) and replace. */
interface Backing {
  readonly where: string
  readonly read: Effect.Effect<Option.Option<string>, EncryptionKeyError>
  /** Writes only when nothing is there yet; returns what is there afterwards. */
  readonly create: (text: string) => Effect.Effect<string, EncryptionKeyError>
  readonly replace: (text: string) => Effect.Effect<void, EncryptionKeyError>
}

/** A keyset persisted in the OS keyring or a key file, which `EncryptionKey` re-reads and replaces. */
export interface Persisted {
  /** Where the keyset lives, as messages name it. */
  readonly where: string
  /** Re-reads the keyset, which must still be there. */
  readonly reload: Effect.Effect<Loaded, EncryptionKeyError>
  /** Replaces the keyset with `text` (an encoded keyset). */
  readonly replace: (text: string) => Effect.Effect<void, EncryptionKeyError>
}

/** The source this run uses, opened: its keyset and, unless it is `env`, where that keyset is persisted. */
export interface Opened {
  readonly source: Source
  /** Where the key lives and what that protects against, for `doctor` and `status`. */
  readonly description: string
  readonly stored: Option.Option<KeysetFormat.Stored>
  readonly keyset: KeysetFormat.Keyset
  readonly persisted: Option.Option<Persisted>
}

/** Decodes the keyset text read from `where`; damage fails with the fix. */
export const decode = (source: Source, where: string, text: string): Effect.Effect<Loaded, EncryptionKeyError> =>
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

/** Opens the configured source (choosing and remembering one for `auto`); uses the OS keyring only when a `Keyring` is provided. */
export const open = Effect.gen(function*() {
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

  return {
    source,
    description,
    stored: opened.stored,
    keyset: opened.keyset,
    persisted: Option.map(opened.backing, (b): Persisted => ({
      where: b.where,
      reload: load(source, b, true),
      replace: b.replace
    }))
  } satisfies Opened
})
