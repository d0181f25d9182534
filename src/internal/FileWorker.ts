/**
 * FileWorker: the small-file reads and atomic replaces of a busy store, done
 * by one worker thread in one message each.
 *
 * An asynchronous file operation is a trip to libuv's thread pool, and on the
 * machines measured each trip costs the event loop 30 to 50 µs of dispatch
 * and wake-up: a durable atomic replace (open, write, fsync, chmod, close,
 * rename, then open, fsync and close the directory) costs about 300 µs of CPU
 * through `node:fs/promises`, a read of a small file about 150 µs. Done
 * synchronously by a worker thread, the same replace costs the process about
 * 50 to 100 µs in all, and the event loop one message. Doing it synchronously
 * on the event loop instead would stall an embedding server on every fsync,
 * and hang it on a stuck network mount; here a stuck mount blocks the worker.
 *
 * It also reads many files at once (every record of a store, in `list`),
 * synchronously and in order, and hands them back in one transferred buffer:
 * the event loop pays one message, not three trips per file.
 *
 * A worker costs tens of milliseconds to start and about 11 MiB of RSS, so it is
 * started only once a store has been used {@link startAfter} times (a CLI
 * command that reads one record never starts it), in the background, or when
 * a caller that reads many files asks for it ({@link FileWorker.ready}); it
 * then serves the store until the scope closes. Until it is online, and if it
 * cannot start (a runtime without worker threads, a resource limit) or stops,
 * the same operations run on the event loop with the `FileSystem` service
 * (`ReadFile`, `AtomicFile.replace`): callers never choose. Replaces keep the
 * guarantees of `AtomicFile`: temp file created exclusively with the mode,
 * fsynced when durable, renamed over the target, directory fsynced; a failed
 * replace removes its temp file. A request whose
 * caller was interrupted still completes in the worker (as an I/O in libuv's
 * pool would); its answer is dropped.
 *
 * The worker is not kept alive by itself: it holds the process open only
 * while a request is in flight, and it is terminated with the scope.
 */
import type { Worker } from "node:worker_threads"
import { Deferred, Effect, FileSystem, Option, Path, Result, Scope } from "effect"
import type * as PlatformError from "effect/PlatformError"
import * as AtomicFile from "./AtomicFile.js"
import { type Reply, source } from "./FileWorkerProgram.js"
import * as ReadFile from "./ReadFile.js"

/** Uses of a store before its worker is started. */
export const startAfter = 16

/**
 * From this many files, a many-file read starts the worker (and waits for it)
 * rather than reading them one by one: starting it costs about what reading
 * a few hundred files one by one costs the event loop, and it then serves
 * the store's later reads and writes. Below this, the worker is used only if
 * it already runs.
 */
export const manyFiles = 256

/** One file's outcome in a many-file read: its bytes, `None` when it does not exist, or why it could not be read. */
export type Read = Result.Result<Option.Option<Uint8Array>, PlatformError.PlatformError>

