/**
 * When a refresh is tried again: a transient failure of the grant (with the
 * server's `Retry-After` as a floor), and a passing failure to store the
 * rotated record (the server has already rotated the refresh token, so the
 * write must not be given up at once).
 */
import { Duration, Effect, Option, Schedule } from "effect"
import * as OAuthClient from "../OAuthClient.js"
import type { Settings } from "../SessionConfig.js"
import type * as TokenStore from "../TokenStore.js"

/**
 * Retries of a refresh that failed transiently: exponential from
 * `retry_delay_base_seconds`, jittered, at most `max_retry_attempts`
 * retries, never a delay ending past `max_retry_age_hours` after the first
 * failure, and never sooner than the server's `Retry-After`. Stops at once on
 * a failure that is not retryable.
 *
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3 (Retry-After)
 */
export const retrySchedule = (
  settings: Pick<Settings["tokenRefresh"], "maxRetryAttempts" | "retryDelayBaseSeconds" | "maxRetryAgeHours">
): Schedule.Schedule<Duration.Duration, OAuthClient.OAuthError> => {
  const maxAgeMs = settings.maxRetryAgeHours * 3_600_000
  return Schedule.exponential(Duration.millis(settings.retryDelayBaseSeconds * 1000)).pipe(
    Schedule.setInputType<OAuthClient.OAuthError>(),
    Schedule.jittered,
    // The server's wait is a floor, applied after the jitter so it is never shortened.
    Schedule.modifyDelay(({ duration, input }) =>
      Effect.succeed(Option.match(OAuthClient.retryAfterOf(input.reason), {
        onNone: () => duration,
        onSome: (asked) => Duration.max(duration, asked)
      }))
    ),
    Schedule.upTo({ times: settings.maxRetryAttempts }),
    Schedule.while(({ duration, elapsed, input }) => input.retryable && elapsed + Duration.toMillis(duration) <= maxAgeMs)
  )
}

/**
 * Retries of storing a refreshed record: the server has already rotated the
 * refresh token, so a passing store failure (I/O, a busy keyring) must not
 * lose the grant. A few quick tries, while the failure is retryable.
 */
export const persistRetrySchedule: Schedule.Schedule<Duration.Duration, TokenStore.TokenStoreError> = Schedule
  .exponential("20 millis")
  .pipe(
    Schedule.setInputType<TokenStore.TokenStoreError>(),
    Schedule.upTo({ times: 3 }),
    Schedule.while(({ input }) => input.retryable)
  )
