/**
 * Fleet mode end to end: instances in separate processes
 * (test/support/fleet-worker.ts) share sessions through a real `redis-server`
 * started here, against the real authorization server. One login is seen by
 * every instance; concurrent demand for an expired token on three instances
 * causes exactly one refresh; an instance killed while holding a grant's
 * refresh lock delays the others by at most one lease; a token refreshed or
 * logged out on one instance stops being served by another that held it in
 * memory, without waiting for it to expire; Redis restarted with
 * AOF loses nothing; while Redis is down, instances keep serving the tokens
 * they hold, report unhealthy, and recover when it returns.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import * as NodePathModule from "node:path"
import { Data, DateTime, Effect, Redacted, Schedule } from "effect"
import { repoRoot, useWorkerBundle } from "../support/WorkerBundle.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import { fileConfig, stack, writeConfigFile } from "../support/FleetStack.js"
import * as OidcServer from "../support/OidcServer.js"
import * as RedisServer from "../support/RedisServer.js"
import { newKey } from "../support/SessionsStack.js"
import { loginApproved } from "../support/Login.js"

const workerBundle = useWorkerBundle("test/support/fleet-worker.ts")

class WorkerError extends Data.TaggedError("WorkerError")<{ readonly message: string }> {}

interface Worker {
  readonly child: ChildProcessWithoutNullStreams
  /** Sends a command and waits for its one-line JSON answer. */
  readonly ask: (command: string) => Effect.Effect<Record<string, unknown>, WorkerError>
}

/** Starts an instance; it is killed when the scope closes. */
const spawnWorker = (env: Readonly<Record<string, string>>) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [workerBundle], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] })
      ),
      (c) => Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"))
    )
    child.stdin.on("error", () => {}) // EPIPE from an instance that was killed: expected
    let output = ""
    let consumed = 0
    child.stdout.on("data", (d) => (output += d))
    child.stderr.on("data", (d) => (output += d))
    const nextLine = (what: string) =>
      Effect.callback<string, WorkerError>((resume) => {
        // The callback's finalizer runs on interruption only: a check that answered unregisters itself.
        const stop = () => {
          child.stdout.off("data", check)
          child.off("exit", check)
        }
        const check = () => {
          const lines = output.split("\n")
          const complete = lines.slice(0, -1)
          const index = complete.findIndex((l, i) => i >= consumed && (l === "ready" || l.startsWith("{")))
          if (index >= 0) {
            stop()
            consumed = index + 1
            resume(Effect.succeed(complete[index]!))
          } else if (child.exitCode !== null || child.signalCode !== null) {
            stop()
            resume(Effect.fail(new WorkerError({ message: `instance exited before ${what}: ${output}` })))
          }
        }
        child.stdout.on("data", check)
        child.on("exit", check)
        check()
        return Effect.sync(stop)
      }).pipe(
        Effect.timeoutOrElse({
          duration: "40 seconds",
          orElse: () => Effect.fail(new WorkerError({ message: `no ${what} from instance: ${output}` }))
        })
      )
    yield* nextLine("ready")
    const ask = (command: string) =>
      Effect.gen(function*() {
        child.stdin.write(`${command}\n`)
        const line = yield* nextLine(`an answer to ${command}`)
        return JSON.parse(line) as Record<string, unknown>
      })
    return { child, ask } satisfies Worker
  })

/** A Redis, an authorization server, a logged-in session in Redis, and what an instance needs to share it. */
const fleet = (options: { readonly lockLeaseSeconds?: number } = {}) =>
  Effect.gen(function*() {
    const redis = yield* RedisServer.acquire({ appendonly: true })
    const server = yield* OidcServer.acquire({ accessTokenTtl: 300 })
    const dir = yield* tempDir("mts-fleet-")
    const key = newKey()
    const configPath = writeConfigFile(dir, {
      sessionDirectory: NodePathModule.join(dir, "sessions"),
      redisUrl: redis.url,
      keyPrefix: "fleet-test:",
      lockLeaseSeconds: options.lockLeaseSeconds ?? 15,
      provider: "test",
      issuer: server.issuer,
      clientId: server.clientId,
      scopes: server.provider.scopes
    })
    const env = { MAGICTUNNEL_CONFIG_PATH: configPath, MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key.base64 }
    const layer = stack(fileConfig(configPath, key.base64))
    const login = Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      yield* loginApproved(sessions, "test", server.approve)
      return Redacted.value(yield* sessions.getAccessToken("test"))
    })
    /** Makes the stored access token expired, as time passing would. */
    const expire = Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      const record = yield* store.get("test")
      yield* store.put(new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) }))
      return record.generation
    })
    return { redis, server, env, layer, login, expire }
  })

const tokensOf = (answer: Record<string, unknown>): ReadonlyArray<string> =>
  Array.isArray(answer.tokens) ? answer.tokens.map(String) : [`error: ${String(answer.error)}: ${String(answer.message)}`]

