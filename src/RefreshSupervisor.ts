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
 * In a fleet (a `RefreshClaims` service in the context, see
 * `RefreshClaims.ts`), each refreshable session is scheduled by the one
 * instance that holds its claim; claims are renewed, spread and taken over
 * from dead instances every `RefreshClaims.renewalInterval`. Without claims
 * every supervisor schedules every session and the refresh lock keeps one
 * refresh per grant.
 *
 * The supervisor is a scoped layer: building it starts the work, closing its
 * scope interrupts every timer, waiting and running refresh. The plan (when)
 * is `internal/RefreshPlan.ts`, the admission `internal/RefreshQueue.ts`, the
 * per-session timers `internal/RefreshSchedule.ts`, one refresh and what its
 * outcome does to the schedule `internal/SupervisedRefresh.ts`.
 */
import { Context, DateTime, Duration, Effect, Layer, Option, Ref, Schedule } from "effect"
import * as RefreshPlan from "./internal/RefreshPlan.js"
import * as RefreshQueue from "./internal/RefreshQueue.js"
import * as RefreshSchedule from "./internal/RefreshSchedule.js"
import * as SupervisedRefresh from "./internal/SupervisedRefresh.js"
import * as Metrics from "./Metrics.js"
import * as RefreshClaims from "./RefreshClaims.js"
import { SessionConfig } from "./SessionConfig.js"
import * as Sessions from "./Sessions.js"
import * as TokenCleanup from "./TokenCleanup.js"
import * as TokenStore from "./TokenStore.js"
import { UserContext } from "./UserContext.js"

export {
  delayUntilRefresh,
  failureBackoff,
  failureBackoffCap,
  jitterFraction,
  jitterWindow,
  minRefreshSpacing,
  overflowRetryDelay,
  overflowSchedule
} from "./internal/RefreshPlan.js"

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

/** Builds the supervisor; with background refresh off it is inert and reports `enabled: false`. */
export const make = Effect.fnUntraced(function*(options?: {
  /** Also run `TokenCleanup` every `token_cleanup_interval_hours` (default true). */
  readonly cleanup?: boolean | undefined
}) {
  const config = yield* SessionConfig
  const store = yield* TokenStore.TokenStore
  const sessions = yield* Sessions.Sessions
  const claims = yield* Effect.serviceOption(RefreshClaims.RefreshClaims)
  // Spans name a session by its fingerprint, as every other span does; present in every real composition.
  const user = yield* Effect.serviceOption(UserContext)
  const settings = config.settings.tokenRefresh
  const enabled = settings.enabled && settings.backgroundRefreshEnabled
  const threshold = Duration.minutes(settings.refreshThresholdMinutes)
  const alive = yield* Ref.make(false)
  const queue = yield* RefreshQueue.make({ limit: settings.concurrentRefreshLimit, size: settings.refreshQueueSize })
  // The timers call back into `enter`, defined below once the schedule exists.
  const schedule = yield* RefreshSchedule.make({
    threshold,
    fire: (id): Effect.Effect<void, "QueueFull"> => Effect.suspend(() => enter(id).pipe(Effect.retry(RefreshPlan.overflowSchedule)))
  })

  const status = Effect.gen(function*() {
    const l = yield* queue.load
    const sessions = yield* schedule.snapshot
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
  const { begin, entryOf, note, nowMillis, retain, track } = schedule

  /** Queues the refresh of a session; a full queue is noted and logged, and the timer asks again later. */
  const enter = (id: string): Effect.Effect<void, "QueueFull"> =>
    queue.enter({
      present: Effect.map(entryOf(id), (e) => Option.isSome(e)),
      onWaiting: note(id, { phase: "waiting" }),
      begin: begin(id),
      work: refreshOne(id)
    }).pipe(
      Effect.tapError(() =>
        Effect.gen(function*() {
          const at = DateTime.makeUnsafe((yield* nowMillis) + Duration.toMillis(RefreshPlan.overflowRetryDelay))
          yield* note(id, { nextRefreshAt: Option.some(at) })
          yield* Effect.logWarning(
            `refresh queue full (refresh_queue_size ${settings.refreshQueueSize}): session ${id} will be tried again in about ${
              Duration.format(RefreshPlan.overflowRetryDelay)
            }`
          )
        })
      )
    )

  const refreshOne = SupervisedRefresh.make({
    store,
    sessions,
    schedule,
    threshold,
    namespace: Option.map(user, (u) => u.namespace)
  })

  // With claims: the last listing, and the refreshable sessions this instance holds.
  const listing = yield* Ref.make<ReadonlyArray<TokenStore.SessionMetadata>>([])
  const owned = yield* Ref.make<ReadonlySet<string>>(new Set())

  /**
   * Brings the schedule in line with a listing: without claims every session;
   * with claims the refreshable sessions this instance holds (after renewing
   * and claiming), plus the others unscheduled so that status shows them.
   * `full`: re-track every session held (a fresh listing), else only those
   * just gained (the listing may be stale; a refresh re-reads the store).
   */
  const reconcile = (listed: ReadonlyArray<TokenStore.SessionMetadata>, full: boolean) =>
    Effect.gen(function*() {
      const before = yield* Ref.get(owned)
      const candidates = listed.filter(RefreshPlan.refreshable).map((m) => m.id)
      const held: ReadonlySet<string> = Option.isNone(claims)
        ? new Set(candidates)
        : yield* claims.value.sync(candidates).pipe(
          Effect.catch((e) =>
            Effect.as(
              Effect.logWarning(`refresh supervisor: ${e.message}; keeping the sessions it had`),
              new Set(candidates.filter((id) => before.has(id)))
            )
          )
        )
      yield* Ref.set(owned, held)
      const mine = (m: TokenStore.SessionMetadata) => !RefreshPlan.refreshable(m) || held.has(m.id)
      yield* Effect.forEach(
        listed.filter((m) => mine(m) && (full || !before.has(m.id))),
        track,
        { discard: true }
      )
      yield* retain(new Set(listed.filter(mine).map((m) => m.id)))
    })

  const sweep = Effect.fn("RefreshSupervisor.sweep", { root: true })(function*() {
    const listed = yield* store.list
    yield* Ref.set(listing, listed)
    yield* reconcile(listed, true)
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
  if (Option.isSome(claims)) {
    // Renewing and spreading claims needs no listing: the last one names the candidates.
    yield* Ref.get(listing).pipe(
      Effect.flatMap((listed) => reconcile(listed, false)),
      Effect.repeat(Schedule.spaced(RefreshClaims.renewalInterval(claims.value.lease))),
      Effect.delay(RefreshClaims.renewalInterval(claims.value.lease)),
      Effect.forkScoped
    )
  }
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
