/**
 * Benchmark 5: background refresh throughput. N stored sessions, each its
 * own grant at a real authorization server (oidc-provider, refresh token
 * rotation on, in its own process: `ServerProcess.ts`), are all refreshed
 * once, at most `c` at a time, for c = 1, 4, 16, 64.
 *
 * The server runs in a child process because no user runs their
 * authorization server inside their client: in the same process its CPU
 * (most of a plain grant's cost) would share the one JS thread with the
 * client being measured, on both sides. Apart, each side's throughput is
 * bounded by the slower of the two processes, and the client's own CPU per
 * refresh (`process.cpuUsage()` of this process over the round, divided by
 * the grants) shows what our code costs even when the server is the
 * bottleneck. The server's CPU per grant is reported beside it.
 *
 * Ours: `Sessions.refresh(id, { force: true })` of every session, admitted
 * through the supervisor's own queue (`internal/RefreshQueue.ts`, with
 * `limit` = c, i.e. `concurrent_refresh_limit`): what the supervisor does
 * when N sessions fall due together, without its timers (which fire at
 * `expires_at - threshold` with jitter and cannot be driven in a benchmark
 * without waiting for them). Each refresh takes the cross-process lock,
 * reads the record, sends the grant and persists the rotated tokens
 * (encrypted file store: record and index entry, each fsynced).
 *
 * Baselines, measured in the same rounds:
 * - raw (the issue's): the same grants refreshed with plain oauth4webapi and
 *   the global fetch by a pool of c workers, each grant keeping its own
 *   rotated refresh token in memory (nothing persisted);
 * - raw + durable write: the same loop plus, after each grant, one
 *   crash-safe write of the new tokens (AES-256-GCM seal, write a temp
 *   file, fsync, rename, fsync the directory; `node:fs/promises`, so the
 *   event loop is not blocked and c writes overlap): the floor of any store
 *   that survives a crash, on the same medium as ours.
 * Every side refreshes the same grants: between rounds (untimed) the latest
 * refresh tokens are handed over, from the store to the raw loops and back,
 * so one login per session serves all. The order of the sides rotates from
 * round to round, and garbage is collected before each timed side.
 *
 * Figure: refresh grants per second, median of the rounds. Run on a disk
 * store (fsync costs what it costs users) and on tmpfs (`/dev/shm`, fsync
 * free), so the cost of durability is visible. Then scaling: 50 sessions
 * beside the 200, at concurrency 16.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Fsp from "node:fs/promises"
import * as Inspector from "node:inspector/promises"
import * as NodePath from "node:path"
import { Context, Deferred, Effect, Layer, Redacted } from "effect"
import * as oauth from "oauth4webapi"
import * as RefreshQueue from "../src/internal/RefreshQueue.js"
import type * as SessionConfig from "../src/SessionConfig.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as Fixtures from "./Fixtures.js"
import { collect, load, median, now, progress, type Row } from "./Measure.js"
import * as ServerProcess from "./ServerProcess.js"
import { loginApproved } from "../test/support/Login.js"

/** Concurrency levels (the refresh queue's limit and the raw pool's size). */
export const concurrencies = [1, 4, 16, 64] as const
/** Sessions refreshed per round in the concurrency sweep. */
export const sweepSessions = 200
/** Session counts of the scaling rows, at {@link scalingConcurrency}. */
export const sessionCounts = [50, 200] as const
const scalingConcurrency = 16
/** Timed rounds of each configuration (each side); the median is reported. */
const rounds = 3
/** Logins at once while seeding. */
const loginConcurrency = 4

/** What one timed side of one round measured. */
interface Sample {
  readonly perSecond: number
  /** CPU time of this (the client) process per grant, user + system, in ms. */
  readonly cpuMs: number
  /** CPU time of the server process per grant, in ms. */
  readonly serverCpuMs: number
}

/** The medians of one side over the rounds of a configuration. */
export interface Side {
  readonly perSecond: number
  readonly cpuMs: number
  readonly serverCpuMs: number
  readonly rounds: ReadonlyArray<Sample>
}

/** One measured configuration. */
export interface Point {
  readonly medium: Fixtures.Medium
  readonly sessions: number
  readonly concurrency: number
  /** Grants per second: ours, the raw loop, the raw loop with a durable write per refresh. */
  readonly ours: number
  readonly raw: number
  readonly durable: number
  readonly sides: { readonly ours: Side; readonly raw: Side; readonly durable: Side }
  /** The 1-minute load average when the configuration finished. */
  readonly load: number
}

/** The points of the last run, for the chart. */
export let lastPoints: ReadonlyArray<Point> = []

const providerName = (i: number) => `s${i}`

