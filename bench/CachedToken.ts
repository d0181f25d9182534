/**
 * Benchmark 1: `Sessions.getAccessToken` when the token is cached, the call
 * applications make thousands of times a second.
 *
 * Measured two ways, because callers reach it two ways:
 * - inside one Effect (a generator loop of `yield* getAccessToken(...)`), what
 *   Effect applications pay per call;
 * - from a plain JS loop calling `runtime.runSync(getAccessToken(...))` on a
 *   `ManagedRuntime`, what a non-Effect embedder pays: a fiber per call.
 *
 * Baseline (the floor): a plain JS loop doing what the cached path must do at
 * least, one `Map.get` and a `Date.now()` comparison against the expiry.
 * Reference points measured in the same process explain the gap: the same
 * loops over `Effect.succeed` and over `Effect.clockWith` + `Map.get` (the
 * Effect floor of a clock-reading lookup), `runSync` of `Effect.sync`
 * (a fiber, nothing else), `Effect.repeat({ times })` (JSON only), and a
 * lookup that reads a Clock captured beforehand and returns a ready
 * `Effect.succeed` (what a hot path without a per-call fiber primitive costs).
 */
import { DateTime, Effect } from "effect"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import * as Fixtures from "./Fixtures.js"
import { medianOf, now, progress, type Row } from "./Measure.js"

/** Calls per timed run inside one Effect. */
const loopCalls = 1_000_000
/** Calls per timed run of `runSync` per call (a fiber each: slower, so fewer). */
const runSyncCalls = 200_000
/** Iterations of the `Effect.repeat` reference (it costs microseconds each). */
const repeatCalls = 20_000
/** Timed runs per figure; the median is reported. */
const runs = 5

const provider = "bench"

/** Nanoseconds per call of `f`, which makes `calls` calls: median of {@link runs} runs after one warm-up run. */
const nsPerCall = async (calls: number, f: () => void): Promise<number> => {
  f()
  return medianOf(runs, () => {
    const start = now()
    f()
    return ((now() - start) * 1e6) / calls
  })
}

