/**
 * TokenCleanup: removes sessions that can never be used again and enforces
 * `max_tokens_per_provider`, on any backend (it only uses the TokenStore
 * contract).
 *
 * Dead means: expired with no refresh token (nothing can revive it), or in
 * `needs_reauth` for longer than {@link reauthRetention} (the user has had
 * time to see it reported). Corrupted records are never removed here: they are
 * kept aside for inspection. Every removal is logged with its reason.
 */
import { DateTime, Duration, Effect, Option, Schedule } from "effect"
import { SessionConfig } from "./SessionConfig.js"
import * as TokenStore from "./TokenStore.js"

/** How long a `needs_reauth` session stays listed before cleanup removes it. */
export const reauthRetention = Duration.days(30)

/** What one cleanup pass did. */
export interface Report {
  readonly removedExpired: ReadonlyArray<string>
  readonly removedReauth: ReadonlyArray<string>
  readonly evicted: ReadonlyArray<string>
}

/** One cleanup pass over this namespace's sessions. */
export const runOnce = Effect.fn("TokenCleanup.runOnce")(function*() {
  const store = yield* TokenStore.TokenStore
  const config = yield* SessionConfig
  const max = config.settings.tokenStorage.maxTokensPerProvider
  const now = yield* DateTime.now
  const sessions = (yield* store.list).filter(TokenStore.isSession)
  const removedExpired: Array<string> = []
  const removedReauth: Array<string> = []
  const evicted: Array<string> = []

  const isExpired = (m: TokenStore.SessionMetadata) =>
    Option.match(m.expiresAt, { onNone: () => false, onSome: (at) => DateTime.isLessThanOrEqualTo(at, now) })

  const remaining: Array<TokenStore.SessionMetadata> = []
  for (const m of sessions) {
    if (m.state === "active" && !m.hasRefreshToken && isExpired(m)) {
      yield* store.remove(m.id)
      removedExpired.push(m.id)
      yield* Effect.logInfo(`cleanup: removed expired session ${m.id} of ${m.provider} (no refresh token)`)
    } else if (
      m.state === "needs_reauth" &&
      DateTime.isLessThanOrEqualTo(DateTime.addDuration(m.updatedAt, reauthRetention), now)
    ) {
      yield* store.remove(m.id)
      removedReauth.push(m.id)
      yield* Effect.logInfo(`cleanup: removed session ${m.id} of ${m.provider} (re-authentication pending since ${DateTime.formatIso(m.updatedAt)})`)
    } else if (m.state !== "corrupted") {
      remaining.push(m)
    }
  }

  const byProvider = new Map<string, Array<TokenStore.SessionMetadata>>()
  for (const m of remaining) byProvider.set(m.provider, [...(byProvider.get(m.provider) ?? []), m])
  for (const [provider, list] of byProvider) {
    if (list.length <= max) continue
    const oldestFirst = [...list].sort((a, b) => DateTime.toEpochMillis(a.updatedAt) - DateTime.toEpochMillis(b.updatedAt))
    for (const m of oldestFirst.slice(0, list.length - max)) {
      yield* store.remove(m.id)
      evicted.push(m.id)
      yield* Effect.logWarning(`cleanup: evicted session ${m.id} of ${provider}: more than max_tokens_per_provider (${max})`)
    }
  }
  return { removedExpired, removedReauth, evicted } satisfies Report
})

/** Runs a pass now and then every `token_cleanup_interval_hours`; a failed pass is logged and retried next time. */
export const runScheduled = Effect.gen(function*() {
  const config = yield* SessionConfig
  const every = Duration.hours(config.settings.tokenStorage.tokenCleanupIntervalHours)
  yield* runOnce().pipe(
    Effect.catch((e) => Effect.logWarning(`cleanup failed: ${e.message}`)),
    Effect.repeat(Schedule.spaced(every))
  )
})
