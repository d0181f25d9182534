import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Context, Data, Deferred, Effect, Fiber, Layer, Option } from "effect"
import { repoRoot, useWorkerBundle } from "./support/WorkerBundle.js"
import * as RefreshLock from "../src/RefreshLock.js"
import { UserContext } from "../src/UserContext.js"
import { tempDir } from "./support/FileStoreFixtures.js"
import * as Spans from "./support/Spans.js"

const workerBundle = useWorkerBundle("test/support/lock-worker.ts")

/** The file lock over `storageDirectory`, with the rest of a user context stubbed (as lock-worker.ts builds it). */
const fileLockLayer = (storageDirectory: string) =>
  RefreshLock.layerFile.pipe(
    Layer.provide(Layer.mergeAll(
      Layer.succeed(
        UserContext,
        UserContext.of({
          username: "tester",
          uid: typeof process.getuid === "function" ? process.getuid() : -1,
          home: storageDirectory,
          hostname: "testhost",
          principal: Option.none(),
          namespace: "tester@testhost:0",
          sessionDirectory: storageDirectory,
          storageDirectory
        })
      ),
      NodeFileSystem.layer,
      NodePath.layer
    ))
  )

/** Builds a lock service that lives as long as the test's scope. */
const lockOf = (layer: Layer.Layer<RefreshLock.RefreshLock>) =>
  Effect.map(Layer.build(layer), Context.get(RefreshLock.RefreshLock))

const lockFile = (dir: string, key: string) => RefreshLock.lockFileOf(NodePathModule, dir, key)
const modeOf = (p: string) => Fs.statSync(p).mode & 0o777

const reasonOf = <A>(self: Effect.Effect<A, RefreshLock.RefreshLockError>) =>
  Effect.map(Effect.flip(self), (e) => e.reason)

class WorkerError extends Data.TaggedError("WorkerError")<{ readonly message: string }> {}

interface Worker {
  readonly child: ChildProcessWithoutNullStreams
  readonly output: () => string
}

/** Starts lock-worker.ts in its own Node process (the pid is the lock holder); killed when the scope closes. */
const spawnWorker = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Worker => {
      const child = spawn(
        process.execPath,
        ["--disable-warning=ExperimentalWarning", workerBundle, ...args],
        { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] }
      )
      child.stdin.on("error", () => {}) // EPIPE from a worker that already exited
      let output = ""
      child.stdout.on("data", (d) => (output += d))
      child.stderr.on("data", (d) => (output += d))
      return { child, output: () => output }
    }),
    (w) => Effect.sync(() => w.child.exitCode === null && w.child.signalCode === null && w.child.kill("SIGKILL"))
  )

const exited = (w: Worker) => w.child.exitCode !== null || w.child.signalCode !== null

