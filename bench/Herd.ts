/**
 * Benchmark 2: the refresh herd. A process starts with a stored session
 * whose access token has expired, and 1000 (then 10,000) fibers ask for a token at once.
 * What must hold: one refresh reaches the server (the server's own counter
 * says so; the benchmark fails otherwise), and every caller gets the same
 * new token. What is measured: the wall time from the first call to the
 * last answer.
 *
 * Against a real authorization server (oidc-provider on 127.0.0.1, refresh
 * token rotation on, in this process: its CPU is part of every figure) and
 * the real stack: encrypted file store, SQLite file lock, OAuth client over
 * undici. Each run expires the stored token and builds a fresh Sessions
 * instance (an empty cache: a restarted process), outside the timing.
 *
 * Baseline: one plain refresh grant with oauth4webapi and the global fetch,
 * timed alone in the same process against the same server (discovery done
 * beforehand). Also timed: one refresh through our `OAuthClient.refresh`
 * (the same grant through the Effect HttpClient, no lock, no store), and a
 * herd of one caller, which separate the cost of the protocol client, of
 * the lock and the persisted write, and of the thousand callers.
 */
import { Context, DateTime, Deferred, Duration, Effect, Layer, Redacted } from "effect"
import * as oauth from "oauth4webapi"
import { targetOf } from "../src/internal/RefreshRecords.js"
import * as OAuthClient from "../src/OAuthClient.js"
import * as RefreshLock from "../src/RefreshLock.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as OidcServer from "../test/support/OidcServer.js"
import * as Fixtures from "./Fixtures.js"
import { median, now, progress, type Row } from "./Measure.js"
import { loginApproved } from "../test/support/Login.js"

/** Concurrent callers of a herd. */
const callers = 1000
/** Concurrent callers of the large herd. */
const largeCallers = 10_000
/** Untimed herds first: the first ones run before the JIT has compiled the refresh path. */
const herdWarmups = 3
/** Timed herds (and herds of one); the median is reported. */
const herdRuns = 7
/** Timed single refreshes of each kind. */
const refreshRuns = 11

const provider = "test"
/** A second grant of the same client, refreshed by the baselines only. */
const rawProvider = "raw"

/** Wall time of one effect, in ms. */
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = now()
    const value = yield* effect
    return { ms: now() - start, value }
  })

