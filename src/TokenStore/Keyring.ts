/**
 * The keyring token store: sessions in the OS keyring (macOS Keychain, Windows
 * Credential Manager, Linux Secret Service), one secret per session, listed
 * through the metadata index because keyrings cannot enumerate reliably.
 *
 * Addressing (service `magictunnel`, account `<namespace>/<sessionId>`, hashed
 * when too long) is `KeyringAccounts.ts`.
 *
 * The secret is the record's JSON. A record larger than the keyring takes
 * (Windows: 2560 bytes) goes to `<storageDirectory>/keyring-overflow/<file key>.sealed`,
 * sealed with the AES-256-GCM envelope (AAD: namespace and session id) under a
 * data key that itself lives in the keyring (account `overflow-key:<namespace>`,
 * see `internal/KeyringOverflow.ts`); its index entry says `location: "file"`.
 *
 * Ordering, so that a crash never leaves a session present but unlisted, nor
 * listed and unreadable without saying so:
 * - put of a new session: index entry first, then the secret. A crash between
 *   leaves it listed without a secret; `get` then reports it `Corrupted`
 *   ("secret missing") and marks the entry, and a new login replaces it. A
 *   failed secret write removes the entry it just added.
 * - put of a known session: secret first, then the entry; a crash between
 *   leaves the new record under slightly stale metadata, which the next `get`
 *   repairs. When the location changes, the new copy is written, the entry is
 *   switched, and only then is the old copy deleted (a crash keeps the old
 *   record readable, or the new one: never neither).
 * - remove: secret, overflow file and quarantined copy first, the entry last;
 *   a failure keeps the session listed, so nothing is forgotten while its
 *   secret still sits in the keyring.
 * - get reads where the entry says, then the other place, so a lost index
 *   entry is rebuilt from the record rather than the session going missing.
 *
 * A keyring that is unavailable, locked or slow fails with `Unavailable`,
 * `AccessDenied` or `Timeout`: never with `NotFound`, so a locked keyring is
 * not taken for a logged-out user. A secret that does not decode is copied to
 * `<account>.corrupt-<epoch ms>` and deleted, its entry marked corrupted, and
 * only that session fails with `Corrupted`.
 */
import { Clock, Duration, Effect, FileSystem, Layer, Option, Path, Schema, Semaphore } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as AtomicFile from "../internal/AtomicFile.js"
import * as KeyringOverflow from "../internal/KeyringOverflow.js"
import * as MetadataIndex from "../internal/MetadataIndex.js"
import * as Keyring from "../Keyring.js"
import { SessionConfig } from "../SessionConfig.js"
import * as TokenStore from "../TokenStore.js"
import { UserContext } from "../UserContext.js"
import { overflowKeyAccountOf, sessionAccountOf } from "./KeyringAccounts.js"

export { accountOf, maxReadableAccountBytes, overflowKeyAccountOf, sessionAccountOf } from "./KeyringAccounts.js"

/** The directory, under the storage directory, of records too large for the keyring. */
export const overflowDirectoryName = "keyring-overflow"
/** What a quarantined secret's account or file gets appended: `.corrupt-<epoch ms>`. */
export const quarantineInfix = ".corrupt-"
/** Temp files of killed writers older than this are removed when a store opens. */
export const staleTempAge = Duration.seconds(60)

const RecordJson = Schema.fromJsonString(Schema.toCodecJson(TokenStore.SessionRecord))
const decodeRecord = Schema.decodeUnknownEffect(RecordJson)
const EntryJson = Schema.toCodecJson(MetadataIndex.IndexEntry)
const utf8 = new TextEncoder()

/** The provider part of a session id (`provider` or `provider~hash`). */
const providerOf = (id: string) => id.split("~")[0] ?? id

type Operation = TokenStore.TokenStoreError["operation"]

/** Where a record was found, and its text (or why the text could not be had). */
type Found =
  | { readonly location: "inline" | "file"; readonly text: string }
  | { readonly location: "damaged-file"; readonly detail: string; readonly quarantine: boolean }

