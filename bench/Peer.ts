/**
 * Benchmark: cached `getAccessToken` against a peer, `google-auth-library`
 * (11.3.4, a dev dependency): an `OAuth2Client` holding an access token that
 * expires far in the future, `await client.getAccessToken()` per call. Its
 * cached path is an `async` method: a clock comparison, then a resolved
 * Promise.
 *
 * Ours, measured the comparable way: `await client.getAccessToken(provider)`
 * per call on the Promise client (`src/Client.ts`), which is what a
 * non-Effect program calls: a cached token resolves without a fiber. Then
 * `await runtime.runPromise(sessions.getAccessToken(provider))` per call on
 * a `ManagedRuntime` (a fiber per call, and the Promise's resolution), what
 * a program that runs the Effect itself pays. Also the in-Effect loop of the cached-token
 * benchmark (`yield*` in one generator, no Promise per call), which is what
 * an Effect application pays but is not the same shape of call as the peer's.
 *
 * A third reference, the floor of the Promise shape: an `async` function doing
 * `Map.get` + `Date.now()` compare, awaited per call.
 *
 * Every loop awaits each call before the next, as a request handler does.
 */
import { Effect, Redacted } from "effect"
import { OAuth2Client } from "google-auth-library"
import * as Client from "../src/Client.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as Fixtures from "./Fixtures.js"
import { medianOf, now, progress, type Row } from "./Measure.js"

/** Calls per timed run of a Promise-per-call loop. */
const promiseCalls = 100_000
/** Calls per timed run of the in-Effect loop. */
const loopCalls = 1_000_000
/** Timed runs per figure; the median is reported. */
const runs = 5

const provider = "bench"

/** Nanoseconds per call of `f` making `calls` calls: median of {@link runs} runs after a warm-up run. */
const nsPerCall = async (calls: number, f: () => Promise<void> | void): Promise<number> => {
  await f()
  return medianOf(runs, async () => {
    const start = now()
    await f()
    return ((now() - start) * 1e6) / calls
  })
}

/** Runs the benchmark: its rows. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("peer: setting up")
  const env = await Fixtures.environment([Fixtures.offlineProvider(provider)])
  try {
    const { runtime } = env
    const { sessions, token } = await runtime.runPromise(
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const stored = yield* Fixtures.record({ provider, expiresInSeconds: 3600 })
        yield* store.put(stored)
        const sessions = yield* Sessions.Sessions
        // The first call selects the session from the store and caches it.
        return { sessions, token: yield* sessions.getAccessToken(provider) }
      })
    )

    const google = new OAuth2Client({ clientId: "bench-client" })
    google.setCredentials({
      access_token: "ya29.bench-token",
      token_type: "Bearer",
      expiry_date: Date.now() + 10 * 365 * 24 * 3600 * 1000
    })
    let googleHits = 0
    const googleLoop = async () => {
      for (let i = 0; i < promiseCalls; i++) {
        const r = await google.getAccessToken()
        if (r.token !== undefined && r.token !== null) googleHits++
      }
    }

    let ourHits = 0
    const get = sessions.getAccessToken(provider)
    const promiseLoop = async () => {
      for (let i = 0; i < promiseCalls; i++) {
        if ((await runtime.runPromise(get)) === token) ourHits++
      }
    }
    const client = Client.make(runtime)
    const plain = Redacted.value(token)
    let clientHits = 0
    const clientLoop = async () => {
      for (let i = 0; i < promiseCalls; i++) {
        if ((await client.getAccessToken(provider)) === plain) clientHits++
      }
    }
    const effectLoop = () =>
      runtime.runSync(
        Effect.gen(function*() {
          for (let i = 0; i < loopCalls; i++) {
            if ((yield* sessions.getAccessToken(provider)) === token) ourHits++
          }
        }).pipe(Effect.orDie)
      )

    const floorMap = new Map([[provider, { token, expiresAtMs: Date.now() + 3600_000 }]])
    const asyncFloor = async (name: string) => {
      const entry = floorMap.get(name)
      return entry !== undefined && entry.expiresAtMs - Date.now() >= 60_000 ? entry.token : undefined
    }
    let floorHits = 0
    const floorLoop = async () => {
      for (let i = 0; i < promiseCalls; i++) {
        if ((await asyncFloor(provider)) !== undefined) floorHits++
      }
    }

    progress("peer: measuring")
    // Alternating order across the two Promise figures, so that JIT and GC drift favour neither.
    const googleNs = await nsPerCall(promiseCalls, googleLoop)
    const clientNs = await nsPerCall(promiseCalls, clientLoop)
    const promiseNs = await nsPerCall(promiseCalls, promiseLoop)
    const googleAgainNs = await nsPerCall(promiseCalls, googleLoop)
    const promiseAgainNs = await nsPerCall(promiseCalls, promiseLoop)
    const clientAgainNs = await nsPerCall(promiseCalls, clientLoop)
    const floorNs = await nsPerCall(promiseCalls, floorLoop)
    const loopNs = await nsPerCall(loopCalls, effectLoop)
    if (googleHits === 0 || ourHits === 0 || floorHits === 0 || clientHits === 0) throw new Error("a loop never got a token: the benchmark is broken")
    const peerNs = Math.min(googleNs, googleAgainNs)
    const ours = Math.min(promiseNs, promiseAgainNs)

    const baselineName = "google-auth-library 11.3.4 OAuth2Client.getAccessToken(), cached, awaited per call"
    const clientBest = Math.min(clientNs, clientAgainNs)
    return [
      {
        name: "getAccessToken cached, Promise client per call",
        ours: { value: clientBest, unit: "ns/call" },
        baseline: { value: peerNs, unit: "ns/call" },
        baselineName,
        note: `apples to apples: an awaited Promise per call each side; async Map.get+Date.now() floor ${floorNs.toFixed(0)} ns`,
        extra: { clientNs, clientAgainNs, googleNs, googleAgainNs, floorNs, calls: promiseCalls, runs }
      },
      {
        name: "getAccessToken cached, runtime.runPromise per call",
        ours: { value: ours, unit: "ns/call" },
        baseline: { value: peerNs, unit: "ns/call" },
        baselineName,
        note: "a fiber per call: what a program that runs the Effect itself pays",
        extra: { promiseNs, promiseAgainNs, googleNs, googleAgainNs, floorNs, calls: promiseCalls, runs }
      },
      {
        name: "getAccessToken cached, in an Effect loop (vs peer)",
        ours: { value: loopNs, unit: "ns/call" },
        baseline: { value: peerNs, unit: "ns/call" },
        baselineName,
        note: "not the same shape: no Promise per call on our side (what an Effect application pays)",
        extra: { loopNs, calls: loopCalls, runs }
      }
    ]
  } finally {
    await env.close()
  }
}
