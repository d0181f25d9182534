/**
 * The metadata index: one small secret-free JSON file per session under
 * `<storageDirectory>/index/`, so that every backend can `list` after a
 * restart (OS keyrings cannot enumerate what they hold) without touching a
 * secret.
 *
 * One file per session rather than one shared file: concurrent writers in
 * different processes then never lose each other's updates, and every update
 * is an atomic replace of one file. The record in its backend is the source of
 * truth; the index is advisory and repaired from the record when they disagree.
 * A backend that can rebuild the entries from its records (the file store)
 * writes them without fsync (`durable: false`); the keyring stores, whose
 * only list is the index, keep them durable.
 */
import * as Crypto from "node:crypto"
import { DateTime, Effect, FileSystem, Option, Path, Schema } from "effect"
import type { PlatformError } from "effect/PlatformError"
import type * as TokenStore from "../TokenStore.js"
import * as AtomicFile from "./AtomicFile.js"
import type * as FileWorker from "./FileWorker.js"
import * as ReadFile from "./ReadFile.js"

/** The file-safe key of a session id: record and index files are named after it. */
export const fileKeyOf = (id: string): string => Crypto.createHash("sha256").update(id).digest("hex").slice(0, 32)

/** Where a record's secret lives, for backends that overflow (Windows' 2560-byte limit). */
export const Location = Schema.Literals(["inline", "file"])

/** One index entry (format version 1). */
export class IndexEntry extends Schema.Class<IndexEntry>("magictunnel-session/IndexEntry")({
  version: Schema.Literal(1),
  id: Schema.String,
  provider: Schema.String,
  issuer: Schema.optional(Schema.String),
  clientId: Schema.String,
  scopes: Schema.Array(Schema.String),
  resource: Schema.optional(Schema.String),
  expiresAt: Schema.optional(Schema.DateTimeUtcFromMillis),
  subject: Schema.optional(Schema.String),
  state: Schema.Literals(["active", "needs_reauth", "corrupted"]),
  hasRefreshToken: Schema.Boolean,
  generation: Schema.Int,
  updatedAt: Schema.DateTimeUtcFromMillis,
  lastRefreshAt: Schema.optional(Schema.DateTimeUtcFromMillis),
  lastError: Schema.optional(Schema.String),
  backend: Schema.Literals(["memory", "filesystem", "keychain", "credential_manager", "secret_service", "redis"]),
  location: Schema.optional(Location),
  /** Set when the record was found damaged and moved aside. */
  quarantinedAs: Schema.optional(Schema.String)
}) {}

const IndexEntryJson = Schema.fromJsonString(Schema.toCodecJson(IndexEntry))
const decodeEntry = Schema.decodeUnknownOption(IndexEntryJson)
const encodeEntry = Schema.encodeEffect(IndexEntryJson)

/** Builds an index entry from a record's metadata. */
export const entryOf = (
  m: TokenStore.SessionMetadata,
  extra?: { readonly location?: "inline" | "file"; readonly quarantinedAs?: string }
): IndexEntry =>
  new IndexEntry({
    version: 1,
    id: m.id,
    provider: m.provider,
    issuer: Option.getOrUndefined(m.issuer),
    clientId: m.clientId,
    scopes: [...m.scopes],
    resource: Option.getOrUndefined(m.resource),
    expiresAt: Option.getOrUndefined(m.expiresAt),
    subject: Option.getOrUndefined(m.subject),
    state: m.state,
    hasRefreshToken: m.hasRefreshToken,
    generation: m.generation,
    updatedAt: m.updatedAt,
    lastRefreshAt: Option.getOrUndefined(m.lastRefreshAt),
    lastError: Option.getOrUndefined(m.lastError),
    backend: m.backend,
    location: extra?.location,
    quarantinedAs: extra?.quarantinedAs
  })

/** The metadata view of an index entry. */
export const metadataOfEntry = (e: IndexEntry): TokenStore.SessionMetadata => ({
  id: e.id,
  provider: e.provider,
  issuer: Option.fromUndefinedOr(e.issuer),
  clientId: e.clientId,
  scopes: e.scopes,
  resource: Option.fromUndefinedOr(e.resource),
  expiresAt: Option.fromUndefinedOr(e.expiresAt),
  subject: Option.fromUndefinedOr(e.subject),
  state: e.state,
  hasRefreshToken: e.hasRefreshToken,
  generation: e.generation,
  updatedAt: e.updatedAt,
  lastRefreshAt: Option.fromUndefinedOr(e.lastRefreshAt),
  lastError: Option.fromUndefinedOr(e.lastError),
  backend: e.backend
})

