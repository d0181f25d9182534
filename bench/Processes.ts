/**
 * Benchmark 3: 8 processes on one expired session. Each is a separate Node
 * process (`bench/processes-worker.ts`, bundled with esbuild as the CLI
 * ships) composing the real stack from the same configuration file, data key
 * and session directory (on disk), against oidc-provider in its own process
 * (`ServerProcess.ts`).
 *
 * The workers are warm when the measure starts, as long-running processes
 * are when a token they share expires: before saying "ready", each takes a
 * session of its own (its own grant) through the same path several times
 * (record expired, cache dropped, `getAccessToken`), so the refresh path is
 * loaded and compiled, and its files and connections are open. Then, with
 * all 8 ready and the machine settled, all are told "go" at once; timed from
 * "go" to the last answer. What must hold: exactly one refresh reaches the
 * server (its own counter) and all 8 print the same token; the benchmark
 * fails otherwise. Process start-up and warm-up are outside the figure (the
 * cold-start benchmark measures start-up); the note gives spawn to ready.
 *
 * Baselines:
 * - like for like: 8 worker processes, warmed the same way with plain
 *   oauth4webapi refreshes of a grant of their own, each doing one plain
 *   refresh of its own grant after "go" (go to last answer; 8 grants at the
 *   server against our 1, the only way 8 plain clients get a token);
 * - the issue's: one plain refresh grant with oauth4webapi and the global
 *   fetch from this process, on the shared session's grant (a chain: each
 *   refresh rotates the token the next one sends), median of several.
 * The two 8-process sides alternate from round to round.
 */
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { DateTime, Effect, ManagedRuntime, Redacted } from "effect"
import { build } from "esbuild"
import * as oauth from "oauth4webapi"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import { fileConfig, newKey, stack } from "../test/support/SessionsStack.js"
import * as Fixtures from "./Fixtures.js"
import { median, now, progress, type Row } from "./Measure.js"
import * as ServerProcess from "./ServerProcess.js"
import { loginApproved } from "../test/support/Login.js"

const processes = 8
/** Rounds of each 8-process side; the first is a warm-up (server JIT, page cache). */
const rounds = 4
/** Refreshes each worker does of its own grant before it says "ready". */
const warmUps = 20
/** Pause between "all ready" and "go", so that no worker is still finishing its warm-up's work (GC, closing). */
const settleMs = 250
const refreshRuns = 11
const shared = "test"
const ownProvider = (i: number) => `w${i}`
const rawProvider = (i: number) => `r${i}`
const repoRoot = NodePath.resolve(import.meta.dirname, "..")

interface Worker {
  readonly ready: Promise<number>
  readonly answer: Promise<{ readonly line: string; readonly at: number }>
  readonly send: (line: string) => void
  readonly kill: () => void
}

const startWorker = (bundle: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Worker => {
  const spawned = now()
  const child = spawn(process.execPath, [bundle, ...args], { cwd: repoRoot, env, stdio: ["pipe", "pipe", "pipe"] })
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
    send: (line) => child.stdin.write(`${line}\n`),
    kill: () => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")
  }
}

