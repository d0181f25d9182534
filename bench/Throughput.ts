/**
 * Benchmark 5: background refresh throughput. N stored sessions, each its
 * own grant at a real authorization server (oidc-provider on 127.0.0.1 in
 * this process, refresh token rotation on: its CPU is part of both sides),
 * are all refreshed once, at most `c` at a time, for c = 1, 4, 16, 64.
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
 * Baseline: the same grants refreshed with plain oauth4webapi and the global
 * fetch by a pool of c workers, each grant keeping its own rotated refresh
 * token in memory (nothing persisted). Both sides refresh the same grants:
 * between rounds (untimed) the latest refresh tokens are handed over, from
 * the store to the raw loop and back, so one login per session serves both.
 *
 * Figure: refresh grants per second, median of the rounds. Run on a disk
 * store (fsync costs what it costs users) and on tmpfs (`/dev/shm`, fsync
 * free), so the cost of durability is visible. Then scaling: 50 sessions
 * beside the 200, at concurrency 16.
 *
 * oidc-provider's in-memory store is bounded (an LRU of 1000 entries) and
 * would evict grants mid-run: `ProviderStorage.ts` lifts the bound while
 * this benchmark runs.
 */
import { Context, Deferred, Effect, Layer, Redacted } from "effect"
import * as oauth from "oauth4webapi"
import * as RefreshQueue from "../src/internal/RefreshQueue.js"
import type * as SessionConfig from "../src/SessionConfig.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as OidcServer from "../test/support/OidcServer.js"
import * as Fixtures from "./Fixtures.js"
import * as ProviderStorage from "./ProviderStorage.js"
import { median, now, progress, type Row } from "./Measure.js"

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

/** One measured configuration: grants per second on each side. */
export interface Point {
  readonly medium: Fixtures.Medium
  readonly sessions: number
  readonly concurrency: number
  readonly ours: number
  readonly raw: number
  readonly oursRounds: ReadonlyArray<number>
  readonly rawRounds: ReadonlyArray<number>
}

/** The points of the last run, for the chart. */
export let lastPoints: ReadonlyArray<Point> = []

const providerName = (i: number) => `s${i}`

