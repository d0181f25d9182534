/**
 * RefreshSupervisor: keeps every stored session's access token fresh in the
 * background, so callers of `Sessions.getAccessToken` find a valid token in
 * memory instead of waiting for a refresh.
 *
 * Each refreshable session gets one timer, set for
 * `expires_at - refresh_threshold_minutes`, moved earlier by a random
 * {@link jitterFraction} of the threshold so that sessions issued together do
 * not refresh together. After every outcome the timer is set again from the
 * expiry now in the store: nothing is polled on a fixed timer.
 * `background_check_interval_minutes` is only a safety sweep that lists the
 * store and picks up sessions that other processes added, refreshed or
 * removed.
 *
 * At most `concurrent_refresh_limit` refreshes run at once and at most
 * `refresh_queue_size` wait for a slot; a session due while the queue is full
 * is counted as an overflow, logged and tried again after
 * {@link overflowRetryDelay}: never dropped. A refresh that fails is tried
 * again after {@link failureBackoff} (the `Sessions` service has already
 * retried within the refresh); one that needs re-authentication is not
 * scheduled again until the user logs in.
 *
 * The supervisor is a scoped layer: building it starts the work, closing its
 * scope interrupts every timer, waiting and running refresh.
 */
import {
  Cause,
  Context,
  DateTime,
  Duration,
  Effect,
  Exit,
  FiberMap,
  FiberSet,
  HashMap,
  Layer,
  Metric,
  Option,
  Random,
  Ref,
  Schedule,
  Semaphore
} from "effect"
import * as Metrics from "./Metrics.js"
import { SessionConfig } from "./SessionConfig.js"
import * as Sessions from "./Sessions.js"
import * as TokenCleanup from "./TokenCleanup.js"
import * as TokenStore from "./TokenStore.js"

/** The share of the refresh threshold by which a refresh is moved earlier at random (never later). */
export const jitterFraction = 0.1

/** How much earlier than `expires_at - threshold` a refresh may run: {@link jitterFraction} of the threshold. */
export const jitterWindow = (threshold: Duration.Duration): Duration.Duration => Duration.times(threshold, jitterFraction)

/** The longest wait before a failed refresh is tried again. */
export const failureBackoffCap = Duration.minutes(5)

/** The wait after a failed refresh: half the threshold, at most {@link failureBackoffCap}. */
export const failureBackoff = (threshold: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.times(threshold, 0.5), failureBackoffCap)

/** The wait before a session turned away by a full queue asks again (jittered by ±20%). */
export const overflowRetryDelay = Duration.seconds(30)

/** How a session turned away by a full queue is retried: spaced, jittered, forever. */
export const overflowSchedule = Schedule.spaced(overflowRetryDelay).pipe(Schedule.jittered)

/** The least time between two refreshes of one session (tokens living shorter than the threshold). */
export const minRefreshSpacing = Duration.seconds(30)

/** The tag of a refresh outcome, as the status reports it. */
export type OutcomeTag = Sessions.RefreshOutcome["_tag"]

/** What the supervisor knows of one session. */
export interface SessionStatus {
  readonly id: string
  readonly provider: string
  /** When the next refresh is due; none while it runs, or when the session is not refreshable. */
  readonly nextRefreshAt: Option.Option<DateTime.Utc>
  readonly lastRefreshAt: Option.Option<DateTime.Utc>
  readonly lastOutcome: Option.Option<OutcomeTag>
  /** Secret-free description of the last failure. */
  readonly lastError: Option.Option<string>
}

/** The supervisor as `mtsession status` and health checks show it. */
export interface SupervisorStatus {
  /** `token_refresh.enabled` and `background_refresh_enabled`. */
  readonly enabled: boolean
  /** True while the background work runs (built and not yet closed). */
  readonly alive: boolean
  readonly sessions: ReadonlyArray<SessionStatus>
  /** Refreshes waiting for a slot. */
  readonly queueDepth: number
  readonly inFlight: number
  /** How many times a due session found the queue full (each was retried later). */
  readonly overflowCount: number
}