describe("Fleet mode (Redis)", () => {
  it.live("three instances share one login; 3 x 20 concurrent requests for an expired token cause one refresh", () =>
    Effect.gen(function*() {
      const { env, expire, layer, login, server } = yield* fleet()
      yield* Effect.gen(function*() {
        const token = yield* login
        const [observer, ...workers] = yield* Effect.forEach([0, 1, 2, 3], () => spawnWorker(env), { concurrency: "unbounded" })
        const before = server.counters()
        assert.deepStrictEqual(tokensOf(yield* observer!.ask("token test 1")), [token])
        assert.strictEqual(server.counters().refreshSucceeded, before.refreshSucceeded, "read from Redis, nothing sent")

        const generation = yield* expire
        const answers = yield* Effect.forEach(workers, (w) => w.ask("token test 20"), { concurrency: "unbounded" })
        const after = server.counters()
        const tokens = answers.flatMap(tokensOf)
        assert.strictEqual(tokens.length, 60)
        assert.strictEqual(new Set(tokens).size, 1, tokens.slice(0, 3).join("\n"))
        assert.strictEqual(after.refreshSucceeded - before.refreshSucceeded, 1)
        assert.strictEqual(after.refreshReuseDetected, before.refreshReuseDetected)
        assert.strictEqual(after.refreshInvalidGrant, before.refreshInvalidGrant)
        const stored = yield* (yield* TokenStore.TokenStore).get("test")
        assert.strictEqual(stored.generation, generation + 1)
        assert.strictEqual(Redacted.value(stored.accessToken!), tokens[0])
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))

  it.live("an instance killed while holding a grant's refresh lock: another refreshes it once, within one lease", () =>
    Effect.gen(function*() {
      const { env, expire, layer, login, server } = yield* fleet({ lockLeaseSeconds: 3 })
      yield* Effect.gen(function*() {
        yield* login
        const [doomed, survivor] = yield* Effect.forEach([1, 2], () => spawnWorker(env), { concurrency: "unbounded" })
        assert.deepStrictEqual(yield* doomed!.ask("hold test"), { holding: true })
        doomed!.child.kill("SIGKILL")
        yield* expire
        const before = server.counters()
        const answer = yield* survivor!.ask("token test 5")
        const tokens = tokensOf(answer)
        assert.strictEqual(new Set(tokens).size, 1, tokens.join("\n"))
        assert.strictEqual(server.counters().refreshSucceeded - before.refreshSucceeded, 1)
        assert.strictEqual(server.counters().refreshReuseDetected, before.refreshReuseDetected)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))

  it.live("a token refreshed or logged out on one instance stops being served from another's memory at once", () =>
    Effect.gen(function*() {
      const { env, layer, login, server } = yield* fleet()
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        const first = yield* login
        const worker = yield* spawnWorker(env)
        assert.deepStrictEqual(tokensOf(yield* worker.ask("token test 1")), [first], "now cached in the worker")
        // Tokens live 300 s here: without the change feed the worker would serve `first` for minutes.
        const before = server.counters()
        assert.strictEqual((yield* sessions.refresh("test", { force: true }))._tag, "Refreshed")
        const second = Redacted.value(yield* sessions.getAccessToken("test"))
        assert.notStrictEqual(second, first)
        const served = yield* worker.ask("token test 1").pipe(
          Effect.filterOrFail((a) => tokensOf(a)[0] === second, () => new WorkerError({ message: "still the token it held before" })),
          Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 40 })
        )
        assert.deepStrictEqual(tokensOf(served), [second])
        assert.strictEqual(server.counters().refreshSucceeded - before.refreshSucceeded, 1, "the worker re-read, it did not refresh")

        yield* sessions.logout("test", { revoke: true })
        const refused = yield* worker.ask("token test 1").pipe(
          Effect.filterOrFail((a) => a.error !== undefined, () => new WorkerError({ message: "still serving the logged-out token" })),
          Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 40 })
        )
        assert.strictEqual(refused.error, "ReauthRequired")
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))

  it.live("Redis restarted with AOF: a new instance finds the rotated session, nothing is lost", () =>
    Effect.gen(function*() {
      const { env, layer, login, redis, server } = yield* fleet()
      const refreshed = yield* Effect.gen(function*() {
        yield* login
        const outcome = yield* (yield* Sessions.Sessions).refresh("test", { force: true })
        assert.strictEqual(outcome._tag, "Refreshed")
        const stored = yield* (yield* TokenStore.TokenStore).get("test")
        assert.strictEqual(stored.generation, 1)
        return Redacted.value(stored.accessToken!)
      }).pipe(Effect.provide(layer))
      yield* Effect.promise(() => redis.stop())
      yield* Effect.promise(() => redis.start())
      const before = server.counters()
      const worker = yield* spawnWorker(env)
      assert.deepStrictEqual(tokensOf(yield* worker.ask("token test 1")), [refreshed])
      assert.strictEqual(server.counters().refreshSucceeded, before.refreshSucceeded)
    }).pipe(Effect.scoped))

  it.live("Redis down: instances serve the tokens they hold, report unhealthy, and recover when it returns", () =>
    Effect.gen(function*() {
      const { env, layer, login, redis } = yield* fleet()
      const token = yield* login.pipe(Effect.provide(layer))
      const worker = yield* spawnWorker(env)
      assert.deepStrictEqual(tokensOf(yield* worker.ask("token test 1")), [token])
      assert.deepStrictEqual(yield* worker.ask("health"), { available: true })

      yield* Effect.promise(() => redis.stop())
      assert.deepStrictEqual(tokensOf(yield* worker.ask("token test 3")), [token, token, token])
      assert.deepStrictEqual(yield* worker.ask("health"), { available: false })

      yield* Effect.promise(() => redis.start())
      const health = yield* worker.ask("health").pipe(
        Effect.filterOrFail((h) => h.available === true, () => new WorkerError({ message: "still unhealthy" })),
        Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 50 })
      )
      assert.deepStrictEqual(health, { available: true })
    }).pipe(Effect.scoped))
})