/** A worker that runs. */
export interface Running {
  /** The whole content of `path`; `None` when it does not exist. */
  readonly read: (path: string) => Effect.Effect<Option.Option<Uint8Array>, PlatformError.PlatformError>
  /** The contents of `paths`, in order; each file fails or succeeds on its own. */
  readonly readMany: (paths: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Read>, PlatformError.PlatformError>
  readonly replace: (request: AtomicFile.Replace) => Effect.Effect<AtomicFile.Replaced, PlatformError.PlatformError>
}

/** The file I/O of one store: in its worker thread once it runs, else with the `FileSystem` service. */
export interface FileWorker {
  /** The whole content of `path`; `None` when it does not exist. Counts one use. */
  readonly read: (path: string) => Effect.Effect<Option.Option<Uint8Array>, PlatformError.PlatformError>
  /** `AtomicFile.replace`. Counts one use. */
  readonly replace: (request: AtomicFile.Replace) => Effect.Effect<AtomicFile.Replaced, PlatformError.PlatformError>
  /**
   * The contents of `paths` in one message to the worker; `None` when it does
   * not run (the caller then reads them one by one). With `start`, a worker
   * not yet running is started and waited for first.
   */
  readonly readMany: (
    paths: ReadonlyArray<string>,
    options?: { readonly start?: boolean | undefined }
  ) => Effect.Effect<Option.Option<ReadonlyArray<Read>>>
  /** The worker if it runs now: starts nothing, counts no use. */
  readonly running: Effect.Effect<Running | undefined>
  /** The worker, started now if it was not, and waited for; `undefined` when it cannot run. */
  readonly ready: Effect.Effect<Running | undefined>
}

/** The outcomes of a many-file read, from the worker's reply. */
const readsOf = (paths: ReadonlyArray<string>, reply: Reply): ReadonlyArray<Read> => {
  const failures = new Map((reply.failures ?? []).map((f) => [f.index, f]))
  const data = reply.data ?? new ArrayBuffer(0)
  const out: Array<Read> = []
  let offset = 0
  for (let i = 0; i < paths.length; i++) {
    const length = reply.lengths?.[i] ?? -1
    if (length >= 0) {
      out.push(Result.succeed(Option.some(new Uint8Array(data, offset, length))))
      offset += length
      continue
    }
    const failure = failures.get(i)
    out.push(
      failure?.code === "ENOENT"
        ? Result.succeed(Option.none())
        : Result.fail(ReadFile.errorOf(paths[i]!, { code: failure?.code, syscall: failure?.syscall, message: failure?.message ?? "unknown failure" }))
    )
  }
  return out
}


type State =
  | { readonly _tag: "Idle"; readonly uses: number }
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Running"; readonly running: Running }
  | { readonly _tag: "Unavailable" }

/**
 * The file I/O of a store: its worker is started after {@link startAfter}
 * uses (or `options.startAfter`), and terminated with the scope.
 */
export const make = (
  options?: { readonly startAfter?: number | undefined }
): Effect.Effect<FileWorker, never, Scope.Scope | FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const scope = yield* Scope.Scope
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const threshold = options?.startAfter ?? startAfter
    let state: State = { _tag: "Idle", uses: 0 }
    let worker: Worker | undefined
    // Settled once the start is over: with the worker, or undefined when it could not start.
    const online = Deferred.makeUnsafe<Running | undefined>()
    yield* Scope.addFinalizer(scope, Effect.suspend(() => {
      state = { _tag: "Unavailable" }
      if (worker !== undefined) void worker.terminate()
      worker = undefined
      return Deferred.succeed(online, undefined)
    }))

    const start = Effect.promise(() => import("node:worker_threads").then((m) => m.Worker, () => undefined)).pipe(
      Effect.flatMap((WorkerClass) =>
        Effect.callback<Running | undefined>((resume) => {
          if (WorkerClass === undefined) return resume(Effect.succeed(undefined))
          let spawned: Worker
          try {
            // No inherited flags: the embedding process's --require/--import (a TypeScript loader, an
            // instrumentation agent) would load again in the worker, for code that needs none of them.
            spawned = new WorkerClass(source, { eval: true, execArgv: [] })
          } catch {
            return resume(Effect.succeed(undefined))
          }
          // Kept referenced while it starts (a caller may be waiting for it), unreferenced once idle.
          worker = spawned
          let settled = false
          const settle = (running: Running | undefined) => {
            if (settled) return
            settled = true
            resume(Effect.succeed(running))
          }
          spawned.once("online", () => settle(runningOn(spawned)))
          spawned.once("error", () => settle(undefined))
          spawned.once("exit", () => settle(undefined))
          return Effect.sync(() => void spawned.terminate())
        })
      ),
      Effect.tap((running) =>
        Effect.suspend(() => {
          if (state._tag !== "Starting") return Deferred.succeed(online, undefined)
          state = running === undefined ? { _tag: "Unavailable" } : { _tag: "Running", running }
          return Deferred.succeed(online, running)
        })
      )
    )