const sideOf = (samples: ReadonlyArray<Sample>): Side => ({
  perSecond: median(samples.map((s) => s.perSecond)),
  cpuMs: median(samples.map((s) => s.cpuMs)),
  serverCpuMs: median(samples.map((s) => s.serverCpuMs)),
  rounds: samples
})

/**
 * One crash-safe write, the floor of a durable store: AES-256-GCM seal,
 * write a temp file, fsync, rename over the target, fsync the directory.
 */
const durableWrite = async (directory: string, name: string, key: Uint8Array, plaintext: string) => {
  const nonce = Crypto.randomBytes(12)
  const cipher = Crypto.createCipheriv("aes-256-gcm", key, nonce, { authTagLength: 16 })
  cipher.setAAD(Buffer.from(`magictunnel-session/v1\0raw\0${name}`, "utf8"))
  const sealed = Buffer.concat([nonce, cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()])
  const temp = NodePath.join(directory, `${name}.tmp`)
  const file = await Fsp.open(temp, "w", 0o600)
  try {
    await file.writeFile(sealed)
    await file.sync()
  } finally {
    await file.close()
  }
  await Fsp.rename(temp, NodePath.join(directory, name))
  const dir = await Fsp.open(directory, "r")
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/**
 * With `BENCH_PROFILE=<dir>`, each timed round of ours is CPU-profiled alone
 * (node:inspector, in this process: the client side only) and written to
 * `<dir>/throughput-<medium>-<sessions>-c<concurrency>-ours-<n>.cpuprofile`;
 * the profiler's own cost then weighs on that side's figures.
 */
const profileDirectory = process.env["BENCH_PROFILE"]
const profile = profileDirectory === undefined ? undefined : {
  start: async () => {
    const session = new Inspector.Session()
    session.connect()
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 200 })
    await session.post("Profiler.start")
    return async (name: string) => {
      const { profile: taken } = await session.post("Profiler.stop")
      session.disconnect()
      Fs.mkdirSync(profileDirectory, { recursive: true })
      let n = 0
      while (Fs.existsSync(NodePath.join(profileDirectory, `${name}-${n}.cpuprofile`))) n++
      Fs.writeFileSync(NodePath.join(profileDirectory, `${name}-${n}.cpuprofile`), JSON.stringify(taken))
    }
  }
}