/** The operations. */
export interface Shape {
  readonly status: Effect.Effect<SupervisorStatus>
  /** Lists the store now and updates the schedule (e.g. after a login in this process). */
  readonly sweep: Effect.Effect<void, TokenStore.TokenStoreError>
}

/** The background refresher of this process. */
export class RefreshSupervisor extends Context.Service<RefreshSupervisor, Shape>()(
  "magictunnel-session/RefreshSupervisor"
) {}

type Phase = "scheduled" | "waiting" | "running" | "idle"

interface Entry extends SessionStatus {
  readonly phase: Phase
  /** What the schedule was computed from; the sweep compares it with the store. */
  readonly seen: string
}

/** A session can be refreshed in the background: active, with a refresh token and an expiry. */
const refreshable = (m: TokenStore.SessionMetadata): boolean =>
  m.state === "active" && m.hasRefreshToken && Option.isSome(m.expiresAt)

const seenOf = (m: TokenStore.SessionMetadata): string =>
  `${m.state}|${m.hasRefreshToken}|${m.generation}|${Option.match(m.expiresAt, { onNone: () => "", onSome: DateTime.toEpochMillis })}`

const expiryMillis = (m: TokenStore.SessionMetadata): number =>
  Option.match(m.expiresAt, { onNone: () => Number.POSITIVE_INFINITY, onSome: DateTime.toEpochMillis })

/**
 * The delay until a session's next refresh: `expires_at - threshold`, earlier
 * by a random share of {@link jitterWindow}. Inside the threshold already:
 * right away, or, just after a refresh (a token that lives shorter than the
 * threshold), half its remaining life; after a refresh never sooner than
 * {@link minRefreshSpacing}.
 */
export const delayUntilRefresh = Effect.fnUntraced(function*(
  expiresAtMillis: number,
  nowMillis: number,
  threshold: Duration.Duration,
  afterRefresh: boolean
) {
  const dueMillis = expiresAtMillis - Duration.toMillis(threshold)
  const jitter = (yield* Random.next) * Duration.toMillis(jitterWindow(threshold))
  const delay = dueMillis > nowMillis
    ? Math.max(0, dueMillis - jitter - nowMillis)
    : afterRefresh
    ? (expiresAtMillis - nowMillis) / 2
    : 0
  // Whole milliseconds, rounded down: never later than planned.
  return Duration.millis(Math.floor(afterRefresh ? Math.max(delay, Duration.toMillis(minRefreshSpacing)) : delay))
})

