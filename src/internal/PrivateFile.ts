/**
 * PrivateFile: a small secret file kept the way ssh keeps a private key.
 *
 * Reading refuses a file that group or others can access, that another user
 * owns, that is not a regular file, or that lies inside a directory it must
 * stay out of (the key of a session directory must not travel with it).
 * Creating is exclusive and safe when processes race: the content goes to a
 * 0600 temp file that is then `link`ed to the final name; `link` fails when
 * the name exists, so exactly one creator wins and every racer reads the
 * winner's content back.
 */
import * as Crypto from "node:crypto"
import { Data, Effect, FileSystem, Option, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as AtomicFile from "./AtomicFile.js"

/** Why a private file is refused. */
export class Insecure extends Data.TaggedError("PrivateFileInsecure")<{
  readonly path: string
  readonly problem: "InsideForbiddenDirectory" | "Permissions" | "ForeignOwner" | "NotAFile"
  readonly mode?: number | undefined
  readonly owner?: number | undefined
}> {}

/** Who must own the file (`-1`: no uids, Windows) and where it must not be. */
export interface Policy {
  readonly uid: number
  readonly forbiddenDirectory: string
}

const isInside = (path: Path.Path, dir: string, p: string) => {
  const rel = path.relative(dir, p)
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))
}

/** Checks `file` (if it exists) and its location against `policy`. */
export const check = Effect.fnUntraced(function*(file: string, policy: Policy) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const insecure = (problem: Insecure["problem"], extra: { mode?: number; owner?: number } = {}) =>
    new Insecure({ path: file, problem, ...extra })
  // Compare real paths too: a symlinked parent must not smuggle the file into the directory.
  const real = (p: string) => fs.realPath(p).pipe(Effect.orElseSucceed(() => p))
  if (
    isInside(path, policy.forbiddenDirectory, file) ||
    isInside(path, yield* real(policy.forbiddenDirectory), path.join(yield* real(path.dirname(file)), path.basename(file)))
  ) {
    return yield* insecure("InsideForbiddenDirectory")
  }
  const info = yield* fs.stat(file).pipe(Effect.option)
  if (Option.isNone(info)) return
  if (info.value.type !== "File") return yield* insecure("NotAFile")
  const owner = Option.getOrElse(info.value.uid, () => policy.uid)
  if (policy.uid >= 0 && owner !== policy.uid) return yield* insecure("ForeignOwner", { owner })
  if (policy.uid >= 0 && (info.value.mode & 0o077) !== 0) return yield* insecure("Permissions", { mode: info.value.mode })
})

/** Reads `file` after checking it; None when it does not exist. */
export const read = (
  file: string,
  policy: Policy
): Effect.Effect<Option.Option<string>, Insecure | PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* check(file, policy)
    return yield* fs.readFileString(file).pipe(
      Effect.map(Option.some),
      Effect.catchTag("PlatformError", (e) => AtomicFile.isNotFound(e) ? Effect.succeedNone : Effect.fail(e))
    )
  })

/**
 * Creates `file` (0600, parent created 0700 if missing) with `text` unless it
 * exists; returns the content that is there afterwards, ours or a racer's.
 */
export const createExclusive = (
  file: string,
  text: string,
  policy: Policy
): Effect.Effect<string, Insecure | PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* check(file, policy)
    const dir = path.dirname(file)
    if (!(yield* fs.exists(dir))) {
      yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 })
      yield* fs.chmod(dir, 0o700)
    }
    const tmp = path.join(dir, `.${path.basename(file)}${AtomicFile.tempInfix}${Crypto.randomBytes(6).toString("hex")}`)
    yield* Effect.scoped(Effect.gen(function*() {
      const handle = yield* fs.open(tmp, { flag: "wx", mode: 0o600 })
      yield* handle.writeAll(new TextEncoder().encode(text))
      yield* handle.sync
    })).pipe(
      // open's mode is filtered by the umask; be exact before the name appears.
      Effect.andThen(fs.chmod(tmp, 0o600)),
      Effect.andThen(fs.link(tmp, file).pipe(
        Effect.catchTag("PlatformError", (e) => e.reason._tag === "AlreadyExists" ? Effect.void : Effect.fail(e))
      )),
      Effect.ensuring(fs.remove(tmp).pipe(Effect.ignore))
    )
    yield* AtomicFile.syncDirectory(dir)
    return yield* fs.readFileString(file)
  })