/** Waits (bounded) until the worker printed `line`; fails if it exits first. */
const waitForLine = (w: Worker, line: string) =>
  Effect.callback<void, WorkerError>((resume) => {
    const check = () => {
      if (w.output().split("\n").includes(line)) resume(Effect.void)
      else if (exited(w)) {
        resume(Effect.fail(new WorkerError({ message: `worker exited before "${line}": ${w.output()}` })))
      }
    }
    w.child.stdout.on("data", check)
    w.child.on("exit", check)
    check()
    return Effect.sync(() => {
      w.child.stdout.off("data", check)
      w.child.off("exit", check)
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: "30 seconds",
      orElse: () => Effect.fail(new WorkerError({ message: `no "${line}" from worker: ${w.output()}` }))
    })
  )

/** Waits (bounded) for the worker to exit; its exit code, or the signal that ended it. */
const waitForExit = (w: Worker) =>
  Effect.callback<number | string>((resume) => {
    const done = () => resume(Effect.succeed(w.child.exitCode ?? w.child.signalCode ?? -1))
    if (exited(w)) done()
    else w.child.once("exit", done)
    return Effect.sync(() => w.child.off("exit", done))
  }).pipe(
    Effect.timeoutOrElse({
      duration: "30 seconds",
      orElse: () => Effect.fail(new WorkerError({ message: `worker did not exit: ${w.output()}` }))
    })
  )

/** A worker holding `key` under `dir` (it has printed "held"). */
const holder = (dir: string, key: string) =>
  Effect.tap(spawnWorker(["hold", dir, key]), (w) => waitForLine(w, "held"))

/**
 * A fiber of this process holding `key` until `release` runs; fails at once
 * (rather than waiting for ever) if the holder could not take the lock.
 */
const holdLock = (lock: RefreshLock.Shape, key: string) =>
  Effect.gen(function*() {
    const entered = yield* Deferred.make<void>()
    const released = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkChild(
      lock.withLock(key, Effect.andThen(Deferred.succeed(entered, undefined), Deferred.await(released)))
    )
    yield* Effect.raceFirst(
      Deferred.await(entered),
      Effect.andThen(Fiber.join(fiber), Effect.fail(new WorkerError({ message: "the holder ended before holding" })))
    )
    return { fiber, release: Effect.andThen(Deferred.succeed(released, undefined), Fiber.join(fiber)) }
  })

/** Behaviour every backend shares: one process, many fibers. */
const inProcessSuite = (name: string, layerOf: (dir: string) => Layer.Layer<RefreshLock.RefreshLock>) =>
  describe(`RefreshLock (${name}): fibers of one process`, () => {
    const fresh = Effect.flatMap(tempDir("mts-lock-"), (dir) => lockOf(layerOf(dir)))

    it.live("serializes 50 fibers on one key: no overlap, no lost update", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        let inside = false
        let overlaps = 0
        let count = 0
        const critical = Effect.gen(function*() {
          if (inside) overlaps++
          inside = true
          const read = count
          yield* Effect.yieldNow
          yield* Effect.sleep("1 millis")
          count = read + 1
          inside = false
        })
        yield* Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i),
          () => lock.withLock("grant-a", critical),
          { concurrency: "unbounded", discard: true }
        )
        assert.strictEqual(overlaps, 0)
        assert.strictEqual(count, 50)
      }))

    it.live("different keys do not wait for each other", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        yield* holdLock(lock, "grant-a")
        assert.strictEqual(yield* lock.withLock("grant-b", Effect.succeed("ran"), { waitTimeout: "2 seconds" }), "ran")
      }))

    it.live("a waiter times out with Timeout (retryable) and can take the lock once it is free", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        const holding = yield* holdLock(lock, "grant-a")
        const error = yield* Effect.flip(lock.withLock("grant-a", Effect.void, { waitTimeout: "100 millis" }))
        assert.strictEqual(error.reason._tag, "Timeout")
        assert.isTrue(error.retryable)
        assert.include(error.message, "grant-a")
        yield* holding.release
        assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed(1), { waitTimeout: "2 seconds" }), 1)
      }))

    it.live("a zero wait timeout takes a free lock and fails at once on a held one", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("free"), { waitTimeout: 0 }), "free")
        yield* holdLock(lock, "grant-a")
        assert.strictEqual((yield* reasonOf(lock.withLock("grant-a", Effect.void, { waitTimeout: 0 })))._tag, "Timeout")
      }))

    it.live("interrupting the holder releases the lock", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        const holding = yield* holdLock(lock, "grant-a")
        assert.isTrue((yield* lock.inspect("grant-a")).held)
        yield* Fiber.interrupt(holding.fiber)
        assert.isFalse((yield* lock.inspect("grant-a")).held)
        assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("next"), { waitTimeout: "2 seconds" }), "next")
      }))

    it.live("interrupting a waiter leaves the lock usable", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        const holding = yield* holdLock(lock, "grant-a")
        const waiting = yield* Effect.forkChild(lock.withLock("grant-a", Effect.void))
        yield* Effect.sleep("20 millis")
        yield* Fiber.interrupt(waiting)
        yield* holding.release
        assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed(2), { waitTimeout: "2 seconds" }), 2)
      }))

    it.live("a failing effect keeps its error and releases the lock", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        const error = yield* Effect.flip(lock.withLock("grant-a", Effect.fail("refresh failed" as const)))
        assert.strictEqual(error, "refresh failed")
        assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed(3), { waitTimeout: "2 seconds" }), 3)
      }))

    it.live("the RefreshLock.withLock span reports the key, the wait and the outcome", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        const { spans, tracer } = Spans.recording()
        const holding = yield* holdLock(lock, "grant-a")
        yield* Effect.flip(lock.withLock("grant-a", Effect.void, { waitTimeout: "50 millis" })).pipe(Effect.withTracer(tracer))
        yield* holding.release
        yield* lock.withLock("grant-a", Effect.void).pipe(Effect.withTracer(tracer))
        const attributes = spans.filter((s) => s.name === "RefreshLock.withLock").map((s) => Object.fromEntries(s.attributes))
        assert.strictEqual(attributes.length, 2)
        assert.strictEqual(attributes[0]?.["lock.key"], "grant-a")
        assert.strictEqual(attributes[0]?.["lock.outcome"], "timeout")
        assert.isAtLeast(Number(attributes[0]?.["lock.wait_ms"]), 50)
        assert.strictEqual(attributes[1]?.["lock.outcome"], "acquired")
        assert.isNumber(attributes[1]?.["lock.wait_ms"])
      }))

    it.live("inspect names this process as the holder", () =>
      Effect.gen(function*() {
        const lock = yield* fresh
        assert.isTrue(Option.isNone((yield* lock.inspect("grant-a")).lastHolder))
        yield* lock.withLock("grant-a", Effect.void)
        const info = yield* lock.inspect("grant-a")
        assert.isFalse(info.held)
        assert.isTrue(Option.isSome(info.lastHolder))
        if (Option.isSome(info.lastHolder)) {
          assert.strictEqual(info.lastHolder.value.pid, process.pid)
          assert.isTrue(Option.isSome(info.lastHolder.value.releasedAt))
        }
      }))
  })

