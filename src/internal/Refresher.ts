/**
 * The refresh of one grant, as Sessions runs it: single flight in the
 * process, `RefreshLock` across processes, the record re-read under the
 * lock (a token another process already obtained is reused and nothing is
 * sent), the refresh sent with the stored refresh token, and the rotated
 * record persisted before the cache, and so any caller, sees it.
 *
 * Outcomes are classified: `invalid_grant` / `invalid_client` write the
 * record as `needs_reauth` with its secrets dropped and are never retried;
 * transient failures are retried with `RefreshRetry.retrySchedule` (the lock is
 * released between attempts, so another process may succeed meanwhile) and
 * keep the refresh token; the last failure is noted in `lastError`.
 *
 * @see https://www.rfc-editor.org/rfc/rfc9700#section-4.14 (refresh token rotation)
 */
import { Clock, Data, DateTime, Duration, Effect, Option, Result, type Scope } from "effect"
import * as AuditLog from "../AuditLog.js"
import * as Metrics from "../Metrics.js"
import { describe } from "../oauth/OAuthError.js"
import * as OAuthClient from "../OAuthClient.js"
import * as RefreshLock from "../RefreshLock.js"
import type { Loaded } from "../SessionConfig.js"
import type { RefreshOutcome } from "../Sessions.js"
import type { Reason } from "../SessionsError.js"
import * as TokenStore from "../TokenStore.js"
import * as RefreshRetry from "./RefreshRetry.js"
import * as SessionCache from "./SessionCache.js"
import { needsReauthRecord, refreshedRecord, targetOf } from "./RefreshRecords.js"
import * as SingleFlight from "./SingleFlight.js"

/** Why a refresh produced no token: re-authentication, or one of the Sessions error reasons. */
export type Failure =
  | { readonly _tag: "Reauth"; readonly sessionId: string; readonly detail: string }
  | Reason

/** A refresh that produced no token. */
export class RefreshFailed extends Data.TaggedError("RefreshFailed")<{
  readonly provider: string
  readonly failure: Failure
}> {}

/** What a refresh left behind: the record as persisted, and what happened. */
export interface Done {
  readonly record: TokenStore.SessionRecord
  readonly outcome: RefreshOutcome
}

/** What a caller asks of a refresh. */
export interface Request {
  readonly id: string
  readonly provider: string
  /** The access token must stay valid at least this long afterwards. */
  readonly needMs: number
  /** Refresh even when the token is valid for `needMs`. */
  readonly force: boolean
  /** The generation the caller last saw: a higher one under the lock means another process refreshed. */
  readonly seenGeneration: number
}

/** The services a refresher works with. */
export interface Deps {
  readonly store: TokenStore.Shape
  readonly lock: RefreshLock.Shape
  readonly oauth: OAuthClient.Shape
  readonly config: Loaded
  readonly namespace: string
  readonly cache: SessionCache.SessionCache
  readonly scope: Scope.Scope
}

type Step = Result.Result<Done, Failure>
const done = (record: TokenStore.SessionRecord, outcome: RefreshOutcome): Step => Result.succeed({ record, outcome })
const failed = (failure: Failure): Step => Result.fail(failure)