/** Runs the benchmark: its rows, or an error when a herd did not cause exactly one refresh. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("herd: starting oidc-provider")
  const server = await OidcServer.start({ accessTokenTtl: 300 })
  const env = await Fixtures.environment([server.provider, { ...server.provider, name: rawProvider }])
  try {
    const { runtime } = env

    const login = (name: string) =>
      Effect.flatMap(Sessions.Sessions, (sessions) => loginApproved(sessions, name, server.approve))

    /** Makes the stored access token of `test` look expired, as after a restart some time later. */
    const expire = Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      const record = yield* store.get(provider)
      yield* store.put(new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) }))
    })

    /** A fresh Sessions instance over the same services: an empty cache. */
    const restarted = Effect.map(Layer.build(Layer.fresh(Sessions.layer)), Context.get(Sessions.Sessions))

    const herd = (n: number) =>
      Effect.gen(function*() {
        yield* expire
        const sessions = yield* restarted
        const before = server.counters().refreshSucceeded
        const { ms, value: tokens } = yield* timed(
          Effect.forEach(
            Array.from({ length: n }),
            () => Effect.map(sessions.getAccessToken(provider), Redacted.value),
            { concurrency: "unbounded" }
          )
        )
        const refreshes = server.counters().refreshSucceeded - before
        const distinct = new Set(tokens).size
        if (refreshes !== 1 || distinct !== 1) {
          throw new Error(`herd of ${n}: ${refreshes} refreshes reached the server and ${distinct} tokens were handed out (1 and 1 expected)`)
        }
        return { ms, refreshes }
      }).pipe(Effect.scoped)

    progress("herd: logging in")
    await runtime.runPromise(Effect.andThen(login(provider), login(rawProvider)))

    // The baselines refresh the second grant in a chain: each refresh rotates the token the next one sends.
    const issuer = new URL(server.issuer)
    const insecure = { [oauth.allowInsecureRequests]: true }
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
    const client: oauth.Client = { client_id: server.clientId }
    const rawRecord = await runtime.runPromise(
      Effect.gen(function*() {
        return yield* (yield* TokenStore.TokenStore).get(rawProvider)
      })
    )
    let refreshToken = Redacted.value(rawRecord.refreshToken!)
    const target = targetOf(rawRecord, server.provider)

    const rawRefresh = Effect.promise(async () => {
      const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, insecure)
      const body = await oauth.processRefreshTokenResponse(as, client, response)
      refreshToken = body.refresh_token!
    })
    const ourRefresh = Effect.gen(function*() {
      const client = yield* OAuthClient.OAuthClient
      const response = yield* client.refresh({ provider: target, refreshToken: Redacted.make(refreshToken), timeout: Duration.seconds(30) })
      refreshToken = Redacted.value(response.refresh_token!)
    })

    /** The parts of a one-caller refresh that are not the grant: the lock, a read and a persisted write. */
    const parts = Effect.gen(function*() {
      const lock = yield* RefreshLock.RefreshLock
      const store = yield* TokenStore.TokenStore
      const lockMs = (yield* timed(lock.withLock(provider, Effect.void))).ms
      const { ms: getMs, value: record } = yield* timed(store.get(provider))
      const putMs = (yield* timed(store.put(record))).ms
      return { lockMs, getMs, putMs }
    })

    /**
     * The Effect floor of a herd: `callers` fibers awaiting one Deferred, plain
     * or each through a traced `Effect.fn` (a span and a call-site stack per call).
     */
    const traced = Effect.fn("Bench.joiner")(function*(wait: Effect.Effect<number>) {
      return yield* wait
    })
    const joiners = (wrap: (wait: Effect.Effect<number>) => Effect.Effect<number>) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<number>()
        return (yield* timed(Effect.andThen(
          Effect.forkChild(Effect.andThen(Effect.yieldNow, Deferred.succeed(done, 1))),
          Effect.forEach(Array.from({ length: callers }), () => wrap(Deferred.await(done)), { concurrency: "unbounded" })
        ))).ms
      })

    progress("herd: measuring")
    const measured = await runtime.runPromise(
      Effect.gen(function*() {
        // Warm-up: connections, JIT, the lock's SQLite module, the first discovery.
        yield* rawRefresh
        yield* ourRefresh
        const cold: Array<number> = []
        for (let i = 0; i < herdWarmups; i++) cold.push((yield* herd(callers)).ms)
        const largeCold = (yield* herd(largeCallers)).ms
        const raw: Array<number> = []
        const client: Array<number> = []
        for (let i = 0; i < refreshRuns; i++) {
          // Alternating which goes first keeps drift (GC, server caches) from favouring one.
          if (i % 2 === 0) {
            raw.push((yield* timed(rawRefresh)).ms)
            client.push((yield* timed(ourRefresh)).ms)
          } else {
            client.push((yield* timed(ourRefresh)).ms)
            raw.push((yield* timed(rawRefresh)).ms)
          }
        }
        const one: Array<number> = []
        const many: Array<number> = []
        const refreshes: Array<number> = []
        const large: Array<number> = []
        const largeRefreshes: Array<number> = []
        const lock: Array<number> = []
        const get: Array<number> = []
        const put: Array<number> = []
        for (let i = 0; i < herdRuns; i++) {
          one.push((yield* herd(1)).ms)
          const h = yield* herd(callers)
          many.push(h.ms)
          refreshes.push(h.refreshes)
          const l = yield* herd(largeCallers)
          large.push(l.ms)
          largeRefreshes.push(l.refreshes)
          const p = yield* parts
          lock.push(p.lockMs)
          get.push(p.getMs)
          put.push(p.putMs)
        }
        const plainJoin: Array<number> = []
        const tracedJoin: Array<number> = []
        for (let i = 0; i < refreshRuns; i++) {
          plainJoin.push(yield* joiners((wait) => wait))
          tracedJoin.push(yield* joiners(traced))
        }
        return { raw, client, cold, one, many, refreshes, large, largeCold, largeRefreshes, lock, get, put, plainJoin, tracedJoin }
      })
    )

    const raw = median(measured.raw)
    const baselineName = "one refresh grant, plain oauth4webapi + fetch"
    const counters = server.counters()
    return [
      {
        name: "one refresh, OAuthClient.refresh",
        ours: { value: median(measured.client), unit: "ms" },
        baseline: { value: raw, unit: "ms" },
        baselineName,
        note: `median of ${refreshRuns}, alternating with the baseline`,
        extra: { clientMs: measured.client, rawMs: measured.raw }
      },
      {
        name: "getAccessToken, expired, 1 caller",
        ours: { value: median(measured.one), unit: "ms" },
        baseline: { value: raw, unit: "ms" },
        baselineName,
        note: `alone: lock ${median(measured.lock).toFixed(1)} ms, store.get ${median(measured.get).toFixed(1)} ms, store.put ${
          median(measured.put).toFixed(1)
        } ms (fsynced)`,
        extra: { oneMs: measured.one, lockMs: measured.lock, getMs: measured.get, putMs: measured.put }
      },
      {
        name: `getAccessToken, expired, ${callers} callers`,
        ours: { value: median(measured.many), unit: "ms" },
        baseline: { value: raw, unit: "ms" },
        baselineName,
        note: `server refreshes per herd: ${measured.refreshes.join(",")} (1 token to all); first herds ${
          measured.cold.map((ms) => ms.toFixed(0)).join("/")
        } ms; ${callers} fibers joining a Deferred ${median(measured.plainJoin).toFixed(1)} ms, through Effect.fn ${
          median(measured.tracedJoin).toFixed(1)
        } ms`,
        extra: {
          herdMs: measured.many,
          coldHerdMs: measured.cold,
          refreshesPerHerd: measured.refreshes,
          plainJoinMs: measured.plainJoin,
          tracedJoinMs: measured.tracedJoin,
          counters
        }
      },
      {
        name: `getAccessToken, expired, ${largeCallers.toLocaleString("en")} callers`,
        ours: { value: median(measured.large), unit: "ms" },
        baseline: { value: raw, unit: "ms" },
        baselineName,
        note: `server refreshes per herd: ${measured.largeRefreshes.join(",")} (1 token to all); first herd ${
          measured.largeCold.toFixed(0)
        } ms`,
        extra: { herdMs: measured.large, coldHerdMs: measured.largeCold, refreshesPerHerd: measured.largeRefreshes }
      }
    ]
  } finally {
    await env.close()
    await server.close()
  }
}