inProcessSuite("memory", () => RefreshLock.layerMemory)
inProcessSuite("file", fileLockLayer)

describe("RefreshLock (file): processes", () => {
  it.live("serializes critical sections of 6 processes on one key", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const log = NodePathModule.join(dir, "critical.log")
      Fs.writeFileSync(log, "")
      const rounds = 8
      const workers = yield* Effect.forEach(
        Array.from({ length: 6 }, (_, i) => i),
        () => spawnWorker(["contend", dir, "grant-a", String(rounds), log])
      )
      const codes = yield* Effect.forEach(workers, waitForExit, { concurrency: "unbounded" })
      assert.deepStrictEqual(codes, workers.map(() => 0), workers.map((w) => w.output()).join("\n"))
      const lines = Fs.readFileSync(log, "utf8").trim().split("\n")
      assert.strictEqual(lines.length, 6 * rounds * 2)
      let inside: string | undefined
      for (const line of lines) {
        const [event, pid] = line.split(" ")
        if (event === "enter") {
          assert.isUndefined(inside, `pid ${pid} entered while ${inside} was inside`)
          inside = pid
        } else {
          assert.strictEqual(inside, pid, `pid ${pid} left without being inside`)
          inside = undefined
        }
      }
      assert.strictEqual(new Set(lines.map((l) => l.split(" ")[1])).size, 6)
    }))

  it.live("a holder killed with SIGKILL leaves no stale lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const worker = yield* holder(dir, "grant-a")
      const info = yield* lock.inspect("grant-a")
      assert.isTrue(info.held)
      assert.strictEqual((yield* reasonOf(lock.withLock("grant-a", Effect.void, { waitTimeout: "100 millis" })))._tag, "Timeout")
      worker.child.kill("SIGKILL")
      assert.strictEqual(yield* waitForExit(worker), "SIGKILL")
      // The dead holder's lock file is still there: it must not block.
      assert.isTrue(Fs.existsSync(lockFile(dir, "grant-a")))
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("taken"), { waitTimeout: "2 seconds" }), "taken")
      assert.isFalse((yield* lock.inspect("grant-a")).held)
    }))

  it.live("a waiter times out behind another process's lock and takes it after the release", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const worker = yield* holder(dir, "grant-a")
      const reason = yield* reasonOf(lock.withLock("grant-a", Effect.void, { waitTimeout: "200 millis" }))
      assert.strictEqual(reason._tag, "Timeout")
      if (reason._tag === "Timeout") assert.isAtLeast(reason.waitedMs, 200)
      worker.child.stdin.write("release\n")
      yield* waitForLine(worker, "released")
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("taken"), { waitTimeout: "10 seconds" }), "taken")
      assert.strictEqual(yield* waitForExit(worker), 0)
    }))

  it.live("a waiter gets the lock as soon as the other process releases it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const worker = yield* holder(dir, "grant-a")
      const waiting = yield* Effect.forkChild(lock.withLock("grant-a", Effect.succeed("taken"), { waitTimeout: "20 seconds" }))
      yield* Effect.sleep("50 millis")
      worker.child.stdin.write("release\n")
      assert.strictEqual(yield* Fiber.join(waiting), "taken")
    }))

  it.live("interrupting a waiter that polls another process's lock leaves nothing behind", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const worker = yield* holder(dir, "grant-a")
      const waiting = yield* Effect.forkChild(lock.withLock("grant-a", Effect.void))
      yield* Effect.sleep("50 millis")
      yield* Fiber.interrupt(waiting)
      worker.child.stdin.write("release\n")
      assert.strictEqual(yield* waitForExit(worker), 0)
      assert.isFalse((yield* lock.inspect("grant-a")).held)
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("taken"), { waitTimeout: "2 seconds" }), "taken")
    }))

  it.live("the owner row names the last process that released the lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const worker = yield* holder(dir, "grant-a")
      worker.child.stdin.write("release\n")
      assert.strictEqual(yield* waitForExit(worker), 0)
      const info = yield* lock.inspect("grant-a")
      assert.isFalse(info.held)
      assert.strictEqual(Option.getOrUndefined(info.lastHolder)?.pid, worker.child.pid)
      assert.isTrue(Option.isSome(Option.getOrUndefined(info.lastHolder)?.releasedAt ?? Option.none()))
    }))

  it.live("two lock services in one process still exclude each other (SQLite contends in-process)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const first = yield* lockOf(fileLockLayer(dir))
      const second = yield* lockOf(fileLockLayer(dir))
      let inside = false
      let overlaps = 0
      const critical = Effect.gen(function*() {
        if (inside) overlaps++
        inside = true
        yield* Effect.sleep("1 millis")
        inside = false
      })
      yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => (i % 2 === 0 ? first : second).withLock("grant-a", critical, { waitTimeout: "20 seconds" }),
        { concurrency: "unbounded", discard: true }
      )
      assert.strictEqual(overlaps, 0)
    }))

  it.live("inspect names the process that holds the lock now, and keeps its row when it dies holding it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      yield* lock.withLock("grant-a", Effect.void)
      const worker = yield* holder(dir, "grant-a")
      const info = yield* lock.inspect("grant-a")
      assert.isTrue(info.held)
      assert.deepStrictEqual(info.location, Option.some(lockFile(dir, "grant-a")))
      assert.strictEqual(Option.getOrUndefined(info.lastHolder)?.pid, worker.child.pid)
      const current = Option.getOrUndefined(info.lastHolder)
      assert.isTrue(current !== undefined && Option.isNone(current.releasedAt))
      worker.child.kill("SIGKILL")
      assert.strictEqual(yield* waitForExit(worker), "SIGKILL")
      const after = yield* lock.inspect("grant-a")
      assert.isFalse(after.held)
      // Died holding it: the row stays without a release, and the lock is free all the same.
      assert.strictEqual(Option.getOrUndefined(after.lastHolder)?.pid, worker.child.pid)
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("taken"), { waitTimeout: "2 seconds" }), "taken")
    }))

  it.live("whileBusy ends a wait on another process's lock with its answer, without the lock or the effect", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const worker = yield* holder(dir, "grant-a")
      let checks = 0
      let ran = false
      const answer = yield* lock.withLock("grant-a", Effect.sync(() => (ran = true, "locked")), {
        waitTimeout: "10 seconds",
        // Done elsewhere on the third look.
        whileBusy: Effect.sync(() => ++checks >= 3 ? Option.some("done elsewhere") : Option.none())
      })
      assert.strictEqual(answer, "done elsewhere")
      assert.isFalse(ran)
      assert.strictEqual(checks, 3)
      // The other process still holds its lock; this one holds nothing.
      assert.isTrue((yield* lock.inspect("grant-a")).held)
      worker.child.stdin.write("release\n")
      assert.strictEqual(yield* waitForExit(worker), 0)
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("taken"), { waitTimeout: "2 seconds" }), "taken")
    }))

  it.live("whileBusy is not consulted for a free lock, nor while queued behind a fiber of this process", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      let checks = 0
      const whileBusy = Effect.sync(() => (checks++, Option.some("never")))
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("free"), { whileBusy }), "free")
      const holding = yield* holdLock(lock, "grant-a")
      const waiting = yield* Effect.forkChild(lock.withLock("grant-a", Effect.succeed("after"), { whileBusy }))
      yield* Effect.sleep("50 millis")
      yield* holding.release
      assert.strictEqual(yield* Fiber.join(waiting), "after")
      assert.strictEqual(checks, 0)
    }))

  it.live("a lock file removed between holdings is opened again, not locked in its old inode", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      // The first holding leaves an open connection to the file for next time.
      yield* lock.withLock("grant-a", Effect.void)
      Fs.rmSync(lockFile(dir, "grant-a"))
      yield* holder(dir, "grant-a")
      const reason = yield* reasonOf(lock.withLock("grant-a", Effect.void, { waitTimeout: "200 millis" }))
      assert.strictEqual(reason._tag, "Timeout")
    }))

  it.live("a damaged owner book is moved aside and never stops a lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const locks = NodePathModule.join(dir, RefreshLock.lockDirectoryName)
      Fs.mkdirSync(locks, { mode: 0o700 })
      Fs.writeFileSync(NodePathModule.join(locks, "owners.db"), "this is not a database, and it is long enough to be read", { mode: 0o600 })
      const lock = yield* lockOf(fileLockLayer(dir))
      assert.strictEqual(yield* lock.withLock("grant-a", Effect.succeed("taken")), "taken")
      const aside = Fs.readdirSync(locks).filter((n) => n.startsWith("owners.db.corrupt-"))
      assert.strictEqual(aside.length, 1)
      const info = yield* lock.inspect("grant-a")
      assert.strictEqual(Option.getOrUndefined(info.lastHolder)?.pid, process.pid)
    }))

  it.live("the lock file is never written, and no journal is made beside it, even while it is held", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const journal = `${lockFile(dir, "grant-a")}-journal`
      yield* lock.withLock("grant-a", Effect.sync(() => assert.isFalse(Fs.existsSync(journal), "no journal while held")))
      yield* lock.withLock("grant-a", Effect.void)
      assert.strictEqual(Fs.statSync(lockFile(dir, "grant-a")).size, 0)
      assert.isFalse(Fs.existsSync(journal))
    }))
})