    /** The requests of one live worker; its death fails those in flight and retires it. */
    const runningOn = (w: Worker): Running => {
      const pending = new Map<number, (reply: Reply) => void>()
      let next = 0
      const settle = (reply: Reply) => {
        const resolve = pending.get(reply.id)
        pending.delete(reply.id)
        if (pending.size === 0) w.unref()
        resolve?.(reply)
      }
      // Set once the worker is gone: a caller still holding this `Running` then fails at once.
      let stopped: string | undefined
      const died = (detail: string) => {
        stopped ??= `the file worker stopped: ${detail}`
        if (state._tag === "Running") state = { _tag: "Unavailable" }
        for (const id of Array.from(pending.keys())) {
          settle({ id, error: { code: undefined, syscall: undefined, message: `the file worker stopped: ${detail}` } })
        }
      }
      w.on("message", settle)
      w.on("error", (e) => died(e.message))
      w.on("exit", (code) => died(`exit code ${code}`))
      w.unref()

      const call = <A>(file: string, request: Record<string, unknown>, answer: (reply: Reply) => A) =>
        Effect.callback<A, PlatformError.PlatformError>((resume) => {
          if (stopped !== undefined) {
            const op = request["op"] === "replace" ? "writeFile" : "readFile"
            return resume(Effect.fail(ReadFile.errorOf(file, { code: undefined, syscall: undefined, message: stopped }, op)))
          }
          const id = next++
          pending.set(id, (reply) =>
            resume(
              reply.error === undefined
                ? Effect.succeed(answer(reply))
                : Effect.fail(ReadFile.errorOf(file, reply.error, request["op"] === "replace" ? "writeFile" : "readFile"))
            ))
          if (pending.size === 1) w.ref()
          try {
            w.postMessage({ ...request, id })
          } catch (e) {
            settle({ id, error: { code: undefined, syscall: undefined, message: `cannot reach the file worker: ${String(e)}` } })
          }
          return Effect.sync(() => {
            // The worker finishes the request; its answer is dropped.
            pending.set(id, () => {})
          })
        })

      return {
        read: (file) =>
          call(file, { op: "read", path: file }, (reply) =>
            reply.missing === true || reply.data === undefined ? Option.none() : Option.some(new Uint8Array(reply.data))),
        readMany: (paths) => call(paths[0] ?? "", { op: "readMany", paths }, (reply) => readsOf(paths, reply)),
        replace: (request) =>
          call(request.target, { op: "replace", tempInfix: AtomicFile.tempInfix, ...request }, (reply): AtomicFile.Replaced =>
            reply.skipped === true ? { _tag: "Skipped" } : { _tag: "Written", version: reply.version ?? "" })
      }
    }

    const use: Effect.Effect<Running | undefined> = Effect.suspend(() => {
      switch (state._tag) {
        case "Running":
          return Effect.succeed(state.running)
        case "Idle":
          if (state.uses + 1 < threshold) {
            state = { _tag: "Idle", uses: state.uses + 1 }
            return Effect.succeed(undefined)
          }
          state = { _tag: "Starting" }
          return Effect.as(Effect.forkIn(start, scope), undefined)
        default:
          return Effect.succeed(undefined)
      }
    })

    // A worker that stopped since it came online is not answered.
    const current = Effect.sync(() => state._tag === "Running" ? state.running : undefined)
    const ready: Effect.Effect<Running | undefined> = Effect.suspend(() => {
      if (state._tag === "Idle") {
        state = { _tag: "Starting" }
        return Effect.forkIn(start, scope).pipe(Effect.andThen(Deferred.await(online)), Effect.andThen(current))
      }
      return Effect.andThen(Deferred.await(online), current)
    })

    // Off the worker: the same operations on the event loop.
    const services = <A, E>(e: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) =>
      e.pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.provideService(Path.Path, path))
    const readHere = (file: string) =>
      ReadFile.readFile(file).pipe(
        Effect.map(Option.some),
        Effect.catchTag("PlatformError", (e) => AtomicFile.isNotFound(e) ? Effect.succeedNone : Effect.fail(e))
      )

    return {
      read: (file) => Effect.flatMap(use, (w) => w === undefined ? readHere(file) : w.read(file)),
      replace: (request) => Effect.flatMap(use, (w) => w === undefined ? services(AtomicFile.replace(request)) : w.replace(request)),
      readMany: (paths, readOptions) =>
        Effect.flatMap(readOptions?.start === true ? ready : use, (w) =>
          w === undefined ? Effect.succeedNone : Effect.option(w.readMany(paths))),
      running: current,
      ready
    } satisfies FileWorker
  })
