/**
 * Benchmark: 8 processes on one expired session. Each is a separate Node
 * process (`test/support/sessions-worker.ts`, bundled with esbuild as
 * `test/integration/MultiProcess.test.ts` does) composing the real stack
 * from the same configuration file, data key and session directory (on
 * disk), against oidc-provider on 127.0.0.1 in this process.
 *
 * Each round: the stored access token is made to look expired, 8 workers are
 * started and wait until their services are up ("ready"), then all are told
 * "go" at once; timed from "go" to the last answer. What must hold: exactly
 * one refresh reaches the server (its own counter) and all 8 print the same
 * token; the benchmark fails otherwise. Process start-up is outside the
 * figure (the cold-start benchmark measures it); the note gives spawn to
 * ready.
 *
 * Baseline: one plain refresh grant with oauth4webapi and the global fetch
 * against the same server, timed after the rounds on the session's own
 * grant (a chain: each refresh rotates the token the next one sends).
 */
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { DateTime, Effect, ManagedRuntime, Redacted } from "effect"
import { build } from "esbuild"
import * as oauth from "oauth4webapi"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as OidcServer from "../test/support/OidcServer.js"
import { fileConfig, newKey, stack, writeConfigFile } from "../test/support/SessionsStack.js"
import * as Fixtures from "./Fixtures.js"
import { median, now, progress, type Row } from "./Measure.js"

const processes = 8
/** Rounds of 8 processes; the first is a warm-up (server JIT, page cache). */
const rounds = 4
const refreshRuns = 11
const provider = "test"
const repoRoot = NodePath.resolve(import.meta.dirname, "..")

interface Worker {
  readonly ready: Promise<number>
  readonly answer: Promise<{ readonly line: string; readonly at: number }>
  readonly go: () => void
  readonly kill: () => void
}

const startWorker = (bundle: string, env: NodeJS.ProcessEnv): Worker => {
  const spawned = now()
  const child = spawn(process.execPath, [bundle, "token", provider, "--wait"], { cwd: repoRoot, env, stdio: ["pipe", "pipe", "pipe"] })
  child.stdin.on("error", () => {}) // EPIPE from a worker that already exited
  let output = ""
  let errors = ""
  const lines: Array<(line: string) => void> = []
  child.stdout.on("data", (d) => {
    output += d
    const all = output.split("\n")
    for (const line of all.slice(0, -1)) for (const l of lines) l(line)
    output = all[all.length - 1] ?? ""
  })
  child.stderr.on("data", (d) => (errors += d))
  const exited = new Promise<never>((_, reject) =>
    child.on("exit", (code) => setTimeout(() => reject(new Error(`worker exited ${code}: ${errors}`)), 200))
  )
  const ready = Promise.race([new Promise<number>((resolve) => lines.push((l) => l === "ready" && resolve(now() - spawned))), exited])
  const answer = Promise.race([
    new Promise<{ line: string; at: number }>((resolve) => lines.push((l) => l.startsWith("{") && resolve({ line: l, at: now() }))),
    exited
  ])
  ready.catch(() => {})
  answer.catch(() => {})
  return {
    ready,
    answer,
    go: () => child.stdin.write("go\n"),
    kill: () => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")
  }
}

/** Runs the benchmark: its rows, or an error when a round did not cause exactly one refresh. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("processes: bundling the worker, starting oidc-provider")
  const { path: dir } = Fixtures.tempDirectory("mts-bench-procs-", "disk")
  const bundle = NodePath.join(dir, "sessions-worker.mjs")
  await build({
    entryPoints: [NodePath.join(repoRoot, "test", "support", "sessions-worker.ts")],
    outfile: bundle,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    external: ["@napi-rs/keyring"],
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    logLevel: "warning"
  })
  const server = await OidcServer.start({ accessTokenTtl: 300 })
  const key = newKey()
  const configPath = writeConfigFile(dir, {
    sessionDirectory: NodePath.join(dir, "sessions"),
    provider,
    issuer: server.issuer,
    clientId: server.clientId,
    scopes: server.provider.scopes
  })
  const env: NodeJS.ProcessEnv = { ...process.env, MAGICTUNNEL_CONFIG_PATH: configPath, MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key.base64 }
  const runtime = ManagedRuntime.make(stack(fileConfig(configPath, key.base64)))
  const live: Array<Worker> = []
  try {
    progress("processes: logging in")
    await runtime.runPromise(Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      let browser: Promise<number> | undefined
      yield* sessions.login(provider, {
        onEvent: () => Effect.void,
        openBrowser: (url) => Effect.sync(() => void (browser = server.approve(url))),
        timeout: "20 seconds"
      })
      if (browser !== undefined) yield* Effect.promise(() => browser!)
    }))
    const expire = Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      const record = yield* store.get(provider)
      yield* store.put(new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) }))
    })

    progress(`processes: ${rounds} rounds of ${processes} processes`)
    const walls: Array<number> = []
    const readies: Array<number> = []
    const refreshes: Array<number> = []
    for (let r = 0; r < rounds; r++) {
      await runtime.runPromise(expire)
      const workers = Array.from({ length: processes }, () => startWorker(bundle, env))
      live.push(...workers)
      const ready = await Promise.all(workers.map((w) => w.ready))
      const before = server.counters().refreshSucceeded
      const start = now()
      for (const w of workers) w.go()
      const answers = await Promise.all(workers.map((w) => w.answer))
      const wall = Math.max(...answers.map((a) => a.at)) - start
      const count = server.counters().refreshSucceeded - before
      const distinct = new Set(answers.map((a) => a.line))
      if (count !== 1 || distinct.size !== 1 || ![...distinct][0]!.startsWith("{\"token\"")) {
        throw new Error(`round ${r}: ${count} refreshes reached the server, answers: ${[...distinct].join(" | ")}`)
      }
      for (const w of workers) w.kill()
      if (r === 0) continue
      walls.push(wall)
      readies.push(median(ready))
      refreshes.push(count)
    }

    progress("processes: measuring the baseline")
    const issuer = new URL(server.issuer)
    const insecure = { [oauth.allowInsecureRequests]: true }
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
    const client: oauth.Client = { client_id: server.clientId }
    const stored = await runtime.runPromise(Effect.gen(function*() {
      return yield* (yield* TokenStore.TokenStore).get(provider)
    }))
    let refreshToken = Redacted.value(stored.refreshToken!)
    const rawRefresh = async () => {
      const start = now()
      const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, insecure)
      const body = await oauth.processRefreshTokenResponse(as, client, response)
      refreshToken = body.refresh_token!
      return now() - start
    }
    await rawRefresh()
    const raw: Array<number> = []
    for (let i = 0; i < refreshRuns; i++) raw.push(await rawRefresh())

    return [
      {
        name: `getAccessToken, expired, ${processes} processes`,
        ours: { value: median(walls), unit: "ms" },
        baseline: { value: median(raw), unit: "ms" },
        baselineName: "one refresh grant, plain oauth4webapi + fetch",
        note: `server refreshes per round: ${refreshes.join(",")} (1 token to all); go to last answer, median of ${
          rounds - 1
        } rounds; spawn to ready ${median(readies).toFixed(0)} ms`,
        extra: { wallMs: walls, readyMs: readies, refreshesPerRound: refreshes, rawMs: raw }
      }
    ]
  } finally {
    for (const w of live) w.kill()
    await runtime.dispose()
    await server.close()
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