/** Builds the refresher of one Sessions instance. */
export const make = (deps: Deps) => {
  const { cache, config, lock, oauth, store } = deps
  const settings = config.settings.tokenRefresh
  const schedule = RefreshRetry.retrySchedule(settings)
  const timeout = Duration.millis(settings.refreshTimeoutSeconds * 1000)
  // Waiters queue behind at most one attempt (bounded by the timeout) and its store write.
  const waitTimeout = Duration.max(RefreshLock.defaultWaitTimeout, Duration.sum(timeout, Duration.seconds(10)))
  const flights = SingleFlight.make<Done, RefreshFailed>(deps.scope)

  const persist = (record: TokenStore.SessionRecord) => store.put(record).pipe(Effect.withSpan("Sessions.persist"))

  /** Notes a failure on the record without touching its secrets; a failed write only costs the note. */
  const noteFailure = (record: TokenStore.SessionRecord, error: OAuthClient.OAuthError) =>
    Effect.flatMap(DateTime.now, (now) =>
      persist(new TokenStore.SessionRecord({ ...record, updatedAt: now, lastError: error.message }))).pipe(
        Effect.catch((e) => Effect.logWarning(`could not note a refresh failure: ${e.message}`))
      )

  /** One attempt, under the lock: fails only with a retryable OAuth error (everything else is a `Step`). */
  const attempt = (request: Request): Effect.Effect<Step, OAuthClient.OAuthError | RefreshLock.RefreshLockError> =>
    Effect.gen(function*() {
      const read = yield* store.get(request.id).pipe(Effect.result)
      if (Result.isFailure(read)) {
        const reason = read.failure.reason._tag
        return reason === "NotFound" || reason === "Corrupted"
          ? failed({ _tag: "Reauth", sessionId: request.id, detail: read.failure.message })
          : failed({ _tag: "Store", error: read.failure })
      }
      const record = read.success
      if (record.state === "needs_reauth") {
        cache.update(record)
        return failed({ _tag: "Reauth", sessionId: record.id, detail: record.lastError ?? "the session needs to be signed in again" })
      }
      const validMs = SessionCache.expiresAtMsOf(record) - (yield* Clock.currentTimeMillis)
      const othersDid = record.generation > request.seenGeneration
      if (validMs >= request.needMs && (!request.force || othersDid)) {
        cache.update(record)
        return done(record, othersDid ? { _tag: "Reused", generation: record.generation } : { _tag: "Fresh" })
      }
      if (record.refreshToken === undefined) {
        return failed({
          _tag: "Reauth",
          sessionId: record.id,
          detail: validMs > 0
            ? "the session has no refresh token and its access token is about to expire"
            : "the access token expired and the session has no refresh token"
        })
      }
      const response = yield* oauth.refresh({
        provider: targetOf(record, config.providers.get(record.provider)),
        refreshToken: record.refreshToken,
        resource: record.resource,
        timeout
      }).pipe(Effect.result)
      const now = yield* DateTime.now
      if (Result.isFailure(response)) {
        const error = response.failure
        if (OAuthClient.requiresReauth(error.reason)) {
          const dead = needsReauthRecord(record, error.message, now)
          yield* persist(dead).pipe(
            Effect.catch((e) => Effect.logWarning(`could not mark a dead grant as needs_reauth: ${e.message}`))
          )
          cache.update(dead)
          return failed({ _tag: "Reauth", sessionId: record.id, detail: describe(error.reason) })
        }
        yield* noteFailure(record, error)
        return error.retryable ? yield* error : failed({ _tag: "OAuth", error })
      }
      const next = refreshedRecord(record, response.success, now)
      // Persist before exposing: a rotated refresh token that is not stored must not be used.
      const stored = yield* persist(next).pipe(Effect.retry(RefreshRetry.persistRetrySchedule), Effect.result)
      if (Result.isFailure(stored)) return failed({ _tag: "PersistFailed", error: stored.failure })
      cache.update(next)
      return done(next, {
        _tag: "Refreshed",
        rotated: response.success.refresh_token !== undefined,
        generation: next.generation
      })
    })

  /**
   * Checked while another process holds the lock: when it has stored a newer
   * generation that meets the request, that is the answer, without waiting
   * for the lock only to read the same record under it. Safe without the
   * lock: a stored generation is persisted before anyone uses it, and
   * nothing is sent to the server. A failed read just keeps waiting.
   */
  const othersDone = (request: Request): Effect.Effect<Option.Option<Step>> =>
    store.get(request.id).pipe(
      Effect.flatMap((record) =>
        Effect.map(Clock.currentTimeMillis, (nowMs) => {
          const othersDid = record.generation > request.seenGeneration
          if (record.state !== "active" || !othersDid || SessionCache.expiresAtMsOf(record) - nowMs < request.needMs) {
            return Option.none<Step>()
          }
          cache.update(record)
          return Option.some(done(record, { _tag: "Reused", generation: record.generation }))
        })
      ),
      Effect.orElseSucceed(() => Option.none<Step>())
    )

  const fingerprintOf = (id: string) => TokenStore.fingerprint(deps.namespace, id)

  /** The secret-free reason of a failure, for spans, metrics and the audit log. */
  const reasonOf = (failure: Failure): string => {
    switch (failure._tag) {
      case "Reauth":
        return failure.detail
      case "OAuth":
        return failure.error.reason._tag
      case "Store":
      case "PersistFailed":
        return `${failure.error.backend} ${failure.error.reason._tag}`
      case "Lock":
        return failure.error.reason._tag
      default:
        return failure._tag
    }
  }

  /** Counts and audits one finished refresh. Fresh answers are not session events. */
  const observe = (request: Request, startMs: number, result: Result.Result<Done, RefreshFailed>) =>
    Effect.gen(function*() {
      const elapsed = (yield* Clock.currentTimeMillis) - startMs
      const base = { provider: request.provider, sessionId: request.id, backend: store.backend }
      if (Result.isSuccess(result)) {
        const { outcome, record } = result.success
        yield* Metrics.refreshDone(outcome._tag, elapsed)
        if (outcome._tag === "Refreshed") {
          yield* AuditLog.recordAll([
            { ...base, event: "refresh", outcome: "refreshed", generation: record.generation },
            ...(outcome.rotated ? [{ ...base, event: "rotation" as const, outcome: "rotated", generation: record.generation }] : [])
          ])
        } else if (outcome._tag === "Reused") {
          yield* AuditLog.record({ ...base, event: "refresh", outcome: "reused", generation: record.generation })
        }
        return
      }
      const failure = result.failure.failure
      yield* Metrics.refreshDone(failure._tag === "Reauth" ? "NeedsReauth" : failure._tag === "OAuth" ? "Failed" : failure._tag, elapsed)
      yield* failure._tag === "Reauth"
        ? AuditLog.record({ ...base, event: "reauth_required", outcome: "needs_reauth", reason: reasonOf(failure) })
        : AuditLog.record({ ...base, event: "refresh", outcome: "failed", reason: reasonOf(failure) })
    })

  /** Attempts with retries; the lock is taken per attempt and released before every wait. */
  const run = (request: Request): Effect.Effect<Done, RefreshFailed> =>
    Effect.flatMap(Clock.currentTimeMillis, (startMs) =>
      runAttempts(request).pipe(
        Effect.result,
        Effect.tap((result) => observe(request, startMs, result)),
        Effect.flatMap((result) => Result.isSuccess(result) ? Effect.succeed(result.success) : Effect.fail(result.failure))
      )).pipe(
        Effect.withSpan("Sessions.refreshGrant", {
          attributes: {
            "session.provider": request.provider,
            "session.fingerprint": fingerprintOf(request.id),
            "session.backend": store.backend,
            "refresh.force": request.force
          }
        })
      )

  const runAttempts = (request: Request): Effect.Effect<Done, RefreshFailed> =>
    lock.withLock(request.id, attempt(request), { waitTimeout, whileBusy: othersDone(request) }).pipe(
      Effect.catchTag("RefreshLockError", (error) => Effect.succeed(failed({ _tag: "Lock", error }))),
      Effect.retry(schedule),
      Effect.catchTag("OAuthError", (error) => Effect.succeed(failed({ _tag: "OAuth", error }))),
      Effect.flatMap((step) =>
        Result.isSuccess(step)
          ? Effect.succeed(step.success)
          : Effect.fail(new RefreshFailed({ provider: request.provider, failure: step.failure }))
      ),
      Effect.tap(({ outcome, record }) =>
        Effect.annotateCurrentSpan({
          "session.outcome": outcome._tag,
          "refresh.outcome": outcome._tag,
          "session.generation": record.generation,
          "refresh.generation": record.generation
        })
      ),
      Effect.tapError((e) =>
        Effect.annotateCurrentSpan({
          "session.outcome": e.failure._tag,
          "refresh.outcome": e.failure._tag,
          "error.reason": reasonOf(e.failure)
        })
      )
    )

  /** Whether a flight someone else started answers this request too. */
  const satisfies = (request: Request, result: Done, nowMs: number) =>
    result.outcome._tag === "Refreshed" ||
    (!request.force && SessionCache.expiresAtMsOf(result.record) - nowMs >= request.needMs)

  /**
   * Refreshes (or reuses) the grant of `request.id`, once per id at a time in
   * this process: concurrent requests join the flight in progress. A joiner
   * whose needs that flight did not meet (a longer `minTtl`, a forced refresh)
   * flies once more, and takes what that gives.
   */
  const refresh = (request: Request): Effect.Effect<Done, RefreshFailed> =>
    Effect.flatMap(flights.run(request.id, () => run(request)), ({ joined, value }) =>
      !joined
        ? Effect.succeed(value)
        : Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
          satisfies(request, value, nowMs)
            ? Effect.succeed(value)
            : Effect.map(flights.run(request.id, () => run(request)), (again) => again.value)))

  return { refresh }
}

/** A refresher of one Sessions instance. */
export type Refresher = ReturnType<typeof make>