/** What a listing of the index found. */
export interface Listing {
  readonly entries: ReadonlyArray<IndexEntry>
  /** Index files that could not be read or decoded (file keys); the records decide. */
  readonly damaged: ReadonlyArray<string>
}

/** What the index file of one file key holds. */
export type Read =
  | { readonly _tag: "Missing" }
  /** Not JSON, not an entry, or an entry of another session (copied or tampered with). */
  | { readonly _tag: "Damaged" }
  | { readonly _tag: "Found"; readonly entry: IndexEntry }

/** An index rooted at `<storageDirectory>/index`. */
export interface MetadataIndex {
  readonly directory: string
  readonly get: (id: string) => Effect.Effect<Option.Option<IndexEntry>, PlatformError>
  /**
   * Replaces a session's entry atomically; durably (fsynced) unless
   * `durable: false`, for a caller that can rebuild the entry from its record.
   */
  readonly put: (entry: IndexEntry, options?: AtomicFile.WriteOptions) => Effect.Effect<void, PlatformError>
  /**
   * Replaces a session's entry atomically, without fsync, unless the file is
   * still the one this process last wrote for it (same {@link AtomicFile.versionOf})
   * and that entry names the session alike ({@link identityOf}): then nothing
   * is written, and the fields every refresh changes (expiry, generation,
   * timestamps) stay as of that write. For a backend whose entries are read
   * only when their record cannot be (the file store): a refresh then costs
   * one `stat` instead of a replace, which ext4 flushes like a small fsync.
   */
  readonly putUnlessCurrent: (
    entry: IndexEntry,
    files?: Pick<FileWorker.FileWorker, "replace"> | undefined
  ) => Effect.Effect<void, PlatformError>
  readonly remove: (id: string) => Effect.Effect<void, PlatformError>
  readonly list: Effect.Effect<Listing, PlatformError>
  /** The file keys that have an index file (the directory's names only; nothing is read). */
  readonly fileKeys: Effect.Effect<ReadonlySet<string>, PlatformError>
  /** Reads the index file of one file key. */
  readonly read: (fileKey: string) => Effect.Effect<Read, PlatformError>
  /** Removes the index file of one file key (a damaged one, whose session is unknown). */
  readonly removeFile: (fileKey: string) => Effect.Effect<void, PlatformError>
  /** Marks a session corrupted, keeping what is known of it. */
  readonly markCorrupted: (
    id: string,
    fallback: { readonly provider: string; readonly backend: TokenStore.Backend },
    detail: string,
    quarantinedAs: string | undefined
  ) => Effect.Effect<void, PlatformError>
}

/** How many entries an index remembers the version of, for `putUnlessCurrent` (least recently written dropped). */
export const knownVersions = 4096

/**
 * What an entry says about who the session is and what state it is in: every
 * field but those a refresh changes each time (expiry, generation, timestamps).
 */
export const identityOf = (e: IndexEntry): string =>
  JSON.stringify([
    e.id,
    e.provider,
    e.issuer,
    e.clientId,
    e.scopes,
    e.resource,
    e.subject,
    e.state,
    e.hasRefreshToken,
    e.lastError,
    e.backend,
    e.location,
    e.quarantinedAs
  ])

const suffix = ".json"
const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder("utf-8", { fatal: true })
const decodeText = (bytes: Uint8Array): Option.Option<string> => {
  try {
    return Option.some(fromUtf8.decode(bytes))
  } catch {
    return Option.none()
  }
}
const missing: Read = { _tag: "Missing" }
const damaged: Read = { _tag: "Damaged" }

