/**
 * Crash-safe file replacement: after any crash, the target is either the old
 * content or the new content, never a torn mix.
 *
 * The data goes to a temp file in the same directory (same filesystem, so the
 * rename is atomic), created exclusively with the final mode, fsynced, renamed
 * over the target, and then the directory is fsynced so the rename itself is
 * durable. Temp files are named `.<name>.tmp-<random>` so a sweeper can find
 * and remove the leftovers of a killed writer.
 *
 * `durable: false` skips both fsyncs, for files that can be rebuilt from
 * others (the metadata index): the temp file and the rename still make every
 * replace all-or-nothing when a process is killed; only a power loss or a
 * kernel crash may then lose the replace, or leave the new file empty.
 */
import * as Crypto from "node:crypto"
import { Effect, FileSystem, Option, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"

/** The prefix/infix of temp files, for sweeping leftovers after a crash. */
export const tempInfix = ".tmp-"

/** True when a platform error means the path does not exist. */
export const isNotFound = (e: PlatformError): boolean => e.reason._tag === "NotFound"

/** Options of {@link write}. */
export interface WriteOptions {
  /** fsync the file and its directory (the default); false only for data that can be rebuilt. */
  readonly durable?: boolean | undefined
}

/**
 * What tells one version of a file from another: its inode, birth and
 * modification times and size. An atomic replace always makes a new inode,
 * and a reused inode number comes with new times, so a file whose version is
 * unchanged still holds what was written (short of a deliberate forgery).
 */
export const versionOf = (info: FileSystem.File.Info): string =>
  [
    Option.getOrUndefined(info.ino),
    Option.getOrUndefined(Option.map(info.birthtime, (d) => d.getTime())),
    Option.getOrUndefined(Option.map(info.mtime, (d) => d.getTime())),
    info.size
  ].join(":")

/** One atomic replace of `target` with `data` and exactly `mode`, durable or not (see {@link write}). */
export interface Replace {
  readonly target: string
  readonly data: Uint8Array
  readonly mode: number
  readonly durable: boolean
  /** Skip the write when the target's {@link versionOf} is this one. */
  readonly unlessVersion?: string | undefined
}

/** What a replace did: wrote a file of this version, or skipped (`unlessVersion` matched). */
export type Replaced =
  | { readonly _tag: "Written"; readonly version: string }
  | { readonly _tag: "Skipped" }

const skipped: Replaced = { _tag: "Skipped" }

/** Writes `data` to `target` atomically and (unless told otherwise) durably with exactly `mode` (umask ignored). */
export const write = (target: string, data: Uint8Array, mode: number, options?: WriteOptions) =>
  Effect.asVoid(writeFile(target, data, mode, options, false))

/**
 * {@link write} as a {@link Replace}: skipped when the target is still the
 * version named, else written and answered with the version of the new file
 * (taken from its descriptor, before the rename). `FileWorker` runs the same
 * operation in its thread.
 */
export const replace = (request: Replace): Effect.Effect<Replaced, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    if (request.unlessVersion !== undefined) {
      const fs = yield* FileSystem.FileSystem
      const info = yield* Effect.option(fs.stat(request.target))
      if (Option.isSome(info) && versionOf(info.value) === request.unlessVersion) return skipped
    }
    const version = yield* writeFile(request.target, request.data, request.mode, { durable: request.durable }, true)
    return { _tag: "Written", version: version ?? "" } satisfies Replaced
  })

const writeFile = Effect.fnUntraced(function*(
  target: string,
  data: Uint8Array,
  mode: number,
  options: WriteOptions | undefined,
  versioned: boolean
): Effect.fn.Return<string | undefined, PlatformError, FileSystem.FileSystem | Path.Path> {
  const durable = options?.durable ?? true
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = path.dirname(target)
  const tmp = path.join(dir, `.${path.basename(target)}${tempInfix}${Crypto.randomBytes(6).toString("hex")}`)
  const version = yield* Effect.scoped(Effect.gen(function*() {
    const file = yield* fs.open(tmp, { flag: "wx", mode })
    yield* file.writeAll(data)
    if (durable) yield* file.sync
    return versioned ? versionOf(yield* file.stat) : undefined
  })).pipe(
    // open's mode is filtered by the umask; set it exactly before the file becomes visible.
    Effect.tap(fs.chmod(tmp, mode)),
    Effect.tap(fs.rename(tmp, target)),
    Effect.onError(() => fs.remove(tmp).pipe(Effect.ignore))
  )
  if (durable) yield* syncDirectory(dir)
  return version
})

/** fsyncs a directory so that renames and unlinks in it survive a power loss. */
export const syncDirectory = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  // Windows cannot open a directory for fsync; there the rename is as durable as it gets.
  if (process.platform === "win32") return
  yield* Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (d) => d.sync))
})

/**
 * Removes temp files older than `olderThanMs` left in `dir` by killed writers;
 * with `target`, only those of that one file (for directories shared with others).
 */
export const sweepTemps = Effect.fnUntraced(function*(
  dir: string,
  nowMs: number,
  olderThanMs: number,
  options?: { readonly target?: string | undefined }
) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const names = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>))
  const prefix = options?.target === undefined ? "." : `.${options.target}${tempInfix}`
  let removed = 0
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.includes(tempInfix)) continue
    const full = path.join(dir, name)
    const info = yield* fs.stat(full).pipe(Effect.option)
    if (info._tag === "None") continue
    const mtime = info.value.mtime._tag === "Some" ? info.value.mtime.value.getTime() : 0
    if (nowMs - mtime >= olderThanMs) {
      yield* fs.remove(full).pipe(Effect.ignore)
      removed++
    }
  }
  return removed
})
