/**
 * The audit log's file: whole lines appended to a file that is rotated by
 * size and may be shared with other processes (see `AuditLog.ts` for what
 * the lines say and why each must be whole).
 */
import { Effect, Exit, FileSystem, Option, Scope, Semaphore } from "effect"
import * as Path from "effect/Path"

/** How many lines a writer appends between checks that `path` is still the file it holds open. */
export const reopenCheckEvery = 64

/**
 * A writer that appends whole lines to `path` (0600, `O_APPEND`), one
 * `write` per line, rotating when the file would pass `maxBytes`.
 *
 * The file stays open between lines (opening, checking and closing it for
 * every line cost five round trips to libuv's pool, about 1 ms a line). Each
 * line is one `fstat` and one `write`: the size says when to rotate and
 * whether another process appended since our last line (then its last byte
 * is checked, and a line torn by a crash is fenced off with a newline, so
 * ours stays whole). Every {@link reopenCheckEvery} lines, and before
 * rotating, the path is checked to still be the open file: when another
 * process (or logrotate) moved it away, the new file is opened and nothing is
 * rotated twice. Writers of this process are serialized; other processes
 * append safely (`O_APPEND`). The file is closed with the scope.
 */
export const writer = Effect.fnUntraced(function*(options: {
  readonly path: string
  readonly maxBytes: number
  readonly maxFiles: number
}) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const mutex = yield* Semaphore.make(1)
  yield* fs.makeDirectory(path.dirname(options.path), { recursive: true, mode: 0o700 }).pipe(Effect.ignore)

  interface Open {
    readonly file: FileSystem.File
    readonly scope: Scope.Closeable
    readonly ino: Option.Option<bigint>
    /** The size after our last write: another size means someone else appended. */
    size: number
    sinceCheck: number
  }
  let current: Open | undefined
  const close = Effect.suspend(() => {
    const open = current
    current = undefined
    return open === undefined ? Effect.void : Scope.close(open.scope, Exit.void)
  })
  yield* Effect.addFinalizer(() => mutex.withPermits(1)(close))

  const openFile = Effect.gen(function*() {
    const scope = yield* Scope.make()
    const file = yield* fs.open(options.path, { flag: "a+", mode: 0o600 }).pipe(
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    const info = yield* file.stat.pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
    // The size is unknown to us yet: the first line checks the tail.
    const opened: Open = { file, scope, ino: info.ino, size: -1, sinceCheck: 0 }
    current = opened
    return opened
  })

  /** Whether `path` is still the file `open` holds (not moved away by a rotation elsewhere). */
  const stillAtPath = (open: Open) =>
    fs.stat(options.path).pipe(
      Effect.map((info) => Option.isNone(open.ino) || Option.isNone(info.ino) || info.ino.value === open.ino.value),
      Effect.orElseSucceed(() => false)
    )

  const rotate = Effect.gen(function*() {
    yield* fs.remove(`${options.path}.${options.maxFiles}`).pipe(Effect.ignore)
    for (let i = options.maxFiles - 1; i >= 1; i--) {
      yield* fs.rename(`${options.path}.${i}`, `${options.path}.${i + 1}`).pipe(Effect.ignore)
    }
    yield* fs.rename(options.path, `${options.path}.1`)
  })

  const append = (line: string) =>
    Effect.gen(function*() {
      const bytes = new TextEncoder().encode(line)
      let open = current ?? (yield* openFile)
      if (open.sinceCheck >= reopenCheckEvery) {
        open.sinceCheck = 0
        if (!(yield* stillAtPath(open))) {
          yield* close
          open = yield* openFile
        }
      }
      let size = Number((yield* open.file.stat).size)
      if (size > 0 && size + bytes.length > options.maxBytes) {
        // Rotated already by another process: write to the new file instead of rotating again.
        if (yield* stillAtPath(open)) yield* rotate
        yield* close
        open = yield* openFile
        size = Number((yield* open.file.stat).size)
      }
      // A line torn by an earlier crash (disk full, power loss) is fenced off, so ours stays whole.
      let out = bytes
      if (size > 0 && size !== open.size) {
        yield* open.file.seek(BigInt(size - 1), "start")
        const last = yield* open.file.readAlloc(1)
        if (Option.isSome(last) && last.value[0] !== 0x0a) {
          out = new Uint8Array(bytes.length + 1)
          out[0] = 0x0a
          out.set(bytes, 1)
        }
      }
      const written = yield* open.file.write(out)
      if (written !== out.length) yield* Effect.logWarning(`audit log: short write to ${options.path}`)
      open.size = size + written
      open.sinceCheck++
    }).pipe(
      // A failed line closes the file: the next one starts from a fresh open.
      Effect.onError(() => close)
    )

  // A file created before this version, or by hand, is tightened to 0600.
  yield* fs.chmod(options.path, 0o600).pipe(Effect.ignore)
  return (line: string) => mutex.withPermits(1)(append(line))
})