/** Opens (creating 0700 if needed) the index of one storage directory. */
export const make = Effect.fnUntraced(function*(storageDirectory: string, fileMode: number) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const directory = path.join(storageDirectory, "index")
  if (!(yield* fs.exists(directory))) {
    yield* fs.makeDirectory(directory, { recursive: true, mode: 0o700 })
    yield* fs.chmod(directory, 0o700)
  }
  const provide = Effect.provideService(FileSystem.FileSystem, fs)
  const fileOf = (id: string) => path.join(directory, fileKeyOf(id) + suffix)
  const fileOfKey = (fileKey: string) => path.join(directory, fileKey + suffix)
  const ignoreNotFound = (e: Effect.Effect<void, PlatformError>) =>
    Effect.catchTag(e, "PlatformError", (err) => AtomicFile.isNotFound(err) ? Effect.void : Effect.fail(err))

  const read = (fileKey: string): Effect.Effect<Read, PlatformError> =>
    ReadFile.readFile(fileOfKey(fileKey)).pipe(
      Effect.map((bytes): Read => {
        const decoded = Option.flatMap(decodeText(bytes), decodeEntry)
        // A file whose name does not match its id was copied or tampered with.
        return Option.isSome(decoded) && fileKeyOf(decoded.value.id) === fileKey
          ? { _tag: "Found", entry: decoded.value }
          : damaged
      }),
      Effect.catchTag("PlatformError", (e) => AtomicFile.isNotFound(e) ? Effect.succeed(missing) : Effect.fail(e))
    )

  const get = (id: string) =>
    Effect.map(read(fileKeyOf(id)), (r) => r._tag === "Found" && r.entry.id === id ? Option.some(r.entry) : Option.none())

  const put = (entry: IndexEntry, options?: AtomicFile.WriteOptions) =>
    encodeEntry(entry).pipe(
      Effect.orDie, // an IndexEntry we built always encodes
      Effect.flatMap((text) => AtomicFile.write(fileOf(entry.id), utf8.encode(text), fileMode, options)),
      Effect.provideService(Path.Path, path),
      provide
    )

  // The entries this process wrote through putUnlessCurrent: file key -> the version written and what it says.
  const known = new Map<string, { readonly version: string; readonly identity: string }>()
  const putUnlessCurrent = (entry: IndexEntry, files?: Pick<FileWorker.FileWorker, "replace"> | undefined) =>
    Effect.gen(function*() {
      const fileKey = fileKeyOf(entry.id)
      const identity = identityOf(entry)
      const last = known.get(fileKey)
      const request: AtomicFile.Replace = {
        target: fileOfKey(fileKey),
        data: utf8.encode(yield* Effect.orDie(encodeEntry(entry))),
        mode: fileMode,
        durable: false,
        unlessVersion: last !== undefined && last.identity === identity ? last.version : undefined
      }
      const replaced = yield* (files === undefined ? AtomicFile.replace(request) : files.replace(request))
      if (replaced._tag === "Skipped") return
      known.delete(fileKey)
      known.set(fileKey, { version: replaced.version, identity })
      if (known.size > knownVersions) {
        const [oldest] = known.keys()
        if (oldest !== undefined) known.delete(oldest)
      }
    }).pipe(Effect.provideService(Path.Path, path), provide)

  const remove = (id: string) => Effect.suspend(() => (known.delete(fileKeyOf(id)), ignoreNotFound(fs.remove(fileOf(id)))))
  const removeFile = (fileKey: string) =>
    Effect.suspend(() => (known.delete(fileKey), ignoreNotFound(fs.remove(fileOfKey(fileKey)))))

  const fileKeys = Effect.map(
    fs.readDirectory(directory),
    (names) => new Set(names.filter((n) => n.endsWith(suffix) && !n.startsWith(".")).map((n) => n.slice(0, -suffix.length)))
  )

  const list = Effect.gen(function*() {
    const keys = yield* fileKeys
    const entries: Array<IndexEntry> = []
    const damagedKeys: Array<string> = []
    yield* Effect.forEach(
      keys,
      (fileKey) =>
        read(fileKey).pipe(
          Effect.map((r) => {
            if (r._tag === "Found") entries.push(r.entry)
            else if (r._tag === "Damaged") damagedKeys.push(fileKey)
            // Missing: removed between readdir and read.
          }),
          Effect.catchTag("PlatformError", () => Effect.sync(() => damagedKeys.push(fileKey)))
        ),
      { concurrency: 16, discard: true }
    )
    return { entries, damaged: damagedKeys } satisfies Listing
  })

  const markCorrupted: MetadataIndex["markCorrupted"] = (id, fallback, detail, quarantinedAs) =>
    Effect.gen(function*() {
      const now = yield* DateTime.now
      const previous = yield* get(id)
      const base = Option.getOrElse(previous, () =>
        new IndexEntry({
          version: 1,
          id,
          provider: fallback.provider,
          clientId: "",
          scopes: [],
          state: "corrupted",
          hasRefreshToken: false,
          generation: 0,
          updatedAt: now,
          backend: fallback.backend
        }))
      yield* put(new IndexEntry({ ...base, state: "corrupted", lastError: detail, updatedAt: now, quarantinedAs }))
    })

  return { directory, get, put, putUnlessCurrent, remove, list, fileKeys, read, removeFile, markCorrupted } satisfies MetadataIndex
})
