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
 */
import * as Crypto from "node:crypto"
import { DateTime, Effect, FileSystem, Option, Path, Schema } from "effect"
import type { PlatformError } from "effect/PlatformError"
import type * as TokenStore from "../TokenStore.js"
import * as AtomicFile from "./AtomicFile.js"

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
const decodeEntry = Schema.decodeUnknownEffect(IndexEntryJson)
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

/** An index rooted at `<storageDirectory>/index`. */
export interface MetadataIndex {
  readonly directory: string
  readonly get: (id: string) => Effect.Effect<Option.Option<IndexEntry>, PlatformError>
  readonly put: (entry: IndexEntry) => Effect.Effect<void, PlatformError>
  readonly remove: (id: string) => Effect.Effect<void, PlatformError>
  readonly list: Effect.Effect<Listing, PlatformError>
  /** Marks a session corrupted, keeping what is known of it. */
  readonly markCorrupted: (
    id: string,
    fallback: { readonly provider: string; readonly backend: TokenStore.Backend },
    detail: string,
    quarantinedAs: string | undefined
  ) => Effect.Effect<void, PlatformError>
}

const suffix = ".json"

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

  const readFile = (file: string) =>
    fs.readFileString(file).pipe(
      Effect.flatMap((text) => Effect.option(decodeEntry(text)))
    )

  const get = (id: string) =>
    readFile(fileOf(id)).pipe(
      Effect.map(Option.filter((e) => e.id === id)),
      Effect.catchTag("PlatformError", (e) =>
        AtomicFile.isNotFound(e)
          ? Effect.succeedNone
          : Effect.fail(e))
    )

  const put = (entry: IndexEntry) =>
    encodeEntry(entry).pipe(
      Effect.orDie, // an IndexEntry we built always encodes
      Effect.flatMap((text) => AtomicFile.write(fileOf(entry.id), new TextEncoder().encode(text), fileMode)),
      Effect.provideService(Path.Path, path),
      provide
    )

  const remove = (id: string) =>
    fs.remove(fileOf(id)).pipe(
      Effect.catchTag("PlatformError", (e) =>
        AtomicFile.isNotFound(e) ? Effect.void : Effect.fail(e))
    )

  const list = Effect.gen(function*() {
    const names = yield* fs.readDirectory(directory)
    const entries: Array<IndexEntry> = []
    const damaged: Array<string> = []
    yield* Effect.forEach(
      names.filter((n) => n.endsWith(suffix) && !n.startsWith(".")),
      (name) =>
        readFile(path.join(directory, name)).pipe(
          Effect.map((o) => {
            // A file whose name does not match its id was copied or tampered with.
            if (o._tag === "Some" && fileKeyOf(o.value.id) + suffix === name) entries.push(o.value)
            else damaged.push(name.slice(0, -suffix.length))
          }),
          Effect.catchTag("PlatformError", (e) =>
            AtomicFile.isNotFound(e)
              ? Effect.void // removed between readdir and read
              : Effect.sync(() => damaged.push(name.slice(0, -suffix.length))))
        ),
      { concurrency: 16, discard: true }
    )
    return { entries, damaged } satisfies Listing
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

  return { directory, get, put, remove, list, markCorrupted } satisfies MetadataIndex
})
