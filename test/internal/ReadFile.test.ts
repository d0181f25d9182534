import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { Effect } from "effect"
import * as ReadFile from "../../src/internal/ReadFile.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "mts-readfile-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const reasonOf = <A>(e: Effect.Effect<A, { readonly reason: { readonly _tag: string } }>) =>
  Effect.map(Effect.flip(e), (error) => error.reason._tag)

describe("ReadFile", () => {
  it.live("reads files of every size whole: empty, small, exactly the first read, and many times larger", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const sizes = [0, 1, 2300, ReadFile.firstReadBytes - 1, ReadFile.firstReadBytes, ReadFile.firstReadBytes + 1, 5_000_000]
      for (const size of sizes) {
        const file = NodePath.join(dir, `f-${size}`)
        const content = Crypto.randomBytes(size)
        Fs.writeFileSync(file, content)
        const read = yield* ReadFile.readFile(file)
        assert.strictEqual(read.length, size, `size ${size}`)
        assert.isTrue(Buffer.from(read).equals(content), `content of size ${size}`)
      }
    }).pipe(Effect.scoped))

  it.live("fails with the FileSystem's reasons: NotFound for a missing file, BadResource for a directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      assert.strictEqual(yield* reasonOf(ReadFile.readFile(NodePath.join(dir, "missing"))), "NotFound")
      Fs.mkdirSync(NodePath.join(dir, "sub"))
      assert.strictEqual(yield* reasonOf(ReadFile.readFile(NodePath.join(dir, "sub"))), "BadResource")
    }).pipe(Effect.scoped))

  it.live("leaves no descriptor open, however many files it reads", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = NodePath.join(dir, "record")
      Fs.writeFileSync(file, "x".repeat(100))
      const fdDir = Fs.existsSync("/proc/self/fd") ? "/proc/self/fd" : "/dev/fd"
      const fds = () => Fs.readdirSync(fdDir).length
      const before = fds()
      yield* Effect.forEach(Array.from({ length: 2000 }), () => ReadFile.readFile(file), { concurrency: 16, discard: true })
      // The last closes are not waited for by the reads: let them land.
      yield* Effect.sleep("50 millis")
      assert.isAtMost(fds(), before + 2)
    }).pipe(Effect.scoped))
})
