/**
 * Sessions across separate processes: worker processes
 * (test/support/sessions-worker.ts) share one session directory, data key
 * and authorization server with this one, as several programs of one user
 * do. A session logged in here is recovered by a process started later;
 * eight processes asking at once for an expired token cause exactly one
 * refresh at the server, and all get the same valid token.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import * as NodePathModule from "node:path"
import { Data, DateTime, Effect, Redacted, Schema } from "effect"
import { repoRoot, useWorkerBundle } from "../support/WorkerBundle.js"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import * as OidcServer from "../support/OidcServer.js"
import { fileConfig, newKey, stack, writeConfigFile } from "../support/SessionsStack.js"
import { loginApproved } from "../support/Login.js"

const workerBundle = useWorkerBundle("test/support/sessions-worker.ts")

class WorkerError extends Data.TaggedError("WorkerError")<{ readonly message: string }> {}

interface Worker {
  readonly child: ChildProcessWithoutNullStreams
  readonly output: () => string
}

/** Starts a worker with the shared configuration and key in its environment; killed when the scope closes. */
const spawnWorker = (env: Readonly<Record<string, string>>, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Worker => {
      const child = spawn(process.execPath, [workerBundle, ...args], {
        cwd: repoRoot,
        env: { ...process.env, ...env },
        stdio: ["pipe", "pipe", "pipe"]
      })
      child.stdin.on("error", () => {}) // EPIPE from a worker that already exited
      let output = ""
      child.stdout.on("data", (d) => (output += d))
      child.stderr.on("data", (d) => (output += d))
      return { child, output: () => output }
    }),
    (w) => Effect.sync(() => w.child.exitCode === null && w.child.signalCode === null && w.child.kill("SIGKILL"))
  )

/** Waits (bounded) until the worker printed a line satisfying `predicate`; fails if it exits first. */
const waitForLine = (w: Worker, predicate: (line: string) => boolean, what: string) =>
  Effect.callback<string, WorkerError>((resume) => {
    const check = () => {
      const line = w.output().split("\n").find(predicate)
      if (line !== undefined) resume(Effect.succeed(line))
      else if (w.child.exitCode !== null || w.child.signalCode !== null) {
        resume(Effect.fail(new WorkerError({ message: `worker exited before ${what}: ${w.output()}` })))
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
      duration: "40 seconds",
      orElse: () => Effect.fail(new WorkerError({ message: `no ${what} from worker: ${w.output()}` }))
    })
  )

const Answer = Schema.fromJsonString(Schema.Union([
  Schema.Struct({ token: Schema.String }),
  Schema.Struct({ error: Schema.String, message: Schema.String })
]))

/** The worker's answer: its token, or the failure it printed. */
const answerOf = (w: Worker) =>
  Effect.flatMap(
    waitForLine(w, (line) => line.startsWith("{"), "an answer"),
    Schema.decodeUnknownEffect(Answer)
  )

/** A logged-in session shared through a session directory, and the environment a worker needs to use it. */
const shared = Effect.gen(function*() {
  const server = yield* OidcServer.acquire({ accessTokenTtl: 300 })
  const dir = yield* tempDir("mts-multiprocess-")
  const key = newKey()
  const configPath = writeConfigFile(dir, {
    sessionDirectory: NodePathModule.join(dir, "sessions"),
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
    return yield* sessions.getAccessToken("test")
  })
  return { server, env, layer, login }
})

const isActive = (server: OidcServer.OidcServer, token: string) =>
  Effect.gen(function*() {
    const oauth = yield* OAuthClient.OAuthClient
    return (yield* oauth.introspect(server.provider, Redacted.make(token))).active
  })

describe("Sessions across processes", () => {
  it.live("a process started after a login recovers the session and gets its token", () =>
    Effect.gen(function*() {
      const { env, layer, login, server } = yield* shared
      yield* Effect.gen(function*() {
        const token = Redacted.value(yield* login)
        const before = server.counters()
        const worker = yield* spawnWorker(env, ["token", "test"])
        const answer = yield* answerOf(worker)
        assert.deepStrictEqual(answer, { token })
        // Still valid: read from the store, nothing sent.
        assert.strictEqual(server.counters().refreshSucceeded, before.refreshSucceeded)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))

  it.live("8 processes asking at once for an expired token: one refresh, no invalid_grant, one valid token", () =>
    Effect.gen(function*() {
      const { env, layer, login, server } = yield* shared
      yield* Effect.gen(function*() {
        const old = Redacted.value(yield* login)
        const store = yield* TokenStore.TokenStore
        const record = yield* store.get("test")
        yield* store.put(
          new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) })
        )
        const workers = yield* Effect.forEach(
          Array.from({ length: 8 }),
          () => Effect.tap(spawnWorker(env, ["token", "test", "--wait"]), (w) => waitForLine(w, (l) => l === "ready", "ready")),
          { concurrency: "unbounded" }
        )
        const before = server.counters()
        for (const w of workers) w.child.stdin.write("go\n")
        const answers = yield* Effect.forEach(workers, answerOf, { concurrency: "unbounded" })
        const after = server.counters()

        const tokens = answers.map((a) => ("token" in a ? a.token : `error: ${a.error}: ${a.message}`))
        assert.strictEqual(new Set(tokens).size, 1, tokens.join("\n"))
        const token = tokens[0]!
        assert.notStrictEqual(token, old)
        assert.isTrue(yield* isActive(server, token))
        assert.strictEqual(after.refreshSucceeded - before.refreshSucceeded, 1)
        assert.strictEqual(after.refreshInvalidGrant, before.refreshInvalidGrant)
        assert.strictEqual(after.refreshReuseDetected, before.refreshReuseDetected)
        const stored = yield* store.get("test")
        assert.strictEqual(stored.generation, record.generation + 1)
        assert.strictEqual(stored.accessToken === undefined ? undefined : Redacted.value(stored.accessToken), token)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.scoped))
})