/** Builds the keyring store of the user context in scope, on the keyring in scope. */
export const make = Effect.gen(function*() {
  const keyring = yield* Keyring.Keyring
  const user = yield* UserContext
  const config = yield* SessionConfig
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const backend: TokenStore.Backend = keyring.platform
  const mode = config.settings.tokenStorage.filePermissions
  const service = Keyring.serviceName
  const namespace = user.namespace
  const withPlatform = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) =>
    e.pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.provideService(Path.Path, path))

  const error = (operation: Operation, sessionId: string | undefined, reason: TokenStore.Reason) =>
    new TokenStore.TokenStoreError({ backend, operation, sessionId, reason })
  /** Maps a keyring, file or overflow-key failure to the store's reasons. */
  const failure = (operation: Operation, sessionId?: string) =>
  (e: Keyring.KeyringError | PlatformError | KeyringOverflow.OverflowKeyError): TokenStore.TokenStoreError => {
    switch (e._tag) {
      case "KeyringError": {
        const r = e.reason
        return error(
          operation,
          sessionId,
          r._tag === "Unavailable" || r._tag === "AccessDenied" || r._tag === "Timeout" ? r : { _tag: "Io", detail: e.message }
        )
      }
      case "PlatformError":
        return error(
          operation,
          sessionId,
          e.reason._tag === "PermissionDenied" ? { _tag: "AccessDenied", detail: e.message } : { _tag: "Io", detail: e.message }
        )
      case "OverflowKeyError":
        return error(operation, sessionId, { _tag: "Io", detail: e.detail })
    }
  }
  const bestEffort = (what: string) => <E extends { readonly message: string }>(e: Effect.Effect<unknown, E>) =>
    e.pipe(Effect.asVoid, Effect.catch((err) => Effect.logWarning(`${what}: ${err.message}`)))

  const index = yield* withPlatform(MetadataIndex.make(user.storageDirectory, mode)).pipe(Effect.mapError(failure("open")))
  const overflow = yield* withPlatform(KeyringOverflow.make({
    keyring,
    service,
    keyAccount: overflowKeyAccountOf(namespace),
    namespace,
    directory: path.join(user.storageDirectory, overflowDirectoryName),
    fileMode: mode
  })).pipe(Effect.mapError(failure("open")))
  const now = yield* Clock.currentTimeMillis
  for (const d of [overflow.directory, index.directory]) {
    yield* withPlatform(AtomicFile.sweepTemps(d, now, Duration.toMillis(staleTempAge)))
  }

  // Writers of one session are serialized in this process (other processes are the refresh lock's job).
  const stripes = Array.from({ length: 16 }, () => Semaphore.makeUnsafe(1))
  const lockOf = (id: string) => stripes[Number.parseInt(MetadataIndex.fileKeyOf(id).slice(0, 2), 16) % 16]!
  const accountFor = (id: string) => sessionAccountOf(namespace, id)

  /** This store's index entry of a session (an entry of another backend sharing the directory is not). */
  const entryOf = (operation: Operation, id: string) =>
    index.get(id).pipe(
      Effect.map(Option.filter((e: MetadataIndex.IndexEntry) => e.backend === backend)),
      Effect.mapError(failure(operation, id))
    )
  /** A session's index entry, keeping the reference to a quarantined copy so `remove` can delete it. */
  const indexEntry = (
    record: TokenStore.SessionRecord,
    location: "inline" | "file",
    previous: Option.Option<MetadataIndex.IndexEntry>
  ) => {
    const quarantinedAs = Option.getOrUndefined(Option.flatMapNullishOr(previous, (e) => e.quarantinedAs))
    return MetadataIndex.entryOf(
      TokenStore.metadataOf(record, backend),
      quarantinedAs === undefined ? { location } : { location, quarantinedAs }
    )
  }
  const sameEntry = (a: MetadataIndex.IndexEntry, b: MetadataIndex.IndexEntry) =>
    JSON.stringify(Schema.encodeSync(EntryJson)(a)) === JSON.stringify(Schema.encodeSync(EntryJson)(b))

  // --- reading -----------------------------------------------------------

  const readInline = (id: string) =>
    keyring.get(service, accountFor(id)).pipe(
      Effect.mapError(failure("get", id)),
      Effect.map(Option.map((text): Found => ({ location: "inline", text })))
    )
  const readFile = (id: string) =>
    overflow.read(id).pipe(
      Effect.mapError(failure("get", id)),
      Effect.map(Option.map((r): Found =>
        r._tag === "Opened"
          ? { location: "file", text: r.text }
          : { location: "damaged-file", detail: r.detail, quarantine: r.quarantine }
      ))
    )

  /** Copies a damaged secret aside (if it is still the text judged), then deletes it. */
  const quarantineInline = (id: string, text: string) =>
    Effect.gen(function*() {
      const again = yield* keyring.get(service, accountFor(id)).pipe(Effect.mapError(failure("get", id)))
      if (Option.getOrUndefined(again) !== text) {
        return yield* error("get", id, { _tag: "Conflict", detail: "the record changed while it was read; try again" })
      }
      const target = `${accountFor(id)}${quarantineInfix}${yield* Clock.currentTimeMillis}`
      // Copy before delete: a failure in between leaves two copies, never none.
      yield* keyring.set(service, target, text).pipe(Effect.mapError(failure("get", id)))
      yield* keyring.remove(service, accountFor(id)).pipe(Effect.mapError(failure("get", id)))
      return `${service}/${target}`
    })
  const quarantineFile = (id: string) => overflow.quarantine(id, quarantineInfix).pipe(Effect.mapError(failure("get", id)))

  const corrupted = (id: string, detail: string, quarantinedAs: string | undefined) =>
    Effect.andThen(
      bestEffort(`could not mark session ${id} corrupted in the index`)(
        index.markCorrupted(id, { provider: providerOf(id), backend }, detail, quarantinedAs)
      ),
      Effect.fail(error("get", id, { _tag: "Corrupted", detail, quarantinedAs }))
    )

  const getUnlocked = (id: string) =>
    Effect.gen(function*() {
      const entry = yield* entryOf("get", id)
      const inFile = Option.isSome(entry) && entry.value.location === "file"
      const [first, second] = inFile ? [readFile(id), readInline(id)] : [readInline(id), readFile(id)]
      const found = yield* Effect.flatMap(first, (o) => Option.isSome(o) ? Effect.succeed(o) : second)

      if (Option.isNone(found)) {
        if (Option.isNone(entry)) return yield* error("get", id, { _tag: "NotFound" })
        const e = entry.value
        if (e.state === "corrupted") {
          return yield* error("get", id, { _tag: "Corrupted", detail: e.lastError ?? "marked corrupted", quarantinedAs: e.quarantinedAs })
        }
        return yield* corrupted(
          id,
          `secret missing from the ${backend} (removed outside magictunnel, the keyring was reset, or a write was interrupted); log in again`,
          undefined
        )
      }
      const f = found.value
      if (f.location === "damaged-file") {
        return yield* corrupted(id, f.detail, f.quarantine ? yield* quarantineFile(id) : undefined)
      }
      // The decoder's message may quote the input, which holds secrets: only say that it failed.
      const record = yield* decodeRecord(f.text).pipe(Effect.option)
      if (Option.isNone(record) || record.value.id !== id) {
        const detail = Option.isNone(record)
          ? "not a session record of a known version"
          : "record of another session (copied over this one)"
        return yield* corrupted(id, detail, f.location === "inline" ? yield* quarantineInline(id, f.text) : yield* quarantineFile(id))
      }
      const fresh = indexEntry(record.value, f.location, entry)
      if (Option.isNone(entry) || !sameEntry(entry.value, fresh)) {
        yield* bestEffort(`index repair of session ${id} failed`)(index.put(fresh))
      }
      return record.value
    })

  // --- writing -----------------------------------------------------------

  const putUnlocked = (record: TokenStore.SessionRecord) =>
    Effect.gen(function*() {
      const id = record.id
      const text = yield* Schema.encodeEffect(RecordJson)(record).pipe(Effect.orDie)
      const location = utf8.encode(text).length <= keyring.maxSecretBytes ? "inline" : "file"
      const previous = yield* entryOf("put", id)
      const entry = indexEntry(record, location, previous)

      // New session: listed before it exists, so a crash can never hide a stored secret.
      if (Option.isNone(previous)) yield* index.put(entry).pipe(Effect.mapError(failure("put", id)))
      const write = location === "inline" ? keyring.set(service, accountFor(id), text) : overflow.write(id, text)
      yield* write.pipe(
        Effect.mapError(failure("put", id)),
        // A first write that failed: nothing was stored, so nothing may be listed.
        Effect.tapError(() => Option.isNone(previous) ? index.remove(id).pipe(Effect.ignore) : Effect.void)
      )
      if (Option.isSome(previous)) yield* index.put(entry).pipe(Effect.mapError(failure("put", id)))

      // The entry now points at the new copy: the other place may go. The put has happened either way;
      // a stale copy left behind is never read first, and `remove` deletes both.
      if (location === "inline") {
        yield* bestEffort(`could not delete the overflow file of session ${id}`)(overflow.remove(id))
      } else if (Option.isNone(previous) || previous.value.location !== "file") {
        yield* bestEffort(`could not delete the keyring copy of session ${id}`)(keyring.remove(service, accountFor(id)))
      }
    })

  const removeUnlocked = (id: string) =>
    Effect.gen(function*() {
      const entry = yield* entryOf("remove", id)
      yield* keyring.remove(service, accountFor(id)).pipe(Effect.mapError(failure("remove", id)))
      yield* overflow.remove(id).pipe(Effect.mapError(failure("remove", id)))
      // Logging out means the tokens go, including a quarantined copy (it may hold a valid refresh token).
      const quarantined = Option.getOrUndefined(Option.flatMapNullishOr(entry, (e) => e.quarantinedAs))
      if (quarantined !== undefined && quarantined.startsWith(`${service}/`)) {
        yield* keyring.remove(service, quarantined.slice(service.length + 1)).pipe(Effect.mapError(failure("remove", id)))
      }
      yield* index.remove(id).pipe(Effect.mapError(failure("remove", id)))
    })

  const get = Effect.fn("TokenStore.keyring.get")(function*(id: string) {
    return yield* lockOf(id).withPermits(1)(getUnlocked(id))
  })
  const put = Effect.fn("TokenStore.keyring.put")(function*(record: TokenStore.SessionRecord) {
    yield* lockOf(record.id).withPermits(1)(putUnlocked(record))
  })
  const remove = Effect.fn("TokenStore.keyring.remove")(function*(id: string) {
    yield* lockOf(id).withPermits(1)(removeUnlocked(id))
  })
  const list = Effect.fn("TokenStore.keyring.list")(function*() {
    const listing = yield* index.list.pipe(Effect.mapError(failure("list")))
    if (listing.damaged.length > 0) {
      yield* Effect.logWarning(`${listing.damaged.length} unreadable index entries in ${index.directory} were skipped`)
    }
    // The index directory is per namespace, not per backend: list only what this keyring holds.
    return listing.entries.filter((e) => e.backend === backend).map(MetadataIndex.metadataOfEntry)
  })
  const health = Effect.fn("TokenStore.keyring.health")(function*() {
    const p = yield* Keyring.probeWith(keyring)
    return { backend, ...p } satisfies TokenStore.Health
  })

  return TokenStore.TokenStore.of({
    backend,
    durability: "persistent",
    insecure: false,
    get,
    put,
    remove,
    list: list(),
    health: health()
  })
})

/** The keyring store (needs a `Keyring`, the `UserContext`, the `SessionConfig` and the platform services). */
export const layer = Layer.effect(TokenStore.TokenStore, make)
