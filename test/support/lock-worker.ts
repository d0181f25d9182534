/**
 * A child process for the multi-process tests of RefreshLock: it builds the
 * file lock over a storage directory, as a real process would, and either
 * contends for a key or holds it until told to release.
 *
 *   contend <storageDir> <key> <rounds> <logFile>
 *     `rounds` critical sections, each appending "enter <pid>" and
 *     "exit <pid>" lines to `logFile` with a pause between; prints "done".
 *   hold <storageDir> <key>
 *     takes the lock, prints "held", and keeps it until a "release" line
 *     (or the end of stdin) arrives; then prints "released".
 *
 * test/RefreshLock.test.ts bundles it once with esbuild and runs the bundle
 * with `node` directly, so that the pid the test signals is the process that
 * holds the lock (and starts in a tenth of the time tsx needs). By hand:
 * `node --import tsx test/support/lock-worker.ts hold /tmp/x grant-a`.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Fs from "node:fs"
import { Effect, Layer, Option } from "effect"
import * as RefreshLock from "../../src/RefreshLock.js"
import { UserContext } from "../../src/UserContext.js"

/** The file lock over `storageDirectory`, with the rest of a user context stubbed. */
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

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const releaseRequested = Effect.callback<void>((resume) => {
  let buffered = ""
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString()
    if (buffered.includes("release")) resume(Effect.void)
  }
  const onEnd = () => resume(Effect.void)
  process.stdin.on("data", onData)
  process.stdin.on("end", onEnd)
  return Effect.sync(() => {
    process.stdin.off("data", onData)
    process.stdin.off("end", onEnd)
    process.stdin.pause()
  })
})

const contend = (key: string, rounds: number, logFile: string) =>
  Effect.gen(function*() {
    const lock = yield* RefreshLock.RefreshLock
    for (let i = 0; i < rounds; i++) {
      yield* lock.withLock(
        key,
        Effect.sync(() => Fs.appendFileSync(logFile, `enter ${process.pid}\n`)).pipe(
          Effect.andThen(Effect.sleep("2 millis")),
          Effect.andThen(Effect.sync(() => Fs.appendFileSync(logFile, `exit ${process.pid}\n`)))
        ),
        { waitTimeout: "30 seconds" }
      )
    }
    yield* say("done")
  })

const hold = (key: string) =>
  Effect.gen(function*() {
    const lock = yield* RefreshLock.RefreshLock
    yield* lock.withLock(key, say("held").pipe(Effect.andThen(releaseRequested)), { waitTimeout: "30 seconds" })
    yield* say("released")
  })

const [mode, storageDirectory, key, ...rest] = process.argv.slice(2)
if (storageDirectory === undefined || key === undefined) {
  process.stderr.write("usage: lock-worker (contend <dir> <key> <rounds> <logFile> | hold <dir> <key>)\n")
  process.exit(2)
}
const program = mode === "contend"
  ? contend(key, Number(rest[0] ?? "1"), rest[1] ?? "/dev/null")
  : hold(key)

Effect.runPromise(program.pipe(Effect.provide(fileLockLayer(storageDirectory)))).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`lock-worker failed: ${String(e)}\n`)
    process.exit(1)
  }
)