/** Runs the benchmark: its rows, or an error when a refresh did not happen. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("throughput: starting oidc-provider in its own process")
  const server = await ServerProcess.start({ accessTokenTtl: 300, refreshTokenTtl: 24 * 3600, unboundedStorage: true })
  const total = Math.max(sweepSessions, ...sessionCounts)
  const providers: Array<SessionConfig.ProviderSettings> = Array.from({ length: total }, (_, i) => ({
    ...server.provider,
    name: providerName(i)
  }))
  const disk = await Fixtures.environment(providers, { medium: "disk" })
  const memory = await Fixtures.environment(providers, { medium: "memory" })
  // Where the durable raw loop writes, beside each store (same medium).
  const rawDirectory = (env: Fixtures.Environment<Fixtures.Services>) => {
    const directory = NodePath.join(env.directory, "raw")
    Fs.mkdirSync(directory, { recursive: true, mode: 0o700 })
    return directory
  }
  try {
    const issuer = new URL(server.issuer)
    const insecure = { [oauth.allowInsecureRequests]: true }
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
    const client: oauth.Client = { client_id: server.clientId }

    const ids = providers.map((p) => TokenStore.sessionIdOf({ provider: p.name, resource: undefined }))

    progress(`throughput: logging in ${total} sessions`)
    const loginStart = now()
    await disk.runtime.runPromise(
      Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        yield* Effect.forEach(providers, (p) => loginApproved(sessions, p.name, server.approve, { timeout: "30 seconds" }), {
          concurrency: loginConcurrency,
          discard: true
        })
      })
    )
    progress(`throughput: ${total} logins in ${((now() - loginStart) / 1000).toFixed(1)} s`)

    /** The latest refresh token of each session, as the store holds it. */
    const readTokens = (env: Fixtures.Environment<Fixtures.Services>, some: ReadonlyArray<string>) =>
      env.runtime.runPromise(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        return yield* Effect.forEach(some, store.get, { concurrency: 16 })
      }))
    /** Writes records back with the raw loop's rotated refresh tokens (or copies them into another store). */
    const writeRecords = (env: Fixtures.Environment<Fixtures.Services>, records: ReadonlyArray<TokenStore.SessionRecord>) =>
      env.runtime.runPromise(Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        yield* Effect.forEach(records, store.put, { concurrency: 16, discard: true })
      }))

    /**
     * Times `body`, which must cause exactly `grants` refresh grants at the
     * server: grants per second, and the CPU of each process per grant.
     */
    const timed = async (side: string, grants: number, body: () => Promise<void>): Promise<Sample> => {
      collect()
      const before = await server.counters()
      const cpu = process.cpuUsage()
      const start = now()
      await body()
      const ms = now() - start
      const used = process.cpuUsage(cpu)
      const after = await server.counters()
      const reached = after.refreshSucceeded - before.refreshSucceeded
      if (reached !== grants) throw new Error(`${side}: ${reached} grants at the server, ${grants} expected`)
      return {
        perSecond: (grants * 1000) / ms,
        cpuMs: (used.user + used.system) / 1000 / grants,
        serverCpuMs: (after.cpuMicros - before.cpuMicros) / 1000 / grants
      }
    }

    /** Ours: every session in `some` refreshed once through the supervisor's queue with `limit`. */
    const ours = (env: Fixtures.Environment<Fixtures.Services>, some: ReadonlyArray<string>, limit: number) =>
      env.runtime.runPromise(
        Effect.gen(function*() {
          // A fresh Sessions instance: an empty cache, as a restarted process (built outside the timing).
          const sessions = Context.get(yield* Layer.build(Layer.fresh(Sessions.layer)), Sessions.Sessions)
          // The supervisor's admission: at most `limit` refreshes at once, every session queued.
          const queue = yield* RefreshQueue.make({ limit, size: some.length })
          const all = Effect.gen(function*() {
            const done = yield* Effect.forEach(some, (id) =>
              Effect.gen(function*() {
                const finished = yield* Deferred.make<Sessions.RefreshOutcome, Sessions.SessionsError>()
                yield* queue.enter({
                  present: Effect.succeed(true),
                  onWaiting: Effect.void,
                  begin: Effect.succeed(true),
                  work: Effect.exit(sessions.refresh(id, { force: true })).pipe(Effect.flatMap((exit) => Deferred.done(finished, exit)))
                })
                return finished
              }))
            return yield* Effect.forEach(done, Deferred.await)
          })
          let outcomes: ReadonlyArray<Sessions.RefreshOutcome> = []
          const sample = yield* Effect.promise(() =>
            timed("ours", some.length, async () => {
              const stop = profile === undefined ? undefined : await profile.start()
              outcomes = await env.runtime.runPromise(all)
              await stop?.(`throughput-${env.medium}-${some.length}-c${limit}-ours`)
            })
          )
          const refreshed = outcomes.filter((o) => o._tag === "Refreshed").length
          if (refreshed !== some.length) {
            const tags = outcomes.map((o) => o._tag === "Failed" || o._tag === "NeedsReauth" ? `${o._tag}: ${o.reason}` : o._tag)
            throw new Error(`ours: ${refreshed} refreshed, ${some.length} expected (${[...new Set(tags)].join("; ")})`)
          }
          return sample
        }).pipe(Effect.scoped)
      )

    /**
     * The baselines: the same grants with plain oauth4webapi, a pool of
     * `limit` workers, tokens kept in memory; with `durable`, one crash-safe
     * write of the new tokens per grant into that directory.
     */
    const raw = (tokens: Array<string>, limit: number, durable?: { readonly directory: string; readonly key: Uint8Array }) =>
      timed(durable === undefined ? "raw" : "raw + durable write", tokens.length, async () => {
        let next = 0
        const worker = async () => {
          while (next < tokens.length) {
            const i = next++
            const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens[i]!, insecure)
            const body = await oauth.processRefreshTokenResponse(as, client, response)
            if (durable !== undefined) {
              const expiresAt = Math.floor(Date.now() / 1000) + (body.expires_in ?? 0)
              await durableWrite(durable.directory, `${i}.token`, durable.key, JSON.stringify({ ...body, expires_at: expiresAt }))
            }
            tokens[i] = body.refresh_token!
          }
        }
        await Promise.all(Array.from({ length: Math.min(limit, tokens.length) }, worker))
      })

    /** Rounds of one configuration, rotating which side goes first; the tokens travel between them. */
    const measure = async (env: Fixtures.Environment<Fixtures.Services>, count: number, limit: number): Promise<Point> => {
      const some = ids.slice(0, count)
      const samples = { ours: [] as Array<Sample>, raw: [] as Array<Sample>, durable: [] as Array<Sample> }
      const durableTarget = { directory: rawDirectory(env), key: env.key }
      const rawSide = (durable: boolean) => async () => {
        const records = await readTokens(env, some)
        const tokens = records.map((r) => Redacted.value(r.refreshToken!))
        const sample = await raw(tokens, limit, durable ? durableTarget : undefined)
        ;(durable ? samples.durable : samples.raw).push(sample)
        await writeRecords(env, records.map((r, i) => new TokenStore.SessionRecord({ ...r, refreshToken: Redacted.make(tokens[i]!) })))
      }
      const sides: ReadonlyArray<() => Promise<void>> = [
        async () => void samples.ours.push(await ours(env, some, limit)),
        rawSide(false),
        rawSide(true)
      ]
      for (let i = 0; i < rounds; i++) {
        for (let k = 0; k < sides.length; k++) await sides[(i + k) % sides.length]!()
      }
      const point: Point = {
        medium: env.medium,
        sessions: count,
        concurrency: limit,
        ours: median(samples.ours.map((s) => s.perSecond)),
        raw: median(samples.raw.map((s) => s.perSecond)),
        durable: median(samples.durable.map((s) => s.perSecond)),
        sides: { ours: sideOf(samples.ours), raw: sideOf(samples.raw), durable: sideOf(samples.durable) },
        load: load().averages[0] ?? 0
      }
      progress(
        `throughput: ${env.medium}, ${count} sessions, concurrency ${limit}: ours ${point.ours.toFixed(0)}/s (${
          point.sides.ours.cpuMs.toFixed(2)
        } ms CPU), raw ${point.raw.toFixed(0)}/s (${point.sides.raw.cpuMs.toFixed(2)} ms), raw + durable write ${
          point.durable.toFixed(0)
        }/s (${point.sides.durable.cpuMs.toFixed(2)} ms); server ${point.sides.raw.serverCpuMs.toFixed(2)} ms CPU per grant`
      )
      return point
    }

    const points: Array<Point> = []
    const sweep = async (env: Fixtures.Environment<Fixtures.Services>) => {
      // Warm-up (JIT on both processes, connections, the lock's SQLite), untimed.
      await ours(env, ids.slice(0, 32), 4)
      const warmRecords = await readTokens(env, ids.slice(0, 32))
      const warmTokens = warmRecords.map((r) => Redacted.value(r.refreshToken!))
      await raw(warmTokens, 4, { directory: rawDirectory(env), key: env.key })
      await writeRecords(env, warmRecords.map((r, i) => new TokenStore.SessionRecord({ ...r, refreshToken: Redacted.make(warmTokens[i]!) })))
      for (const c of concurrencies) points.push(await measure(env, sweepSessions, c))
      for (const n of sessionCounts) {
        // Already measured by the sweep.
        if (n === sweepSessions && new Set<number>(concurrencies).has(scalingConcurrency)) continue
        points.push(await measure(env, n, scalingConcurrency))
      }
    }

    progress("throughput: measuring on disk")
    await sweep(disk)
    progress("throughput: moving the sessions to tmpfs")
    const records = await readTokens(disk, ids)
    await writeRecords(memory, records)
    if (memory.medium === "memory") {
      progress("throughput: measuring on tmpfs")
      await sweep(memory)
    }
    lastPoints = points

    const ms = (x: number) => `${x.toFixed(2)} ms`
    const rounded = (side: Side) => side.rounds.map((r) => r.perSecond.toFixed(0)).join("/")
    return points.flatMap((p): Array<Row> => {
      const name = `refresh throughput, ${p.medium === "memory" ? "tmpfs" : "disk"}, ${p.sessions} sessions, concurrency ${p.concurrency}`
      const { ours, raw, durable } = p.sides
      const extra = { ...p }
      return [
        {
          name,
          ours: { value: p.ours, unit: "grants/s" },
          baseline: { value: p.raw, unit: "grants/s" },
          baselineName: "plain oauth4webapi refresh loop, same grants, same concurrency, rotated tokens kept in memory",
          note: `median of ${rounds} rounds; ours ${rounded(ours)}, raw ${rounded(raw)}; server in its own process, ${
            ms(raw.serverCpuMs)
          } CPU per grant; load ${p.load.toFixed(2)}; target ratio >= 0.9`,
          extra
        },
        {
          name: `${name}, vs raw + durable write`,
          ours: { value: p.ours, unit: "grants/s" },
          baseline: { value: p.durable, unit: "grants/s" },
          baselineName: "the same loop + one atomic write per refresh (AES-256-GCM seal, temp, fsync, rename, dir fsync; node:fs/promises)",
          note: `raw + durable write ${rounded(durable)}`
        },
        {
          name: `${name}, client CPU per refresh`,
          ours: { value: ours.cpuMs, unit: "ms CPU" },
          baseline: { value: raw.cpuMs, unit: "ms CPU" },
          baselineName: "the raw loop's process.cpuUsage() (user + system) per grant",
          note: `raw + durable write ${ms(durable.cpuMs)}; server ${ms(ours.serverCpuMs)} (ours) / ${ms(raw.serverCpuMs)} (raw) per grant`
        }
      ]
    })
  } finally {
    await disk.close()
    await memory.close()
    await server.close()
  }
}