describe("RefreshLock (file): files", () => {
  it.live("the lock directory is 0700 and lock files are 0600", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      const lock = yield* lockOf(fileLockLayer(dir))
      const previous = process.umask(0o022)
      yield* Effect.ensuring(
        lock.withLock("grant-a", Effect.sync(() => assert.strictEqual(modeOf(lockFile(dir, "grant-a")), 0o600))),
        Effect.sync(() => process.umask(previous))
      )
      const locks = NodePathModule.join(dir, RefreshLock.lockDirectoryName)
      assert.strictEqual(modeOf(locks), 0o700)
      // Every file there, the owner book and its WAL files included.
      const files = Fs.readdirSync(locks)
      assert.includeMembers(files, ["owners.db", NodePathModule.basename(lockFile(dir, "grant-a"))])
      for (const f of files) assert.strictEqual(modeOf(NodePathModule.join(locks, f)), 0o600, f)
    }))

  it.live("a lock directory that cannot be created fails with Unavailable, not retryable", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      Fs.writeFileSync(NodePathModule.join(dir, RefreshLock.lockDirectoryName), "not a directory")
      const lock = yield* lockOf(fileLockLayer(dir))
      const error = yield* Effect.flip(lock.withLock("grant-a", Effect.void, { waitTimeout: "1 second" }))
      assert.strictEqual(error.reason._tag, "Unavailable")
      assert.isFalse(error.retryable)
    }))

  it.live("a lock file that is not a database fails with Unavailable and is left alone", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-lock-")
      Fs.mkdirSync(NodePathModule.join(dir, RefreshLock.lockDirectoryName), { mode: 0o700 })
      Fs.writeFileSync(lockFile(dir, "grant-a"), "garbage that is not a SQLite database, long enough to have a header")
      const lock = yield* lockOf(fileLockLayer(dir))
      const reason = yield* reasonOf(lock.withLock("grant-a", Effect.void, { waitTimeout: "1 second" }))
      assert.strictEqual(reason._tag, "Unavailable")
      assert.isTrue(Fs.existsSync(lockFile(dir, "grant-a")))
    }))
})

