/**
 * A writer process for the crash and contention tests: it loops over one kind
 * of write until it is killed (or its deadline passes), printing one line
 * before and one after every write, so that the parent knows, after a
 * SIGKILL at a random moment, which versions a record may legitimately hold.
 *
 *   put <home> <sessions> <envKeyBase64>
 *     rewrites sessions s0..s<n-1> in turn with generation + 1 (a simulated
 *     rotation: new access and refresh token, generation + 1).
 *     Lines: "W <id> <gen>" before the put, "D <id> <gen>" after it, and once
 *     "busy" when the store's worker thread runs (its reads and writes then go
 *     through it: src/internal/FileWorker.ts).
 *   rotate <home>
 *     rotates the file-source data key (KeyRotation.rotateKey) forever. Lines: "R <n>".
 *   migrate <home> <redisUrl> <envKeyBase64>
 *     migrates every session from the file store to Redis (Migration.migrate), then back, forever.
 *     Lines: "M <n> <from>" after each complete pass.
 *   refresh <provider> <sessionId>
 *     forced refreshes of one grant against the real server, with the configuration
 *     of MAGICTUNNEL_CONFIG_PATH. Lines: "W <id> <gen>" and "D <id> <outcome> <gen>".
 *
 * Every mode prints "ready" first. Bundled with esbuild by the tests that use it.
 */
import { Effect, Layer, Redacted } from "effect"
import * as Migration from "../../../src/Migration.js"
import * as EncryptionKey from "../../../src/EncryptionKey.js"
import * as RefreshLock from "../../../src/RefreshLock.js"
import * as Sessions from "../../../src/Sessions.js"
import * as KeyRotation from "../../../src/TokenStore/KeyRotation.js"
import * as TokenStore from "../../../src/TokenStore.js"
import { environment } from "../FileStoreFixtures.js"
import { UserContext } from "../../../src/UserContext.js"
import { envStore, redisStore } from "./Stores.js"
import { processConfig, stack } from "../SessionsStack.js"

const say = (line: string) => Effect.sync(() => void process.stdout.write(`${line}\n`))

/** How many worker threads this process runs now. */
const workerThreads = (): number => {
  const report = process.report.getReport() as { readonly workers?: ReadonlyArray<unknown> }
  return report.workers?.length ?? 0
}

const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) =>
  RefreshLock.isSqliteExperimentalWarning(warning, rest[0])
    ? undefined
    : (emitWarning as (...args: Array<unknown>) => void)(warning, ...rest)) as typeof process.emitWarning

const [mode, ...args] = process.argv.slice(2)

/** The record a put writes: its secrets name its session and generation, so the parent can check them. */
const recordFor = (base: TokenStore.SessionRecord, generation: number) =>
  new TokenStore.SessionRecord({
    ...base,
    accessToken: Redacted.make(`at-${base.id}-${generation}`),
    refreshToken: Redacted.make(`rt-${base.id}-${generation}`),
    generation
  })

const putLoop = (home: string, count: number, keyBase64: string) =>
  Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    yield* say("ready")
    let busy = false
    for (let i = 0;; i++) {
      const id = `s${i % count}`
      const current = yield* store.get(id)
      const next = recordFor(current, current.generation + 1)
      yield* say(`W ${id} ${next.generation}`)
      yield* store.put(next)
      yield* say(`D ${id} ${next.generation}`)
      // The diagnostic report lists the process's worker threads (the store's is its only one).
      if (!busy && i % 4 === 3 && workerThreads() > 0) {
        busy = true
        yield* say("busy")
      }
    }
  }).pipe(
    Effect.provide(envStore(home, new Uint8Array(Buffer.from(keyBase64, "base64"))))
  )

const rotateLoop = (home: string) => {
  const env = environment({ home, source: "file" })
  return Effect.gen(function*() {
    yield* say("ready")
    for (let n = 1;; n++) {
      yield* KeyRotation.rotateKey()
      yield* say(`R ${n}`)
    }
  }).pipe(Effect.provide(EncryptionKey.layer.pipe(Layer.provideMerge(env))))
}

const migrateLoop = (home: string, redisUrl: string, keyBase64: string) =>
  Effect.gen(function*() {
    const key = new Uint8Array(Buffer.from(keyBase64, "base64"))
    const { file, namespace } = yield* Effect.provide(
      Effect.all({ file: Effect.service(TokenStore.TokenStore), namespace: Effect.map(Effect.service(UserContext), (u) => u.namespace) }),
      envStore(home, key)
    )
    const redis = yield* redisStore(redisUrl, key, namespace)
    yield* say("ready")
    for (let n = 1;; n++) {
      const [from, to, name] = n % 2 === 1 ? [file, redis, "file"] : [redis, file, "redis"]
      yield* Migration.migrate(from, to)
      yield* say(`M ${n} ${name}`)
    }
  }).pipe(Effect.scoped)

const refreshLoop = (id: string) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    const store = yield* TokenStore.TokenStore
    yield* say("ready")
    for (;;) {
      const before = yield* store.get(id)
      yield* say(`W ${id} ${before.generation + 1}`)
      const outcome = yield* sessions.refresh(id, { force: true })
      const generation = "generation" in outcome ? outcome.generation : -1
      yield* say(`D ${id} ${outcome._tag} ${generation}`)
    }
  }).pipe(Effect.provide(stack(processConfig)))

const program: Effect.Effect<unknown, unknown> = mode === "put"
  ? putLoop(args[0]!, Number(args[1]), args[2]!)
  : mode === "rotate"
  ? rotateLoop(args[0]!)
  : mode === "migrate"
  ? migrateLoop(args[0]!, args[1]!, args[2]!)
  : mode === "refresh"
  ? refreshLoop(args[1]!)
  : Effect.die(new Error(`unknown mode ${String(mode)}`))

Effect.runPromise(program).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`crash-worker failed: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(1)
  }
)