/** Builds the supervisor; with background refresh off it is inert and reports `enabled: false`. */
export const make = Effect.fnUntraced(function*(options?: {
  /** Also run `TokenCleanup` every `token_cleanup_interval_hours` (default true). */
  readonly cleanup?: boolean | undefined
}) {
  const config = yield* SessionConfig
  const store = yield* TokenStore.TokenStore
  const sessions = yield* Sessions.Sessions
  const settings = config.settings.tokenRefresh
  const enabled = settings.enabled && settings.backgroundRefreshEnabled
  const threshold = Duration.minutes(settings.refreshThresholdMinutes)
  const entries = yield* Ref.make(HashMap.empty<string, Entry>())
  const load = yield* Ref.make({ waiting: 0, inFlight: 0, overflow: 0 })
  const alive = yield* Ref.make(false)

  const status = Effect.gen(function*() {
    const m = yield* Ref.get(entries)
    const l = yield* Ref.get(load)
    const sessions = HashMap.toValues(m)
      .map(({ id, lastError, lastOutcome, lastRefreshAt, nextRefreshAt, provider }): SessionStatus => ({
        id,
        provider,
        nextRefreshAt,
        lastRefreshAt,
        lastOutcome,
        lastError
      }))
      .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    return {
      enabled,
      alive: yield* Ref.get(alive),
      sessions,
      queueDepth: l.waiting,
      inFlight: l.inFlight,
      overflowCount: l.overflow
    } satisfies SupervisorStatus
  })

  if (!enabled) {
    yield* Effect.logDebug("background refresh is off (token_refresh.enabled / background_refresh_enabled)")
    return RefreshSupervisor.of({ status, sweep: Effect.void })
  }

  const timers = yield* FiberMap.make<string>()
  const running = yield* FiberSet.make()
  const slots = yield* Semaphore.make(settings.concurrentRefreshLimit)
  const nowMillis = Effect.map(DateTime.now, DateTime.toEpochMillis)

  const entryOf = (id: string) => Effect.map(Ref.get(entries), HashMap.get(id))

  const forget = (id: string) =>
    Ref.update(entries, HashMap.remove(id)).pipe(Effect.andThen(FiberMap.remove(timers, id)))

  /** Sets the one timer of a session (replacing any), due after `delay`. */
  const arm = (id: string, delay: Duration.Duration) =>
    Effect.gen(function*() {
      const at = DateTime.makeUnsafe((yield* nowMillis) + Duration.toMillis(delay))
      const present = yield* Ref.modify(entries, (m) =>
        Option.match(HashMap.get(m, id), {
          onNone: () => [false, m] as const,
          onSome: (e) => [true, HashMap.set(m, id, { ...e, phase: "scheduled" as const, nextRefreshAt: Option.some(at) })] as const
        }))
      // Not started immediately: a timer due now could otherwise refresh and re-arm itself before it is registered.
      if (present) yield* FiberMap.run(timers, id, timer(id, delay), { startImmediately: false })
    })

  /** Leaves a session unscheduled (needs re-authentication, corrupted, not refreshable). */
  const idle = (id: string) =>
    Ref.update(entries, HashMap.modify(id, (e) => ({ ...e, phase: "idle" as const, nextRefreshAt: Option.none() }))).pipe(
      Effect.andThen(FiberMap.remove(timers, id))
    )

  const note = (id: string, patch: Partial<Entry> | ((e: Entry) => Partial<Entry>)) =>
    Ref.update(entries, HashMap.modify(id, (e) => ({ ...e, ...(typeof patch === "function" ? patch(e) : patch) })))

  /**
   * Takes a place in the queue (or counts an overflow and fails, so that the
   * timer asks again later), waits for a refresh slot, then hands the refresh
   * to its own fiber. Only the waits are interruptible: the queue place and
   * the slot are never lost, and a session already running is never started
   * twice.
   */
  const enter = (id: string) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        if (Option.isNone(yield* entryOf(id))) return
        const admitted = yield* Ref.modify(load, (l) =>
          l.waiting < settings.refreshQueueSize
            ? [true, { ...l, waiting: l.waiting + 1 }] as const
            : [false, { ...l, overflow: l.overflow + 1 }] as const)
        yield* Effect.flatMap(Ref.get(load), (l) => Metric.update(Metrics.queueDepth, l.waiting))
        if (!admitted) {
          const at = DateTime.makeUnsafe((yield* nowMillis) + Duration.toMillis(overflowRetryDelay))
          yield* note(id, { nextRefreshAt: Option.some(at) })
          yield* Effect.logWarning(
            `refresh queue full (refresh_queue_size ${settings.refreshQueueSize}): session ${id} will be tried again in about ${
              Duration.format(overflowRetryDelay)
            }`
          )
          return yield* Effect.fail("QueueFull" as const)
        }
        yield* note(id, { phase: "waiting" })
        const acquired = yield* Effect.exit(restore(slots.take(1)))
        const waiting = yield* Ref.modify(load, (l) => [l.waiting - 1, { ...l, waiting: l.waiting - 1 }] as const)
        yield* Metric.update(Metrics.queueDepth, waiting)
        if (Exit.isFailure(acquired)) return yield* acquired
        const go = yield* Ref.modify(entries, (m) =>
          Option.match(HashMap.get(m, id), {
            onNone: () => [false, m] as const,
            onSome: (e) =>
              e.phase === "running"
                ? [false, m] as const
                : [true, HashMap.set(m, id, { ...e, phase: "running" as const, nextRefreshAt: Option.none() })] as const
          }))
        if (!go) return yield* slots.release(1)
        yield* Ref.update(load, (l) => ({ ...l, inFlight: l.inFlight + 1 }))
        yield* FiberSet.run(
          running,
          Effect.interruptible(refreshOne(id)).pipe(
            Effect.ensuring(Ref.update(load, (l) => ({ ...l, inFlight: l.inFlight - 1 })).pipe(Effect.andThen(slots.release(1))))
          )
        )
      })
    )

  const timer = (id: string, delay: Duration.Duration): Effect.Effect<void> =>
    Effect.sleep(delay).pipe(
      Effect.andThen(enter(id).pipe(Effect.retry(overflowSchedule))),
      Effect.catch(() => Effect.void)
    )

  /** The session as stored now: metadata, or why it cannot be read. */
  const look = (id: string) =>
    store.get(id).pipe(
      Effect.map((record) => ({ _tag: "Found" as const, meta: TokenStore.metadataOf(record, store.backend) })),
      Effect.catch((error) =>
        Effect.succeed(
          error.reason._tag === "NotFound"
            ? { _tag: "Gone" as const }
            : { _tag: "Unreadable" as const, detail: error.message, corrupted: error.reason._tag === "Corrupted" }
        )
      )
    )

  /** Schedules from what the store holds now. */
  const rearm = (id: string, meta: TokenStore.SessionMetadata, afterRefresh: boolean) =>
    Effect.gen(function*() {
      yield* note(id, (e) => ({ seen: seenOf(meta), lastRefreshAt: Option.orElse(meta.lastRefreshAt, () => e.lastRefreshAt) }))
      if (!refreshable(meta)) return yield* idle(id)
      yield* arm(id, yield* delayUntilRefresh(expiryMillis(meta), yield* nowMillis, threshold, afterRefresh))
    })

  const backoff = (id: string, lastError: string) =>
    note(id, { lastOutcome: Option.some("Failed"), lastError: Option.some(lastError) }).pipe(
      Effect.andThen(arm(id, failureBackoff(threshold)))
    )

  // A root span: the timer that started it was set by a sweep or an earlier refresh long finished.
  const refreshOne = Effect.fn("RefreshSupervisor.refresh", { root: true })(function*(id: string) {
    const before = yield* look(id)
    if (before._tag === "Gone") return yield* forget(id)
    if (before._tag === "Unreadable") {
      yield* Effect.logWarning(`background refresh of ${id}: ${before.detail}`)
      return yield* before.corrupted
        ? note(id, { lastError: Option.some(before.detail) }).pipe(Effect.andThen(idle(id)))
        : backoff(id, before.detail)
    }
    const meta = before.meta
    yield* Effect.annotateCurrentSpan({ "session.provider": meta.provider, "session.backend": meta.backend })
    if (!refreshable(meta)) return yield* rearm(id, meta, false)
    // Another process (or a caller of this one) refreshed since the timer was set: nothing to do yet.
    const now = yield* nowMillis
    if (expiryMillis(meta) - now > Duration.toMillis(threshold) + Duration.toMillis(jitterWindow(threshold))) {
      return yield* rearm(id, meta, false)
    }

    const result = yield* sessions.refresh(id, { force: true }).pipe(
      Effect.map((outcome) => ({ _tag: "Outcome" as const, outcome })),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.succeed({ _tag: "Error" as const, cause })
      )
    )
    if (result._tag === "Error") {
      const error = Cause.findErrorOption(result.cause)
      if (Option.isSome(error) && error.value.reason._tag === "Store" && error.value.reason.error.reason._tag === "NotFound") {
        return yield* forget(id)
      }
      const detail = Option.match(error, { onNone: () => "unexpected failure (see the error log)", onSome: (e) => e.message })
      if (Option.isNone(error)) yield* Effect.logError(`background refresh of ${id} failed unexpectedly`, result.cause)
      else yield* Effect.logWarning(`background refresh of ${id}: ${detail}`)
      yield* Effect.annotateCurrentSpan("refresh.outcome", "Failed")
      return yield* backoff(id, detail)
    }

    const outcome = result.outcome
    yield* Effect.annotateCurrentSpan("refresh.outcome", outcome._tag)
    switch (outcome._tag) {
      case "NeedsReauth": {
        yield* Effect.logWarning(
          `session ${id} of ${meta.provider} needs re-authentication (${outcome.reason}); run \`mtsession login ${meta.provider}\``
        )
        yield* note(id, { lastOutcome: Option.some(outcome._tag), lastError: Option.some(outcome.reason) })
        return yield* idle(id)
      }
      case "Failed": {
        yield* Effect.logWarning(
          `background refresh of ${id} failed (${outcome.reason}); trying again in ${Duration.format(failureBackoff(threshold))}`
        )
        return yield* backoff(id, outcome.reason)
      }
      default: {
        const after = yield* look(id)
        if (after._tag === "Gone") return yield* forget(id)
        const refreshedAt = outcome._tag === "Fresh" ? Option.none() : Option.some(DateTime.makeUnsafe(yield* nowMillis))
        yield* note(id, { lastOutcome: Option.some(outcome._tag), lastError: Option.none() })
        if (after._tag === "Unreadable") return yield* backoff(id, after.detail)
        yield* rearm(id, after.meta, true)
        if (Option.isSome(refreshedAt)) yield* note(id, { lastRefreshAt: refreshedAt })
      }
    }
  })

  /** Brings one listed session into the schedule, unless its schedule is already up to date or it is refreshing. */
  const track = (meta: TokenStore.SessionMetadata) =>
    Effect.gen(function*() {
      const seen = seenOf(meta)
      const decision = yield* Ref.modify(entries, (m) => {
        const current = HashMap.get(m, meta.id)
        if (Option.isSome(current) && (current.value.phase === "running" || current.value.seen === seen)) {
          return ["keep", m] as const
        }
        const base: Entry = Option.getOrElse(current, (): Entry => ({
          id: meta.id,
          provider: meta.provider,
          phase: "idle",
          seen,
          nextRefreshAt: Option.none(),
          lastRefreshAt: meta.lastRefreshAt,
          lastOutcome: Option.none(),
          lastError: meta.lastError
        }))
        const next: Entry = { ...base, seen, lastRefreshAt: Option.orElse(meta.lastRefreshAt, () => base.lastRefreshAt) }
        return [refreshable(meta) ? "arm" : "idle", HashMap.set(m, meta.id, next)] as const
      })
      if (decision === "arm") {
        yield* arm(meta.id, yield* delayUntilRefresh(expiryMillis(meta), yield* nowMillis, threshold, false))
      } else if (decision === "idle") {
        yield* idle(meta.id)
      }
    })

  const sweep = Effect.fn("RefreshSupervisor.sweep", { root: true })(function*() {
    const listed = yield* store.list
    const ids = new Set(listed.map((m) => m.id))
    yield* Effect.forEach(listed, track, { discard: true })
    const known = yield* Ref.get(entries)
    for (const [id, entry] of known) {
      // A refresh in flight finds the session gone when it re-reads the store, and forgets it then.
      if (!ids.has(id) && entry.phase !== "running") yield* forget(id)
    }
    yield* Effect.annotateCurrentSpan("sessions", listed.length)
    yield* Metrics.sessionsListed(listed)
  })

  yield* Ref.set(alive, true)
  yield* sweep().pipe(
    Effect.catch((error) => Effect.logWarning(`refresh supervisor: listing sessions failed: ${error.message}`)),
    Effect.repeat(Schedule.spaced(Duration.minutes(settings.backgroundCheckIntervalMinutes))),
    Effect.ensuring(Ref.set(alive, false)),
    Effect.forkScoped
  )
  if (options?.cleanup ?? true) yield* Effect.forkScoped(TokenCleanup.runScheduled)

  return RefreshSupervisor.of({ status, sweep: sweep() })
})

/** The supervisor with token cleanup: starts when built, stops when its scope closes. */
export const layer: Layer.Layer<RefreshSupervisor, never, SessionConfig | TokenStore.TokenStore | Sessions.Sessions> =
  Layer.effect(RefreshSupervisor, make())

/** The supervisor with options (e.g. `{ cleanup: false }` when something else runs `TokenCleanup`). */
export const layerWith = (options: {
  readonly cleanup?: boolean | undefined
}): Layer.Layer<RefreshSupervisor, never, SessionConfig | TokenStore.TokenStore | Sessions.Sessions> =>
  Layer.effect(RefreshSupervisor, make(options))