describe("isSqliteExperimentalWarning", () => {
  it.live("recognizes the warning Node emits when node:sqlite loads, and nothing else", () =>
    Effect.gen(function*() {
      const w = yield* spawnWorkerless([
        "-e",
        "process.on('warning', (w) => console.log(JSON.stringify({ name: w.name, message: w.message }))); require('node:sqlite')"
      ])
      const real = JSON.parse(w.trim().split("\n")[0] ?? "{}") as { name: string; message: string }
      const asError = Object.assign(new Error(real.message), { name: real.name })
      assert.isTrue(RefreshLock.isSqliteExperimentalWarning(asError))
      assert.isTrue(RefreshLock.isSqliteExperimentalWarning(real.message, "ExperimentalWarning"))
      assert.isTrue(RefreshLock.isSqliteExperimentalWarning(real.message, { type: "ExperimentalWarning" }))
      assert.isFalse(RefreshLock.isSqliteExperimentalWarning("Type Stripping is an experimental feature", "ExperimentalWarning"))
      assert.isFalse(RefreshLock.isSqliteExperimentalWarning(real.message, "DeprecationWarning"))
    }))
})

/** Runs `node <args>` and returns its stdout. */
const spawnWorkerless = (args: ReadonlyArray<string>) =>
  Effect.callback<string, WorkerError>((resume) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout.on("data", (d) => (out += d))
    child.on("error", (e) => resume(Effect.fail(new WorkerError({ message: e.message }))))
    child.on("exit", () => resume(Effect.succeed(out)))
    return Effect.sync(() => child.kill("SIGKILL"))
  })
