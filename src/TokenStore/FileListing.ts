/**
 * `list` of the encrypted file store (`EncryptedFile.ts`): every record file
 * is opened (the record decides; a damaged one is reported and set aside, as
 * `get` does), and the index directory is reconciled with the records. An
 * index entry is read only where a record cannot speak for itself
 * (unreadable, does not open, gone) and written only where a record has none;
 * an entry left without its record is removed, unless it marks a session set
 * aside as corrupted, which stays listed.
 *
 * The records are read by the store's worker thread in one message
 * (`FileWorker.ts`), started for many records and used for a few when it
 * already runs; otherwise, or when it fails, one by one.
 */
import { Effect, type FileSystem, Option, Result } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as FileWorker from "../internal/FileWorker.js"
import * as MetadataIndex from "../internal/MetadataIndex.js"
import * as RecordCodec from "../internal/RecordCodec.js"
import * as TokenStore from "../TokenStore.js"

const backend = "filesystem" as const

/** What listing needs of the store it belongs to. */
export interface Deps {
  readonly dir: string
  /** The suffix of record file names. */
  readonly recordSuffix: string
  readonly fs: FileSystem.FileSystem
  readonly index: MetadataIndex.MetadataIndex
  readonly codec: RecordCodec.Codec
  readonly files: FileWorker.FileWorker
  /** The record file of a file key. */
  readonly fileOf: (fileKey: string) => string
  /** The store's error for a failed file-system operation of `list`. */
  readonly failure: (e: PlatformError) => TokenStore.TokenStoreError
  /** Moves a damaged record aside (if it is still the bytes judged) and marks its index entry. */
  readonly quarantine: (
    id: string,
    fileKey: string,
    data: Uint8Array,
    problem: RecordCodec.Problem
  ) => Effect.Effect<string | undefined, TokenStore.TokenStoreError>
}

