import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { Effect, Exit, FileSystem, Option, Result, Schedule, Scope } from "effect"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePathLayer from "@effect/platform-node/NodePath"
import * as AtomicFile from "../../src/internal/AtomicFile.js"
import * as FileWorker from "../../src/internal/FileWorker.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "mts-fileworker-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The file I/O of a store, on this process's file system; its worker starts after `startAfter` uses. */
const make = (startAfter?: number) =>
  FileWorker.make({ startAfter }).pipe(Effect.provide([NodeFileSystem.layer, NodePathLayer.layer]))

/** The worker, started and waited for. */
const running = (files: FileWorker.FileWorker) =>
  Effect.flatMap(files.ready, (w) => {
    assert.isDefined(w, "the worker runs")
    return Effect.succeed(w!)
  })

/** Waits for a worker started in the background. */
const online = (files: FileWorker.FileWorker) =>
  files.running.pipe(
    Effect.flatMap((w) => w === undefined ? Effect.fail("not running yet" as const) : Effect.succeed(w)),
    Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 500 })))
  )

const reasonOf = <A>(e: Effect.Effect<A, { readonly reason: { readonly _tag: string } }>) =>
  Effect.map(Effect.flip(e), (error) => error.reason._tag)

/** The version the FileSystem service sees for `file`. */
const versionByService = (file: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.stat(file)).pipe(
    Effect.map(AtomicFile.versionOf),
    Effect.provide(NodeFileSystem.layer)
  )

