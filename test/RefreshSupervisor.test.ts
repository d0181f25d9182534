import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Exit, Latch, Option, Ref, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as RefreshSupervisor from "../src/RefreshSupervisor.js"
import * as SessionConfig from "../src/SessionConfig.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import { UserContext } from "../src/UserContext.js"
import { sampleRecord } from "./support/TokenStoreConformance.js"
import * as Spans from "./support/Spans.js"

const T0 = 1_900_000_000_000
const minutes = (n: number) => n * 60_000
const at = (ms: number) => DateTime.makeUnsafe(ms)

/** A session of its own provider, expiring `expiresInMinutes` after T0. */
const session = (n: number, expiresInMinutes: number, overrides: Partial<ConstructorParameters<typeof TokenStore.SessionRecord>[0]> = {}) =>
  sampleRecord(n, { id: `s-${n}`, provider: `p-${n}`, expiresAt: at(T0 + minutes(expiresInMinutes)), ...overrides })

type Script = (id: string, call: number) => Sessions.RefreshOutcome | "die"

/**
 * A fake Sessions service: records every refresh, may hold it on a latch, and
 * answers from a script. `Refreshed` stores a new expiry `lifetime` from now,
 * as the real service would.
 */
const makeFake = (store: TokenStore.Shape, options: {
  readonly script?: Script
  readonly lifetime?: Duration.Duration
  readonly gate?: Latch.Latch
} = {}) =>
  Effect.gen(function*() {
    const calls = yield* Ref.make<ReadonlyArray<{ readonly id: string; readonly at: number; readonly force: boolean }>>([])
    const active = yield* Ref.make(0)
    const maxActive = yield* Ref.make(0)
    const lifetime = options.lifetime ?? Duration.minutes(60)
    const refresh = (id: string, o?: { readonly force?: boolean | undefined }) =>
      Effect.gen(function*() {
        const now = DateTime.toEpochMillis(yield* DateTime.now)
        const n = yield* Ref.modify(calls, (cs) => [cs.filter((c) => c.id === id).length, [...cs, { id, at: now, force: o?.force ?? false }]])
        const running = yield* Ref.updateAndGet(active, (a) => a + 1)
        yield* Ref.update(maxActive, (m) => Math.max(m, running))
        if (options.gate !== undefined) yield* options.gate.await
        yield* Ref.update(active, (a) => a - 1)
        const outcome = options.script?.(id, n) ?? { _tag: "Refreshed", rotated: true, generation: n + 1 }
        if (outcome === "die") return yield* Effect.die(new Error("fake refresh blew up"))
        if (outcome._tag === "Refreshed") {
          const done = DateTime.toEpochMillis(yield* DateTime.now)
          const r = yield* Effect.orDie(store.get(id))
          yield* Effect.orDie(store.put(
            new TokenStore.SessionRecord({
              ...r,
              expiresAt: at(done + Duration.toMillis(lifetime)),
              generation: r.generation + 1,
              lastRefreshAt: at(done),
              updatedAt: at(done)
            })
          ))
        }
        return outcome
      })
    const sessions = Sessions.Sessions.of({
      refresh,
      getAccessToken: () => Effect.die("not used"),
      login: () => Effect.die("not used"),
      logout: () => Effect.die("not used")
    })
    return { sessions, calls, maxActive }
  })

