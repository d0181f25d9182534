/**
 * Metrics: the Effect `Metric`s of session persistence. They cost a map
 * update when nothing exports them; `Telemetry` hands them to OpenTelemetry
 * (OTLP or Prometheus) when metrics export is configured.
 *
 * None is updated on the cached `getAccessToken` path: only refreshes,
 * recoveries, store failures, the supervisor's queue and lock waits count.
 * No attribute ever holds a token or a session id (only outcomes, states,
 * backends and error reasons).
 */
import { DateTime, Effect, Metric } from "effect"
import * as SessionState from "./SessionState.js"
import type * as TokenStore from "./TokenStore.js"

/** Refreshes by `outcome` (`Refreshed`, `Reused`, `Fresh`, `NeedsReauth`, `Failed`, `Store`, `Lock`, `PersistFailed`). */
export const refreshes = Metric.counter("mtsession.refreshes", {
  description: "Refreshes of a grant, by outcome",
  incremental: true
})

/** Milliseconds one refresh of a grant took (lock wait, server call and persist), by `outcome`. */
export const refreshDuration = Metric.histogram("mtsession.refresh.duration", {
  description: "Duration of a grant refresh in milliseconds",
  boundaries: Metric.exponentialBoundaries({ start: 5, factor: 2, count: 14 })
})

/** Stored sessions by `state` (`active`, `expired`, `needs_reauth`, `corrupted`), as last listed. */
export const sessions = Metric.gauge("mtsession.sessions", { description: "Stored sessions by state" })

/** Recovery outcomes by `outcome` (`recovered`, `refreshed`, `needs_reauth`, `failed`). */
export const recoveryOutcomes = Metric.counter("mtsession.recovery.outcomes", {
  description: "Sessions recovered, by outcome",
  incremental: true
})

/** Failed store operations by `backend`, `operation` and `reason` (`NotFound` is not a failure). */
export const storeErrors = Metric.counter("mtsession.store.errors", {
  description: "Failed token store operations by backend and reason",
  incremental: true
})

/** Refreshes waiting for a slot in the supervisor. */
export const queueDepth = Metric.gauge("mtsession.supervisor.queue_depth", {
  description: "Background refreshes waiting for a slot"
})

/** Milliseconds spent waiting for a session's refresh lock, by `outcome` (`acquired`, `timeout`, `unavailable`). */
export const lockWait = Metric.histogram("mtsession.lock.wait", {
  description: "Time waiting for a refresh lock in milliseconds",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 })
})

/** Counts one refresh and its duration. */
export const refreshDone = (outcome: string, durationMs: number): Effect.Effect<void> =>
  Effect.andThen(
    Metric.update(Metric.withAttributes(refreshes, { outcome }), 1),
    Metric.update(Metric.withAttributes(refreshDuration, { outcome }), durationMs)
  )

/** Counts `count` recovered sessions with one outcome (a recovery counts each outcome once). */
export const recovered = (outcome: string, count: number): Effect.Effect<void> =>
  Metric.update(Metric.withAttributes(recoveryOutcomes, { outcome }), count)

/** Counts a store failure (a missing record is an answer, not a failure). */
export const storeError = (error: TokenStore.TokenStoreError): Effect.Effect<void> =>
  error.reason._tag === "NotFound"
    ? Effect.void
    : Metric.update(
      Metric.withAttributes(storeErrors, { backend: error.backend, operation: error.operation, reason: error.reason._tag }),
      1
    )

/** Records the lock wait of one acquisition. */
export const lockWaited = (outcome: string, waitedMs: number): Effect.Effect<void> =>
  Metric.update(Metric.withAttributes(lockWait, { outcome }), waitedMs)

const states: ReadonlyArray<SessionState.State> = ["active", "expired", "needs_reauth", "corrupted"]

/** Sets the sessions-by-state gauge from a listing. */
export const sessionsListed = (listed: ReadonlyArray<TokenStore.SessionMetadata>): Effect.Effect<void> =>
  Effect.flatMap(DateTime.now, (now) => {
    const counts = countByState(listed, now)
    return Effect.forEach(states, (state) => Metric.update(Metric.withAttributes(sessions, { state }), counts[state]), {
      discard: true
    })
  })

/** Sessions by user-visible state at `now`. */
export const countByState = (
  listed: ReadonlyArray<TokenStore.SessionMetadata>,
  now: DateTime.Utc
): Record<SessionState.State, number> => {
  const counts: Record<SessionState.State, number> = { active: 0, expired: 0, needs_reauth: 0, corrupted: 0 }
  for (const m of listed) counts[SessionState.of(m, now)]++
  return counts
}

/** A store whose failures are counted in {@link storeErrors}; the operations are otherwise unchanged. */
export const observeStore = (store: TokenStore.Shape): TokenStore.Shape => ({
  ...store,
  get: (id) => Effect.tapError(store.get(id), storeError),
  put: (record) => Effect.tapError(store.put(record), storeError),
  remove: (id) => Effect.tapError(store.remove(id), storeError),
  list: Effect.tapError(store.list, storeError)
})
