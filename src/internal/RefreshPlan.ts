/**
 * RefreshPlan: when the background refresher runs a session's refresh, as
 * pure arithmetic over the stored metadata and the clock, so that tests and
 * docs can point at the numbers (`RefreshSupervisor` re-exports them).
 *
 * A session is due at `expires_at - refresh_threshold_minutes`, moved earlier
 * by a random {@link jitterFraction} of the threshold so that sessions issued
 * together do not refresh together; a failure waits {@link failureBackoff};
 * a session turned away by a full queue asks again on {@link overflowSchedule}.
 */
import { DateTime, Duration, Effect, Option, Random, Schedule } from "effect"
import type * as TokenStore from "../TokenStore.js"

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

/** A session can be refreshed in the background: active, with a refresh token and an expiry. */
export const refreshable = (m: TokenStore.SessionMetadata): boolean =>
  m.state === "active" && m.hasRefreshToken && Option.isSome(m.expiresAt)

/** What a schedule was computed from; a sweep compares it with the store. */
export const seenOf = (m: TokenStore.SessionMetadata): string =>
  `${m.state}|${m.hasRefreshToken}|${m.generation}|${Option.match(m.expiresAt, { onNone: () => "", onSome: DateTime.toEpochMillis })}`

/** The expiry in epoch ms; infinity without one. */
export const expiryMillis = (m: TokenStore.SessionMetadata): number =>
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