/** Lets forked fibers run after the clock moved. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

type Settings = SessionConfig.Settings["tokenRefresh"]

const start = (
  store: TokenStore.Shape,
  sessions: Sessions.Shape,
  refresh: Partial<Settings> = {}
) =>
  RefreshSupervisor.make({ cleanup: false }).pipe(
    Effect.provideService(TokenStore.TokenStore, store),
    Effect.provideService(Sessions.Sessions, sessions),
    Effect.provide(SessionConfig.layerWith((s) => ({ ...s, tokenRefresh: { ...s.tokenRefresh, ...refresh } }))),
    Effect.tap(() => settle)
  )


const advance = (ms: number) => TestClock.adjust(Duration.millis(ms)).pipe(Effect.andThen(settle))

const statusOf = (supervisor: RefreshSupervisor.Shape, id: string) =>
  Effect.map(supervisor.status, (s) => s.sessions.find((x) => x.id === id))

const window = Duration.toMillis(RefreshSupervisor.jitterWindow(Duration.minutes(15)))

describe("RefreshSupervisor", () => {
  it.effect("refreshes at expires_at - threshold (earlier by at most the jitter window), then again from the new expiry", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 60))
      const fake = yield* makeFake(store)
      const supervisor = yield* start(store, fake.sessions)
      yield* settle

      const planned = yield* statusOf(supervisor, "s-1")
      const due = T0 + minutes(45)
      const plannedAt = DateTime.toEpochMillis(Option.getOrThrow(planned!.nextRefreshAt))
      assert.isTrue(plannedAt >= due - window && plannedAt <= due, `planned ${plannedAt - T0} ms after start`)

      yield* advance(due - window - 1 - T0)
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 0, "not before the jitter window opens")
      yield* advance(window + 1)
      const [first] = yield* Ref.get(fake.calls)
      assert.isDefined(first)
      assert.strictEqual(first!.at, plannedAt, "fired when planned")
      assert.isTrue(first!.force, "the supervisor decided it is due")

      const after = (yield* statusOf(supervisor, "s-1"))!
      assert.deepStrictEqual(after.lastOutcome, Option.some("Refreshed"))
      assert.deepStrictEqual(after.lastRefreshAt, Option.some(at(first!.at)))
      const next = DateTime.toEpochMillis(Option.getOrThrow(after.nextRefreshAt))
      const nextDue = first!.at + minutes(45)
      assert.isTrue(next >= nextDue - window && next <= nextDue, "rescheduled from the new expiry")

      const clock = () => Effect.map(DateTime.now, DateTime.toEpochMillis)
      yield* advance(next - (yield* clock()) - 1)
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 1)
      yield* advance(1)
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 2, "the second refresh came from the new expiry")
    }))

  it.effect("its refresh span names the session by provider and fingerprint, never by id", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 60))
      const fake = yield* makeFake(store)
      const { spans, tracer } = Spans.recording()
      const namespace = "tester@testhost:1000"
      yield* start(store, fake.sessions).pipe(
        Effect.provideService(UserContext, UserContext.of({
          username: "tester",
          uid: 1000,
          home: "/home/tester",
          hostname: "testhost",
          principal: Option.none(),
          namespace,
          sessionDirectory: "/home/tester/.magictunnel/sessions",
          storageDirectory: "/home/tester/.magictunnel/sessions/ns"
        })),
        Effect.withTracer(tracer)
      )
      yield* advance(minutes(46))
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 1)
      const refresh = spans.find((s) => s.name === "RefreshSupervisor.refresh")
      assert.isDefined(refresh)
      const attributes = Object.fromEntries(refresh!.attributes)
      assert.strictEqual(attributes["session.provider"], "p-1")
      assert.strictEqual(attributes["session.fingerprint"], TokenStore.fingerprint(namespace, "s-1"))
      assert.notInclude(JSON.stringify(attributes), "s-1")
    }))

  it.effect("jitter spreads sessions issued together, always inside the window and never later than the due time", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      for (let n = 1; n <= 60; n++) yield* store.put(session(n, 60))
      const fake = yield* makeFake(store)
      const supervisor = yield* start(store, fake.sessions, { concurrentRefreshLimit: 60 })
      yield* settle
      const due = T0 + minutes(45)
      const planned = (yield* supervisor.status).sessions.map((s) => DateTime.toEpochMillis(Option.getOrThrow(s.nextRefreshAt)))
      assert.strictEqual(planned.length, 60)
      for (const p of planned) assert.isTrue(p >= due - window && p <= due)
      assert.isTrue(new Set(planned).size > 50, "spread, not one instant")
      assert.isTrue(Math.max(...planned) - Math.min(...planned) > window / 2, "spread over the window")

      yield* advance(minutes(45))
      const calls = yield* Ref.get(fake.calls)
      assert.strictEqual(calls.length, 60)
      for (const c of calls) assert.isTrue(c.at >= due - window && c.at <= due)
    }))

  it.effect("does not schedule sessions without refresh token, without expiry, needing re-auth or corrupted", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const memory = yield* TokenStore.makeMemory
      yield* memory.put(session(1, 60, { refreshToken: undefined }))
      yield* memory.put(session(2, 60, { expiresAt: undefined }))
      yield* memory.put(session(3, 60, { state: "needs_reauth", accessToken: undefined, refreshToken: undefined }))
      yield* memory.put(session(4, 60))
      const corrupted: TokenStore.SessionMetadata = {
        ...TokenStore.metadataOf(session(5, 60), "memory"),
        state: "corrupted"
      }
      const store: TokenStore.Shape = {
        ...memory,
        list: Effect.map(memory.list, (ms) => [...ms, corrupted]),
        get: (id) =>
          id === "s-5"
            ? Effect.fail(new TokenStore.TokenStoreError({ backend: "memory", operation: "get", sessionId: id, reason: { _tag: "Corrupted", detail: "bad tag" } }))
            : memory.get(id)
      }
      const fake = yield* makeFake(store)
      const supervisor = yield* start(store, fake.sessions)
      yield* settle
      const status = yield* supervisor.status
      assert.deepStrictEqual(status.sessions.map((s) => s.id), ["s-1", "s-2", "s-3", "s-4", "s-5"])
      for (const s of status.sessions) {
        assert.strictEqual(Option.isSome(s.nextRefreshAt), s.id === "s-4", s.id)
      }
      yield* advance(minutes(120))
      assert.deepStrictEqual([...new Set((yield* Ref.get(fake.calls)).map((c) => c.id))], ["s-4"])
    }))

  it.effect("never runs more than concurrent_refresh_limit at once; the rest wait in the queue", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      for (let n = 1; n <= 20; n++) yield* store.put(session(n, 10)) // inside the threshold: due now
      const gate = yield* Latch.make(false)
      const fake = yield* makeFake(store, { gate })
      const supervisor = yield* start(store, fake.sessions, { concurrentRefreshLimit: 5 })
      yield* advance(0)
      const busy = yield* supervisor.status
      assert.strictEqual(busy.inFlight, 5)
      assert.strictEqual(busy.queueDepth, 15)
      assert.strictEqual(busy.overflowCount, 0)
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 5)
      yield* gate.open
      yield* settle
      const calls = yield* Ref.get(fake.calls)
      assert.strictEqual(calls.length, 20)
      assert.strictEqual(new Set(calls.map((c) => c.id)).size, 20)
      assert.strictEqual(yield* Ref.get(fake.maxActive), 5)
      const idle = yield* supervisor.status
      assert.strictEqual(idle.inFlight, 0)
      assert.strictEqual(idle.queueDepth, 0)
    }))

  it.effect("a full queue is reported and its overflow retried later: none dropped, none refreshed twice", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      for (let n = 1; n <= 6; n++) yield* store.put(session(n, 5))
      const gate = yield* Latch.make(false)
      const fake = yield* makeFake(store, { gate })
      const supervisor = yield* start(store, fake.sessions, { concurrentRefreshLimit: 1, refreshQueueSize: 2 })
      yield* advance(0)
      const full = yield* supervisor.status
      assert.strictEqual(full.inFlight, 1)
      assert.strictEqual(full.queueDepth, 2)
      assert.isAtLeast(full.overflowCount, 3, "three sessions found no place")
      const waitingLater = full.sessions.filter((s) =>
        Option.isSome(s.nextRefreshAt) && DateTime.toEpochMillis(s.nextRefreshAt.value) === T0 + Duration.toMillis(RefreshSupervisor.overflowRetryDelay)
      )
      assert.strictEqual(waitingLater.length, 3, "the turned-away ones show when they ask again")

      yield* gate.open
      yield* settle
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 3, "the overflow waits for its retry")
      yield* advance(Duration.toMillis(RefreshSupervisor.overflowRetryDelay) * 1.2)
      const calls = yield* Ref.get(fake.calls)
      assert.deepStrictEqual(calls.map((c) => c.id).sort(), ["s-1", "s-2", "s-3", "s-4", "s-5", "s-6"])
      assert.strictEqual(yield* Ref.get(fake.maxActive), 1)
    }))

  it.effect("the safety sweep picks up sessions added, refreshed or removed by another process", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 60))
      yield* store.put(session(2, 60))
      const fake = yield* makeFake(store)
      const supervisor = yield* start(store, fake.sessions, { backgroundCheckIntervalMinutes: 30 })
      yield* settle

      // Another process: logs in a new session, refreshes s-1, removes s-2.
      yield* advance(minutes(10))
      yield* store.put(session(3, 90))
      yield* store.put(session(1, 120, { generation: 1 }))
      yield* store.remove("s-2")
      assert.isUndefined(yield* statusOf(supervisor, "s-3"), "not seen before the sweep")

      yield* advance(minutes(20))
      const status = yield* supervisor.status
      assert.deepStrictEqual(status.sessions.map((s) => s.id), ["s-1", "s-3"])
      const next1 = DateTime.toEpochMillis(Option.getOrThrow(status.sessions[0]!.nextRefreshAt))
      assert.isTrue(next1 >= T0 + minutes(105) - window && next1 <= T0 + minutes(105), "rescheduled from the new expiry")
      const next3 = DateTime.toEpochMillis(Option.getOrThrow(status.sessions[1]!.nextRefreshAt))
      assert.isTrue(next3 >= T0 + minutes(75) - window && next3 <= T0 + minutes(75))

      yield* advance(minutes(60))
      assert.deepStrictEqual((yield* Ref.get(fake.calls)).map((c) => c.id), ["s-3"], "s-2 was never refreshed, s-1 not yet")
    }))

  it.effect("a failed refresh is tried again after the failure backoff, not in a hot loop; re-auth stops it", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 10))
      yield* store.put(session(2, 10))
      const fake = yield* makeFake(store, {
        script: (id, n) =>
          id === "s-2"
            ? { _tag: "NeedsReauth", reason: "invalid_grant" }
            : n < 2
            ? { _tag: "Failed", reason: "HTTP 503", retryable: true }
            : { _tag: "Refreshed", rotated: true, generation: 1 }
      })
      const supervisor = yield* start(store, fake.sessions)
      yield* advance(0)
      const backoff = Duration.toMillis(RefreshSupervisor.failureBackoff(Duration.minutes(15)))
      assert.strictEqual(backoff, minutes(5))
      const failed = (yield* statusOf(supervisor, "s-1"))!
      assert.deepStrictEqual(failed.lastOutcome, Option.some("Failed"))
      assert.deepStrictEqual(failed.lastError, Option.some("HTTP 503"))
      assert.deepStrictEqual(failed.nextRefreshAt, Option.some(at(T0 + backoff)))
      const reauth = (yield* statusOf(supervisor, "s-2"))!
      assert.deepStrictEqual(reauth.lastOutcome, Option.some("NeedsReauth"))
      assert.deepStrictEqual(reauth.nextRefreshAt, Option.none())

      yield* advance(backoff - 1)
      const s1 = () => Effect.map(Ref.get(fake.calls), (cs) => cs.filter((c) => c.id === "s-1").map((c) => c.at - T0))
      assert.deepStrictEqual(yield* s1(), [0])
      yield* advance(1)
      assert.deepStrictEqual(yield* s1(), [0, backoff])
      yield* advance(backoff)
      assert.deepStrictEqual(yield* s1(), [0, backoff, 2 * backoff])
      const ok = (yield* statusOf(supervisor, "s-1"))!
      assert.deepStrictEqual(ok.lastOutcome, Option.some("Refreshed"))
      assert.deepStrictEqual(ok.lastError, Option.none())
      yield* advance(minutes(30))
      assert.deepStrictEqual(yield* s1(), [0, backoff, 2 * backoff], "back on the expiry-based schedule")
      assert.strictEqual((yield* Ref.get(fake.calls)).filter((c) => c.id === "s-2").length, 1, "re-auth is never retried")
    }))

  it.effect("a refresh that dies is reported and retried after the backoff; the supervisor keeps going", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 10))
      yield* store.put(session(2, 10))
      const fake = yield* makeFake(store, { script: (id, n) => id === "s-1" && n === 0 ? "die" : { _tag: "Refreshed", rotated: false, generation: 1 } })
      const supervisor = yield* start(store, fake.sessions)
      yield* advance(0)
      const died = (yield* statusOf(supervisor, "s-1"))!
      assert.deepStrictEqual(died.lastOutcome, Option.some("Failed"))
      assert.isTrue(Option.isSome(died.lastError))
      assert.deepStrictEqual((yield* statusOf(supervisor, "s-2"))!.lastOutcome, Option.some("Refreshed"))
      yield* advance(minutes(5))
      assert.deepStrictEqual((yield* statusOf(supervisor, "s-1"))!.lastOutcome, Option.some("Refreshed"))
      assert.isTrue((yield* supervisor.status).alive)
    }))

  it.effect("a token living shorter than the threshold is refreshed at half its life, not in a loop", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 4))
      const fake = yield* makeFake(store, { lifetime: Duration.minutes(4) })
      yield* start(store, fake.sessions)
      yield* advance(minutes(10))
      const times = (yield* Ref.get(fake.calls)).map((c) => c.at - T0)
      assert.deepStrictEqual(times, [0, minutes(2), minutes(4), minutes(6), minutes(8), minutes(10)])
    }))

  it.effect("closing the scope stops every timer: no refresh afterwards", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 60))
      yield* store.put(session(2, 10))
      const gate = yield* Latch.make(false)
      const fake = yield* makeFake(store, { gate })
      const scope = yield* Scope.make()
      const supervisor = yield* start(store, fake.sessions).pipe(Scope.provide(scope))
      yield* advance(0)
      assert.strictEqual((yield* supervisor.status).inFlight, 1)
      yield* Scope.close(scope, Exit.void)
      const closed = yield* supervisor.status
      assert.isFalse(closed.alive)
      yield* gate.open
      yield* advance(minutes(180))
      assert.deepStrictEqual((yield* Ref.get(fake.calls)).map((c) => c.id), ["s-2"], "only the one already running")
    }))

  it.effect("with background refresh off the supervisor is inert", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, 10))
      const fake = yield* makeFake(store)
      const supervisor = yield* start(store, fake.sessions, { backgroundRefreshEnabled: false })
      yield* advance(minutes(120))
      const status = yield* supervisor.status
      assert.isFalse(status.enabled)
      assert.isFalse(status.alive)
      assert.strictEqual((yield* Ref.get(fake.calls)).length, 0)
    }))

  it.effect("the default layer also runs token cleanup", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const store = yield* TokenStore.makeMemory
      yield* store.put(session(1, -10, { refreshToken: undefined }))
      yield* store.put(session(2, 60))
      const fake = yield* makeFake(store)
      yield* RefreshSupervisor.make().pipe(
        Effect.provideService(TokenStore.TokenStore, store),
        Effect.provideService(Sessions.Sessions, fake.sessions),
        Effect.provide(SessionConfig.layerDefaults)
      )
      yield* settle
      assert.deepStrictEqual((yield* store.list).map((m) => m.id), ["s-2"])
    }))
})