/** Runs the benchmark: its rows, or an error when a refresh did not happen. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("throughput: starting oidc-provider")
  // Before the server exists: its store must hold every grant (see ProviderStorage.ts).
  const restore = await ProviderStorage.unbounded()
  const server = await OidcServer.start({ accessTokenTtl: 300, refreshTokenTtl: 24 * 3600 })
  const total = Math.max(sweepSessions, ...sessionCounts)
  const providers: Array<SessionConfig.ProviderSettings> = Array.from({ length: total }, (_, i) => ({
    ...server.provider,
    name: providerName(i)
  }))
  const disk = await Fixtures.environment(providers, { medium: "disk" })
  const memory = await Fixtures.environment(providers, { medium: "memory" })
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
        yield* Effect.forEach(providers, (p) =>
          Effect.gen(function*() {
            let browser: Promise<number> | undefined
            yield* sessions.login(p.name, {
              onEvent: () => Effect.void,
              openBrowser: (url) => Effect.sync(() => void (browser = server.approve(url))),
              timeout: "30 seconds"
            })
            if (browser !== undefined) yield* Effect.promise(() => browser!)
          }), { concurrency: loginConcurrency, discard: true })
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

    /** Ours: every session in `some` refreshed once through the supervisor's queue with `limit`; grants per second. */
    const ours = (env: Fixtures.Environment<Fixtures.Services>, some: ReadonlyArray<string>, limit: number) =>
      env.runtime.runPromise(
        Effect.gen(function*() {
          // A fresh Sessions instance: an empty cache, as a restarted process (built outside the timing).
          const sessions = Context.get(yield* Layer.build(Layer.fresh(Sessions.layer)), Sessions.Sessions)
          // The supervisor's admission: at most `limit` refreshes at once, every session queued.
          const queue = yield* RefreshQueue.make({ limit, size: some.length })
          const before = server.counters().refreshSucceeded
          const start = now()
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
          const outcomes = yield* Effect.forEach(done, Deferred.await)
          const ms = now() - start
          const refreshed = outcomes.filter((o) => o._tag === "Refreshed").length
          const grants = server.counters().refreshSucceeded - before
          if (refreshed !== some.length || grants !== some.length) {
            const tags = outcomes.map((o) => o._tag === "Failed" || o._tag === "NeedsReauth" ? `${o._tag}: ${o.reason}` : o._tag)
            throw new Error(
              `ours: ${refreshed} refreshed, ${grants} grants at the server, ${some.length} expected (${[...new Set(tags)].join("; ")})`
            )
          }
          return (some.length * 1000) / ms
        }).pipe(Effect.scoped)
      )

    /** The baseline: the same grants with plain oauth4webapi, a pool of `limit` workers; grants per second. */
    const raw = async (tokens: Array<string>, limit: number) => {
      const before = server.counters().refreshSucceeded
      let next = 0
      const worker = async () => {
        while (next < tokens.length) {
          const i = next++
          const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens[i]!, insecure)
          const body = await oauth.processRefreshTokenResponse(as, client, response)
          tokens[i] = body.refresh_token!
        }
      }
      const start = now()
      await Promise.all(Array.from({ length: Math.min(limit, tokens.length) }, worker))
      const ms = now() - start
      const grants = server.counters().refreshSucceeded - before
      if (grants !== tokens.length) throw new Error(`raw: ${grants} grants at the server, ${tokens.length} expected`)
      return (tokens.length * 1000) / ms
    }

    /** Rounds of one configuration, alternating which side goes first; the tokens travel between them. */
    const measure = async (env: Fixtures.Environment<Fixtures.Services>, count: number, limit: number): Promise<Point> => {
      const some = ids.slice(0, count)
      const oursRounds: Array<number> = []
      const rawRounds: Array<number> = []
      const rawSide = async () => {
        const records = await readTokens(env, some)
        const tokens = records.map((r) => Redacted.value(r.refreshToken!))
        rawRounds.push(await raw(tokens, limit))
        await writeRecords(env, records.map((r, i) => new TokenStore.SessionRecord({ ...r, refreshToken: Redacted.make(tokens[i]!) })))
      }
      for (let i = 0; i < rounds; i++) {
        if (i % 2 === 0) {
          oursRounds.push(await ours(env, some, limit))
          await rawSide()
        } else {
          await rawSide()
          oursRounds.push(await ours(env, some, limit))
        }
      }
      const point: Point = {
        medium: env.medium,
        sessions: count,
        concurrency: limit,
        ours: median(oursRounds),
        raw: median(rawRounds),
        oursRounds,
        rawRounds
      }
      progress(
        `throughput: ${env.medium}, ${count} sessions, concurrency ${limit}: ours ${point.ours.toFixed(0)}/s, raw ${point.raw.toFixed(0)}/s`
      )
      return point
    }

    const points: Array<Point> = []
    const sweep = async (env: Fixtures.Environment<Fixtures.Services>) => {
      // Warm-up (JIT, connections, the lock's SQLite), untimed.
      await ours(env, ids.slice(0, 32), 4)
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

    const rows: Array<Row> = points.map((p) => ({
      name: `refresh throughput, ${p.medium === "memory" ? "tmpfs" : "disk"}, ${p.sessions} sessions, concurrency ${p.concurrency}`,
      ours: { value: p.ours, unit: "grants/s" },
      baseline: { value: p.raw, unit: "grants/s" },
      baselineName: "plain oauth4webapi refresh loop, same grants, same concurrency, rotated tokens kept in memory",
      note: `median of ${rounds} rounds; ours ${p.oursRounds.map((r) => r.toFixed(0)).join("/")}, raw ${
        p.rawRounds.map((r) => r.toFixed(0)).join("/")
      }; target ratio >= 0.9`,
      extra: { ...p }
    }))
    return rows
  } finally {
    await disk.close()
    await memory.close()
    await server.close()
    restore()
  }
}