/** The YAML the workers load: the file store in `sessionDirectory`, every provider on the same server. */
const writeConfig = (dir: string, sessionDirectory: string, server: ServerProcess.ServerProcess, providers: ReadonlyArray<string>) => {
  const file = NodePath.join(dir, "config.yaml")
  Fs.writeFileSync(
    file,
    [
      "auth:",
      "  session_persistence:",
      "    user_context:",
      `      session_directory: ${JSON.stringify(sessionDirectory)}`,
      "    token_storage:",
      "      storage_backend: filesystem",
      "      encryption_key_source: env",
      "  oauth:",
      "    providers:",
      ...providers.flatMap((p) => [
        `      ${p}:`,
        `        issuer: ${JSON.stringify(server.issuer)}`,
        `        client_id: ${JSON.stringify(server.clientId)}`,
        `        scopes: ${JSON.stringify(server.provider.scopes)}`
      ]),
      ""
    ].join("\n"),
    { mode: 0o600 }
  )
  return file
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Runs the benchmark: its rows, or an error when a round did not cause exactly one refresh. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("processes: bundling the worker, starting oidc-provider in its own process")
  const { path: dir } = Fixtures.tempDirectory("mts-bench-procs-", "disk")
  const bundle = NodePath.join(dir, "processes-worker.mjs")
  await build({
    entryPoints: [NodePath.join(repoRoot, "bench", "processes-worker.ts")],
    outfile: bundle,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    external: ["@napi-rs/keyring"],
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    logLevel: "warning"
  })
  // Unbounded: the warm-ups make thousands of grants, more than oidc-provider's default LRU keeps.
  const server = await ServerProcess.start({ accessTokenTtl: 300, unboundedStorage: true })
  const key = newKey()
  const owns = Array.from({ length: processes }, (_, i) => ownProvider(i))
  const raws = Array.from({ length: processes }, (_, i) => rawProvider(i))
  const configPath = writeConfig(dir, NodePath.join(dir, "sessions"), server, [shared, ...owns, ...raws])
  const env: NodeJS.ProcessEnv = { ...process.env, MAGICTUNNEL_CONFIG_PATH: configPath, MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key.base64 }
  const runtime = ManagedRuntime.make(stack(fileConfig(configPath, key.base64)))
  const live: Array<Worker> = []
  try {
    progress(`processes: logging in ${1 + owns.length + raws.length} sessions`)
    await runtime.runPromise(Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      yield* Effect.forEach([shared, ...owns, ...raws], (provider) => loginApproved(sessions, provider, server.approve), {
        concurrency: 4,
        discard: true
      })
    }))
    const storedRefreshToken = (provider: string) =>
      runtime.runPromise(Effect.gen(function*() {
        const record = yield* (yield* TokenStore.TokenStore).get(TokenStore.sessionIdOf({ provider, resource: undefined }))
        return Redacted.value(record.refreshToken!)
      }))
    // The raw workers' grants: their rotated refresh tokens stay here from round to round.
    const rawTokens = await Promise.all(raws.map(storedRefreshToken))
    const expire = Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      const record = yield* store.get(shared)
      yield* store.put(new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) }))
    })

    /** Starts 8 workers, waits until all are warm and ready, says "go": go to last answer, and what the server saw. */
    const round = async (workers: ReadonlyArray<Worker>) => {
      live.push(...workers)
      const ready = await Promise.all(workers.map((w) => w.ready))
      await sleep(settleMs)
      const before = (await server.counters()).refreshSucceeded
      const start = now()
      for (const w of workers) w.send("go")
      const answers = await Promise.all(workers.map((w) => w.answer))
      const wall = Math.max(...answers.map((a) => a.at)) - start
      const first = Math.min(...answers.map((a) => a.at)) - start
      const grants = (await server.counters()).refreshSucceeded - before
      for (const w of workers) w.kill()
      const offsets = answers.map((a) => a.at - start).sort((x, y) => x - y)
      return { wall, first, offsets, ready: median(ready), grants, answers: answers.map((a) => a.line) }
    }

    const ours = async (r: number) => {
      await runtime.runPromise(expire)
      const result = await round(owns.map((own) => startWorker(bundle, ["ours", shared, own, String(warmUps)], env)))
      const distinct = new Set(result.answers)
      if (result.grants !== 1 || distinct.size !== 1 || ![...distinct][0]!.startsWith("{\"token\"")) {
        throw new Error(`round ${r}: ${result.grants} refreshes reached the server, answers: ${[...distinct].join(" | ")}`)
      }
      return result
    }
    const plain = async (r: number) => {
      const workers = raws.map((_, i) => {
        const w = startWorker(bundle, ["raw", server.issuer, server.clientId, String(warmUps)], env)
        w.send(rawTokens[i]!)
        return w
      })
      const result = await round(workers)
      result.answers.forEach((line, i) => {
        const answer = JSON.parse(line) as { readonly token?: string; readonly next?: string }
        if (answer.next === undefined) throw new Error(`raw round ${r}: worker ${i} answered ${line}`)
        rawTokens[i] = answer.next
      })
      if (result.grants !== processes) throw new Error(`raw round ${r}: ${result.grants} refreshes reached the server, ${processes} expected`)
      return result
    }

    progress(`processes: ${rounds} rounds of ${processes} warm processes (${warmUps} warm-up refreshes each), ours and plain`)
    const walls: Array<number> = []
    const firsts: Array<number> = []
    const readies: Array<number> = []
    const refreshes: Array<number> = []
    const rawWalls: Array<number> = []
    const rawReadies: Array<number> = []
    for (let r = 0; r < rounds; r++) {
      const o = r % 2 === 0 ? await ours(r) : undefined
      const p = await plain(r)
      const o2 = o ?? await ours(r)
      progress(
        `processes: round ${r}: ours ${o2.wall.toFixed(1)} ms (${o2.grants} grant; answers at ${
          o2.offsets.map((x) => x.toFixed(0)).join(", ")
        } ms), plain ${p.wall.toFixed(1)} ms (${p.grants} grants; answers at ${p.offsets.map((x) => x.toFixed(0)).join(", ")} ms)`
      )
      if (r === 0) continue
      walls.push(o2.wall)
      firsts.push(o2.first)
      readies.push(o2.ready)
      refreshes.push(o2.grants)
      rawWalls.push(p.wall)
      rawReadies.push(p.ready)
    }

    progress("processes: measuring one plain refresh")
    const issuer = new URL(server.issuer)
    const insecure = { [oauth.allowInsecureRequests]: true }
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
    const client: oauth.Client = { client_id: server.clientId }
    let refreshToken = await storedRefreshToken(shared)
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

    const common = `server refreshes per round: ${refreshes.join(",")} (1 token to all); go to last answer, median of ${
      rounds - 1
    } rounds (first answer ${median(firsts).toFixed(1)} ms); warm workers (${warmUps} refreshes of their own grant each), spawn to ready ${
      median(readies).toFixed(0)
    } ms`
    const extra = { wallMs: walls, firstAnswerMs: firsts, readyMs: readies, refreshesPerRound: refreshes, plainWallMs: rawWalls, plainReadyMs: rawReadies, rawMs: raw }
    return [
      {
        name: `getAccessToken, expired, ${processes} processes`,
        ours: { value: median(walls), unit: "ms" },
        baseline: { value: median(raw), unit: "ms" },
        baselineName: "one refresh grant, plain oauth4webapi + fetch",
        note: `${common}; plain refresh: median of ${refreshRuns}`,
        extra
      },
      {
        name: `getAccessToken, expired, ${processes} processes, vs ${processes} plain`,
        ours: { value: median(walls), unit: "ms" },
        baseline: { value: median(rawWalls), unit: "ms" },
        baselineName: `${processes} warm processes, each one plain oauth4webapi refresh of its own grant after go (go to last answer)`,
        note: `plain ${rawWalls.map((w) => w.toFixed(1)).join("/")} ms (${processes} grants at the server), ours ${
          walls.map((w) => w.toFixed(1)).join("/")
        } ms (1 grant)`
      }
    ]
  } finally {
    for (const w of live) w.kill()
    await runtime.dispose()
    await server.close()
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