describe("FileWorker", () => {
  it.live("is not started before the store is busy: until then the same operations run on the event loop", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const target = NodePath.join(dir, "f")
      const files = yield* make(10)
      let version = ""
      for (let i = 0; i < 4; i++) {
        const replaced = yield* files.replace({ target, data: Buffer.from(`v${i}`), mode: 0o600, durable: i % 2 === 0 })
        assert.strictEqual(replaced._tag, "Written")
        version = replaced._tag === "Written" ? replaced.version : ""
        assert.strictEqual(Buffer.from(Option.getOrThrow(yield* files.read(target))).toString(), `v${i}`)
      }
      assert.isUndefined(yield* files.running, "8 uses of 10: no worker yet")
      assert.strictEqual(version, yield* versionByService(target))
      // Skipped on the event loop too when the file is still that version.
      const skipped = yield* files.replace({ target, data: Buffer.from("ignored"), mode: 0o600, durable: false, unlessVersion: version })
      assert.strictEqual(skipped._tag, "Skipped")
      assert.isTrue(Option.isNone(yield* files.read(NodePath.join(dir, "missing"))))
      assert.isDefined(yield* online(files), "the tenth use started it")
      assert.strictEqual(Buffer.from(Option.getOrThrow(yield* files.read(target))).toString(), "v3")
    }).pipe(Effect.scoped))

  it.live("reads whole files, and None for a missing one; errors carry the FileSystem's reasons", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const worker = yield* running(yield* make(1))
      for (const size of [0, 1, 2300, 300_000]) {
        const file = NodePath.join(dir, `f-${size}`)
        const content = Crypto.randomBytes(size)
        Fs.writeFileSync(file, content)
        const read = yield* worker.read(file)
        assert.isTrue(Option.isSome(read))
        assert.isTrue(Buffer.from(Option.getOrThrow(read)).equals(content), `content of size ${size}`)
      }
      assert.isTrue(Option.isNone(yield* worker.read(NodePath.join(dir, "missing"))))
      Fs.mkdirSync(NodePath.join(dir, "sub"))
      assert.strictEqual(yield* reasonOf(worker.read(NodePath.join(dir, "sub"))), "BadResource")
    }).pipe(Effect.scoped))

  it.live("ready starts it at once and waits for it; many files come back in order, each on its own", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const files = yield* make()
      const worker = yield* files.ready
      assert.isDefined(worker)
      const paths = Array.from({ length: 300 }, (_, i) => NodePath.join(dir, `f${i}`))
      paths.forEach((p, i) => Fs.writeFileSync(p, `content ${i}`))
      Fs.rmSync(paths[7]!)
      Fs.rmSync(paths[8]!)
      Fs.mkdirSync(paths[8]!)
      const reads = yield* worker!.readMany(paths)
      assert.strictEqual(reads.length, paths.length)
      reads.forEach((r, i) => {
        if (i === 7) return assert.deepStrictEqual(r, Result.succeed(Option.none()), "missing: None")
        if (i === 8) return assert.isTrue(Result.isFailure(r) && r.failure.reason._tag === "BadResource", "a directory: its reason")
        assert.isTrue(Result.isSuccess(r))
        assert.strictEqual(Buffer.from(Option.getOrThrow(Result.getOrThrow(r))).toString(), `content ${i}`)
      })
      assert.strictEqual(yield* files.running, worker, "the same worker serves the later uses")
    }).pipe(Effect.scoped))

  it.live("replaces atomically with the exact mode whatever the umask, and answers the version the FileSystem sees", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const worker = yield* running(yield* make(1))
      const target = NodePath.join(dir, "record")
      Fs.writeFileSync(target, "old")
      const old = process.umask(0o077)
      const replaced = yield* worker.replace({ target, data: Buffer.from("new content"), mode: 0o640, durable: true }).pipe(
        Effect.ensuring(Effect.sync(() => process.umask(old)))
      )
      assert.strictEqual(Fs.readFileSync(target, "utf8"), "new content")
      assert.strictEqual(Fs.statSync(target).mode & 0o777, 0o640)
      assert.deepStrictEqual(Fs.readdirSync(dir), ["record"], "no temp file left")
      assert.strictEqual(replaced._tag, "Written")
      const version = replaced._tag === "Written" ? replaced.version : ""
      assert.strictEqual(version, yield* versionByService(target))

      // The same version: nothing written. Another file since (same content, new inode): written.
      const skipped = yield* worker.replace({ target, data: Buffer.from("ignored"), mode: 0o600, durable: false, unlessVersion: version })
      assert.strictEqual(skipped._tag, "Skipped")
      assert.strictEqual(Fs.readFileSync(target, "utf8"), "new content")
      Fs.writeFileSync(`${target}.other`, "new content")
      Fs.renameSync(`${target}.other`, target)
      const again = yield* worker.replace({ target, data: Buffer.from("third"), mode: 0o600, durable: false, unlessVersion: version })
      assert.strictEqual(again._tag, "Written")
      assert.strictEqual(Fs.readFileSync(target, "utf8"), "third")
    }).pipe(Effect.scoped))

  it.live("a replace that fails leaves the target and no temp file, and says why", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const worker = yield* running(yield* make(1))
      const missingDir = NodePath.join(dir, "gone", "record")
      assert.strictEqual(yield* reasonOf(worker.replace({ target: missingDir, data: Buffer.from("x"), mode: 0o600, durable: true })), "NotFound")
      // Renaming a file over a directory fails after the temp file was written: it is removed.
      const target = NodePath.join(dir, "a-directory")
      Fs.mkdirSync(target)
      const reason = yield* reasonOf(worker.replace({ target, data: Buffer.from("x"), mode: 0o600, durable: true }))
      assert.notStrictEqual(reason, "NotFound")
      assert.isTrue(Fs.statSync(target).isDirectory())
      assert.deepStrictEqual(Fs.readdirSync(dir), ["a-directory"], "no temp file left")
    }).pipe(Effect.scoped))

  it.live("many requests at once each get their own answer", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const worker = yield* running(yield* make(1))
      const ids = Array.from({ length: 200 }, (_, i) => i)
      yield* Effect.forEach(ids, (i) =>
        worker.replace({ target: NodePath.join(dir, `f${i}`), data: Buffer.from(`content ${i}`), mode: 0o600, durable: i % 10 === 0 }), {
        concurrency: 50,
        discard: true
      })
      const reads = yield* Effect.forEach(ids, (i) => worker.read(NodePath.join(dir, `f${i}`)), { concurrency: 50 })
      reads.forEach((r, i) => assert.strictEqual(Buffer.from(Option.getOrThrow(r)).toString(), `content ${i}`))
    }).pipe(Effect.scoped))

  it.live("once its scope is closed its I/O runs on the event loop again, and a caller still holding the worker fails rather than waits", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = NodePath.join(dir, "f")
      Fs.writeFileSync(file, "x")
      const scope = yield* Scope.make()
      const files = yield* make(1).pipe(Scope.provide(scope))
      const worker = yield* running(files)
      yield* Scope.close(scope, Exit.void)
      assert.isUndefined(yield* files.running)
      assert.isUndefined(yield* files.ready)
      // The store goes on, its I/O on the event loop again.
      assert.strictEqual(Buffer.from(Option.getOrThrow(yield* files.read(file))).toString(), "x")
      // Right after the close (the thread may still be exiting) and once it is gone: a failure each time.
      for (let i = 0; i < 2; i++) {
        const read = yield* Effect.exit(worker.read(file).pipe(Effect.timeout("5 seconds")))
        assert.isTrue(Exit.isFailure(read))
        assert.match(String(Exit.isFailure(read) ? read.cause : ""), /file worker stopped/)
        yield* Effect.sleep("100 millis")
      }
    }).pipe(Effect.scoped))
})