/** The store's `list`. */
export const make = ({ codec, dir, failure, fileOf, files, fs, index, quarantine, recordSuffix }: Deps) => {
  const repair = (what: string, e: Effect.Effect<void, PlatformError>) =>
    e.pipe(Effect.catch((err) => Effect.logWarning(`index repair (${what}) failed: ${err.message}`)))
  /** The index entry of a file key, when there is a sound one (consulted only for records that do not open). */
  const entryAt = (fileKey: string) =>
    index.read(fileKey).pipe(
      Effect.map((r) => r._tag === "Found" ? Option.some(r.entry) : Option.none<MetadataIndex.IndexEntry>()),
      Effect.orElseSucceed(() => Option.none<MetadataIndex.IndexEntry>())
    )

  return Effect.fn("TokenStore.filesystem.list")(function*() {
    const [names, indexed] = yield* Effect.all([fs.readDirectory(dir), index.fileKeys], { concurrency: 2 }).pipe(
      Effect.mapError(failure)
    )
    const fileKeys = new Set(
      names.filter((n) => n.endsWith(recordSuffix) && !n.startsWith(".")).map((n) => n.slice(0, -recordSuffix.length))
    )
    const out: Array<TokenStore.SessionMetadata> = []
    // What `list` reads of a record: the same checks as `get`, the metadata only (no secret is wrapped
    // or kept), opened with the keys loaded now; a record sealed with a key this process does not have
    // yet goes through `open`, which reloads the keyset.
    const openNow = yield* codec.opener
    const readMetadata = (fileKey: string, data: Uint8Array): Effect.Effect<TokenStore.SessionMetadata, RecordCodec.Problem> => {
      const opened = openNow(fileKey, data)
      if (opened === undefined) {
        return Effect.flatMap(codec.open(fileKey, data), (plain) =>
          Effect.fromResult(RecordCodec.decodeMetadata(fileKey, plain, backend)))
      }
      return Effect.fromResult(Result.flatMap(opened, (plain) => RecordCodec.decodeMetadata(fileKey, plain, backend)))
    }

    // The records are read by the worker thread in one message (FileWorker.ts): started for many, used
    // for a few when it already runs; otherwise, or when it fails, one by one.
    const ordered = Array.from(fileKeys)
    const bulk = ordered.length > 1
      ? yield* files.readMany(ordered.map(fileOf), { start: ordered.length >= FileWorker.manyFiles })
      : Option.none<ReadonlyArray<FileWorker.Read>>()
    const preRead = Option.map(bulk, (reads) => new Map(ordered.map((fileKey, i) => [fileKey, reads[i]!])))
    const read = (fileKey: string): Effect.Effect<Result.Result<Option.Option<Uint8Array>, PlatformError>> => {
      const known = Option.isSome(preRead) ? preRead.value.get(fileKey) : undefined
      return known !== undefined ? Effect.succeed(known) : Effect.result(files.read(fileOf(fileKey)))
    }

    // Every record is opened: the record decides, and a damaged one is reported (and set aside) here too.
    // The index is read only where the record cannot speak for itself (unreadable, does not open, gone).
    const one = (fileKey: string) =>
      Effect.flatMap(read(fileKey), (read) => {
        if (Result.isFailure(read)) {
          // One unreadable record (a directory in its place, a file we may not read) must not hide every
          // other session: it is listed from its index entry with the error, or logged when it has none.
          const detail = `record unreadable: ${read.failure.message}`
          return Effect.flatMap(entryAt(fileKey), (entry) => {
            if (Option.isNone(entry)) return Effect.logWarning(`${fileOf(fileKey)}: ${detail}`)
            out.push({ ...MetadataIndex.metadataOfEntry(entry.value), lastError: Option.some(detail) })
            return Effect.void
          })
        }
        if (Option.isNone(read.success)) return Effect.void // removed meanwhile
        const data = read.success.value
        return Effect.flatMap(Effect.result(readMetadata(fileKey, data)), (opened) => {
          if (Result.isSuccess(opened)) {
            const metadata = opened.success
            out.push(metadata)
            // A record that opens is the truth; its entry is only written when there is none (a put
            // killed between its two writes, a file removed by hand). A stale entry is rewritten by the
            // next put and never read while its record opens.
            return indexed.has(fileKey) ? Effect.void : repair(metadata.id, Effect.flatMap(index.read(fileKey), (now) =>
              // A concurrent put may have indexed the session since the directory was read.
              now._tag === "Missing" ? index.put(MetadataIndex.entryOf(metadata), { durable: false }) : Effect.void))
          }
          return Effect.flatMap(entryAt(fileKey), (entry) => {
            if (Option.isNone(entry)) {
              // Neither the record nor an index entry names the session: it cannot be listed by id.
              return Effect.logWarning(
                `record file ${fileOf(fileKey)} does not open and has no index entry: ${opened.failure.detail}`
              )
            }
            out.push({
              ...MetadataIndex.metadataOfEntry(entry.value),
              state: "corrupted",
              lastError: Option.some(opened.failure.detail)
            })
            return Effect.ignore(quarantine(entry.value.id, fileKey, data, opened.failure))
          })
        })
      })
    yield* Effect.forEach(ordered, one, { concurrency: 16, discard: true })

    // Index files without a record: a corrupted session stays listed after its record was moved aside;
    // any other orphan entry goes (unless a put created its record after the directory was read), and so
    // does an index file that is not a sound entry.
    const orphans = Array.from(indexed).filter((fileKey) => !fileKeys.has(fileKey))
    yield* Effect.forEach(orphans, (fileKey) =>
      Effect.flatMap(index.read(fileKey).pipe(Effect.orElseSucceed((): MetadataIndex.Read => ({ _tag: "Damaged" }))), (r) => {
        switch (r._tag) {
          case "Missing":
            return Effect.void
          case "Damaged":
            return repair(`damaged index file ${fileKey}`, index.removeFile(fileKey))
          case "Found": {
            const entry = r.entry
            if (entry.state === "corrupted") {
              out.push(MetadataIndex.metadataOfEntry(entry))
              return Effect.void
            }
            return Effect.flatMap(fs.exists(fileOf(fileKey)).pipe(Effect.orElseSucceed(() => true)), (exists) =>
              exists ? Effect.void : repair(entry.id, index.remove(entry.id)))
          }
        }
      }), { concurrency: 16, discard: true })
    return out
  })
}
