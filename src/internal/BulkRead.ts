/**
 * Reading many small files at once (every record of a store, at start-up)
 * without paying the event loop's price per file.
 *
 * An asynchronous read is three trips to libuv's thread pool (open, read,
 * close), and on the machines measured each trip costs the event loop 10 to
 * 25 µs of dispatch and wake-up, against about 7 µs for a whole synchronous
 * read. Reading synchronously on the event loop would stall an embedding
 * server for the whole scan, and hang it on a stuck network mount. So a
 * worker thread reads the files synchronously, in order, and hands them back
 * in one transferred buffer: the event loop pays one message, not three
 * trips per file, and a stuck mount blocks the worker, not the server.
 *
 * Starting a worker costs tens of milliseconds, so callers use this only for
 * many files ({@link minFiles}); a worker that cannot start (a runtime without
 * worker threads, a resource limit) answers `None` and the caller reads the
 * files one by one as usual.
 */
import type { Worker } from "node:worker_threads"
import { Effect, Option, Result } from "effect"
import type * as PlatformError from "effect/PlatformError"
import { errorOf } from "./ReadFile.js"

/** Below this many files, reading them one by one is cheaper than starting a worker. */
export const minFiles = 256

/** One file's outcome: its bytes, `None` when it does not exist (any more), or why it could not be read. */
export type Read = Result.Result<Option.Option<Uint8Array>, PlatformError.PlatformError>

interface Failure {
  readonly index: number
  readonly code: string | undefined
  readonly syscall: string | undefined
  readonly message: string
}

interface Reply {
  /** Per file: its length in `data`, or -1 when it failed (see `failures`). */
  readonly lengths: Int32Array
  readonly failures: ReadonlyArray<Failure>
  readonly data: ArrayBuffer
}

// Plain CommonJS run by the worker (`eval`): nothing to bundle or resolve.
const source = `
const { parentPort, workerData } = require("node:worker_threads")
const fs = require("node:fs")
const paths = workerData
const lengths = new Int32Array(paths.length)
const failures = []
const chunks = []
for (let i = 0; i < paths.length; i++) {
  try {
    const bytes = fs.readFileSync(paths[i])
    chunks.push(bytes)
    lengths[i] = bytes.length
  } catch (e) {
    lengths[i] = -1
    failures.push({ index: i, code: e.code, syscall: e.syscall, message: String(e.message) })
  }
}
const joined = Buffer.concat(chunks)
const data = joined.byteOffset === 0 && joined.byteLength === joined.buffer.byteLength
  ? joined.buffer
  : joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength)
parentPort.postMessage({ lengths, failures, data }, [data])
`

const repliesOf = (paths: ReadonlyArray<string>, reply: Reply): ReadonlyArray<Read> => {
  const failures = new Map(reply.failures.map((f) => [f.index, f]))
  const out: Array<Read> = []
  let offset = 0
  for (let i = 0; i < paths.length; i++) {
    const length = reply.lengths[i] ?? -1
    if (length >= 0) {
      out.push(Result.succeed(Option.some(new Uint8Array(reply.data, offset, length))))
      offset += length
      continue
    }
    const failure = failures.get(i)
    out.push(
      failure?.code === "ENOENT"
        ? Result.succeed(Option.none())
        : Result.fail(errorOf(paths[i]!, { code: failure?.code, syscall: failure?.syscall, message: failure?.message ?? "unknown failure" }))
    )
  }
  return out
}

/**
 * The contents of `paths`, in order, read by a worker thread; `None` when no
 * worker could do it (the caller then reads them itself).
 */
export const readMany = (paths: ReadonlyArray<string>): Effect.Effect<Option.Option<ReadonlyArray<Read>>> =>
  // Loaded on first use: a command that never lists many records does not load it.
  Effect.flatMap(
    Effect.promise(() => import("node:worker_threads").then((m) => Option.some(m.Worker), () => Option.none<typeof Worker>())),
    (WorkerClass) => Option.isNone(WorkerClass) ? Effect.succeedNone : readWith(WorkerClass.value, paths)
  )

const readWith = (WorkerClass: typeof Worker, paths: ReadonlyArray<string>): Effect.Effect<Option.Option<ReadonlyArray<Read>>> =>
  Effect.callback<Option.Option<ReadonlyArray<Read>>>((resume) => {
    let worker: Worker
    try {
      // No inherited flags: the embedding process's --require/--import (a TypeScript loader, an
      // instrumentation agent) would load again in the worker, for code that needs none of them.
      worker = new WorkerClass(source, { eval: true, workerData: paths, execArgv: [] })
    } catch {
      resume(Effect.succeedNone)
      return
    }
    let done = false
    const finish = (answer: Option.Option<ReadonlyArray<Read>>) => {
      if (done) return
      done = true
      resume(Effect.succeed(answer))
      void worker.terminate()
    }
    worker.once("message", (reply: Reply) => finish(Option.some(repliesOf(paths, reply))))
    worker.once("error", () => finish(Option.none()))
    worker.once("exit", () => finish(Option.none()))
    return Effect.sync(() => {
      done = true
      void worker.terminate()
    })
  })