/** Runs the benchmark: its rows. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  progress("cached getAccessToken: setting up")
  const env = await Fixtures.environment([Fixtures.offlineProvider(provider)])
  try {
    const { runtime } = env
    const { sessions, stored } = await runtime.runPromise(
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const stored = yield* Fixtures.record({ provider, expiresInSeconds: 3600 })
        yield* store.put(stored)
        const sessions = yield* Sessions.Sessions
        // The first call selects the session from the store and caches it: every later call is the hot path.
        yield* sessions.getAccessToken(provider)
        return { sessions, stored }
      })
    )

    // The floor: what a hand-written cache does per call.
    const expiresAtMs = stored.expiresAt === undefined ? Infinity : DateTime.toEpochMillis(stored.expiresAt)
    const floorMap = new Map([[provider, { token: stored.accessToken!, expiresAtMs }]])
    const minTtlMs = 60_000
    let hits = 0
    const floorLoop = (calls: number) => () => {
      for (let i = 0; i < calls; i++) {
        const entry = floorMap.get(provider)
        if (entry !== undefined && entry.expiresAtMs - Date.now() >= minTtlMs) hits++
      }
    }

    const effectLoop = (calls: number, call: () => Effect.Effect<unknown, unknown>) => () =>
      runtime.runSync(
        Effect.gen(function*() {
          for (let i = 0; i < calls; i++) yield* call()
        }).pipe(Effect.orDie)
      )
    const perCallLoop = (calls: number, call: () => Effect.Effect<unknown, unknown>) => () => {
      for (let i = 0; i < calls; i++) runtime.runSync(call())
    }
    const token = stored.accessToken!
    const succeed = () => Effect.succeed(token)
    const clockLookup = () =>
      Effect.clockWith((clock) => {
        const entry = floorMap.get(provider)
        return entry !== undefined && entry.expiresAtMs - clock.currentTimeMillisUnsafe() >= minTtlMs
          ? Effect.succeed(entry.token)
          : Effect.die("expired")
      })
    // What the hot path would cost with the Clock read once when the layer is built, and the cached
    // token kept as a ready `Effect.succeed` (an Exit): no fiber primitive per call (see docs/performance.md).
    const clock = runtime.runSync(Effect.clockWith((c) => Effect.succeed(c)))
    const exitMap = new Map([[provider, { exit: Effect.succeed(token), expiresAtMs }]])
    const capturedLookup = () => {
      const entry = exitMap.get(provider)
      return entry !== undefined && entry.expiresAtMs - clock.currentTimeMillisUnsafe() >= minTtlMs
        ? entry.exit
        : Effect.die("expired")
    }
    const get = () => sessions.getAccessToken(provider)

    progress("cached getAccessToken: measuring")
    // The figures that need the quietest process run first.
    const floorNs = await nsPerCall(loopCalls, floorLoop(loopCalls))
    const loopNs = await nsPerCall(loopCalls, effectLoop(loopCalls, get))
    const runSyncNs = await nsPerCall(runSyncCalls, perCallLoop(runSyncCalls, get))
    const floorAgainNs = await nsPerCall(loopCalls, floorLoop(loopCalls))
    const succeedLoopNs = await nsPerCall(loopCalls, effectLoop(loopCalls, succeed))
    const clockLoopNs = await nsPerCall(loopCalls, effectLoop(loopCalls, clockLookup))
    const capturedLoopNs = await nsPerCall(loopCalls, effectLoop(loopCalls, capturedLookup))
    const runSyncFiberNs = await nsPerCall(runSyncCalls, perCallLoop(runSyncCalls, () => Effect.sync(() => token)))
    const runSyncClockNs = await nsPerCall(runSyncCalls, perCallLoop(runSyncCalls, clockLookup))
    const runSyncCapturedNs = await nsPerCall(runSyncCalls, perCallLoop(runSyncCalls, capturedLookup))
    const repeatNs = await nsPerCall(
      repeatCalls,
      () => runtime.runSync(Effect.repeat(get(), { times: repeatCalls - 1 }).pipe(Effect.orDie))
    )
    if (hits === 0) throw new Error("the floor loop never hit: the benchmark is broken")
    // The floor is measured before and after the Effect loops; the lower is the floor.
    const floor = Math.min(floorNs, floorAgainNs)

    return [
      {
        name: "getAccessToken cached, in an Effect loop",
        ours: { value: loopNs, unit: "ns/call" },
        baseline: { value: floor, unit: "ns/call" },
        baselineName: "Map.get + Date.now() compare (plain JS loop)",
        note: `same loop over: Effect.succeed ${succeedLoopNs.toFixed(0)} ns, clockWith+Map.get ${
          clockLoopNs.toFixed(0)
        } ns, captured Clock+cached Exit ${capturedLoopNs.toFixed(0)} ns`,
        extra: { succeedLoopNs, clockLoopNs, capturedLoopNs, repeatNs, floorNs, floorAgainNs, calls: loopCalls, runs }
      },
      {
        name: "getAccessToken cached, runtime.runSync per call",
        ours: { value: runSyncNs, unit: "ns/call" },
        baseline: { value: floor, unit: "ns/call" },
        baselineName: "Map.get + Date.now() compare (plain JS loop)",
        note: `runSync of: Effect.sync ${runSyncFiberNs.toFixed(0)} ns, clockWith+Map.get ${
          runSyncClockNs.toFixed(0)
        } ns, captured Clock+cached Exit ${runSyncCapturedNs.toFixed(0)} ns`,
        extra: { runSyncFiberNs, runSyncClockNs, runSyncCapturedNs, calls: runSyncCalls, runs }
      }
    ]
  } finally {
    await env.close()
  }
}
