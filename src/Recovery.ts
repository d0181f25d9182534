/**
 * Recovery: brings every stored session of this user context back at start-up
 * and reports what state each one is in.
 *
 * Each session is read from the store (a damaged record shows up here, not at
 * the first token request) and classified: `recovered` (its access token is
 * valid beyond the refresh threshold), `refreshed` (it was expiring or
 * expired and had a refresh token, so `Sessions.refresh` renewed it),
 * `needs_reauth` (the grant is dead or there is nothing to refresh with) or
 * `failed` (corrupted, or a refresh that failed). Optionally each valid token
 * is checked with the server: RFC 7662 introspection where the provider has
 * it, else OpenID userinfo, bounded by `token_validation_timeout_seconds`.
 *
 * Providers are recovered concurrently and, with `graceful_degradation`, in
 * isolation: one provider failing never holds up or fails the others. With
 * `retry_failed_providers`, a provider whose sessions failed transiently is
 * tried again with {@link retrySchedule}, up to `max_recovery_attempts`.
 * {@link runPeriodic} repeats a lighter check every
 * `validation_interval_minutes` while the process runs.
 *
 * Spans: `Recovery.run` with the counts by outcome, and one `Recovery.session`
 * per session carrying the provider, the session's fingerprint and the
 * outcome; never a token.
 */
import { Cause, Context, Data, Duration, Effect, Layer, Option, Ref, Schedule } from "effect"
import * as AuditLog from "./AuditLog.js"
import * as SessionRecovery from "./internal/SessionRecovery.js"
import * as Metrics from "./Metrics.js"
import * as OAuthClient from "./OAuthClient.js"
import { SessionConfig } from "./SessionConfig.js"
import * as Sessions from "./Sessions.js"
import * as TokenStore from "./TokenStore.js"
import { UserContext } from "./UserContext.js"

/** What recovery made of one session. */
export type Outcome = SessionRecovery.Outcome

/** One session's line in the report. */
export interface SessionOutcome {
  readonly id: string
  readonly provider: string
  readonly outcome: Outcome
  /** Secret-free: why, or what the user should do. */
  readonly detail: Option.Option<string>
}

/** The result of a recovery run: counts by outcome, and every session. */
export interface RecoveryReport {
  readonly recovered: number
  readonly refreshed: number
  readonly needs_reauth: number
  readonly failed: number
  readonly sessions: ReadonlyArray<SessionOutcome>
}

/** Options of a run. */
export interface RunOptions {
  /**
   * Also ask the server whether each valid token is still active (off by
   * default: one request per session, and a token the clock calls valid is
   * almost always accepted).
   */
  readonly validate?: boolean | undefined
}

/** Why a recovery run failed as a whole. */
export type Reason =
  /** The sessions could not be listed. */
  | { readonly _tag: "Store"; readonly error: TokenStore.TokenStoreError }
  /** A provider's sessions failed and `graceful_degradation` is off. */
  | { readonly _tag: "ProviderFailed"; readonly provider: string; readonly detail: string }

/** A recovery run failed as a whole; the message never contains a secret. */
export class RecoveryError extends Data.TaggedError("RecoveryError")<{ readonly reason: Reason }> {
  override get message(): string {
    const r = this.reason
    return r._tag === "Store"
      ? `session recovery could not list the stored sessions: ${r.error.message}`
      : `session recovery failed for provider ${r.provider} (graceful_degradation is off): ${r.detail}`
  }
}

/** The operations. */
export interface Shape {
  /** Loads, classifies and (where needed) refreshes every stored session; the startup recovery. */
  readonly run: (options?: RunOptions) => Effect.Effect<RecoveryReport, RecoveryError>
  /**
   * The lighter periodic check: from the listed metadata only, refreshes
   * sessions that are expired or expiring; with `validate`, also asks the server.
   */
  readonly check: (options?: RunOptions) => Effect.Effect<RecoveryReport, RecoveryError>
}

/** Startup recovery of this user context's sessions. */
export class Recovery extends Context.Service<Recovery, Shape>()("magictunnel-session/Recovery") {}

/** First delay before a provider whose sessions failed transiently is tried again. */
export const retryBase = Duration.seconds(1)

/** Exponential from {@link retryBase}, jittered, `maxAttempts` attempts in all (`max_recovery_attempts`). */
export const retrySchedule = (maxAttempts: number) =>
  Schedule.exponential(retryBase).pipe(Schedule.jittered, Schedule.upTo({ times: Math.max(0, maxAttempts - 1) }))

/** How many providers are recovered at once. */
export const providerConcurrency = 4

/** How many sessions of one provider are recovered at once. */
export const sessionConcurrency = 8

class TransientFailures extends Data.TaggedError("TransientFailures")<{ readonly count: number }> {}

const outcomes: ReadonlyArray<Outcome> = ["recovered", "refreshed", "needs_reauth", "failed"]

/** Counts the outcomes of `sessions` (ordered by provider, then id). */
export const reportOf = (sessions: ReadonlyArray<SessionOutcome>): RecoveryReport => {
  const sorted = [...sessions].sort((a, b) =>
    a.provider === b.provider ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.provider < b.provider ? -1 : 1
  )
  const count = (o: Outcome) => sorted.filter((s) => s.outcome === o).length
  return {
    recovered: count("recovered"),
    refreshed: count("refreshed"),
    needs_reauth: count("needs_reauth"),
    failed: count("failed"),
    sessions: sorted
  }
}

/** One line for logs: the counts. */
export const summarize = (r: RecoveryReport): string =>
  `session recovery: ${r.recovered} recovered, ${r.refreshed} refreshed, ${r.needs_reauth} need re-authentication, ${r.failed} failed`

/** Builds the service. */
export const make = Effect.gen(function*() {
  const config = yield* SessionConfig
  const store = AuditLog.auditStore(Metrics.observeStore(yield* TokenStore.TokenStore))
  const sessions = yield* Sessions.Sessions
  const oauth = yield* OAuthClient.OAuthClient
  const user = yield* UserContext
  const settings = config.settings.sessionRecovery

  const { one, result } = SessionRecovery.make({ config, store, sessions, oauth, namespace: user.namespace })

  /** One provider's sessions, retrying the transient failures when asked to. */
  const recoverProvider = (
    provider: string,
    listed: ReadonlyArray<TokenStore.SessionMetadata>,
    mode: SessionRecovery.Mode & { readonly retry: boolean }
  ) =>
    Effect.gen(function*() {
      const settled = yield* Ref.make(new Map<string, SessionRecovery.Result>())
      const attempt = Effect.gen(function*() {
        const done = yield* Ref.get(settled)
        const pending = listed.filter((m) => {
          const r = done.get(m.id)
          return r === undefined || (r.outcome === "failed" && r.transient)
        })
        const results = yield* Effect.forEach(pending, (m) => one(m, mode), { concurrency: sessionConcurrency })
        const next = yield* Ref.updateAndGet(settled, (prev) => {
          const map = new Map(prev)
          for (const [id, r] of results) {
            if (Option.isSome(r)) map.set(id, r.value)
            else map.delete(id)
          }
          return map
        })
        const transient = Array.from(next.values()).filter((r) => r.outcome === "failed" && r.transient).length
        if (transient > 0) return yield* new TransientFailures({ count: transient })
      })
      yield* (mode.retry && settings.retryFailedProviders
        ? attempt.pipe(
          Effect.tapError((e) => Effect.logWarning(`recovery of ${provider}: ${e.count} session(s) failed transiently; trying again`)),
          Effect.retry(retrySchedule(settings.maxRecoveryAttempts))
        )
        : attempt).pipe(Effect.catchTag("TransientFailures", () => Effect.void))
      const results = Array.from((yield* Ref.get(settled)).values())
      const failed = results.filter((r) => r.outcome === "failed")
      if (!settings.gracefulDegradation && failed.length > 0) {
        return yield* new RecoveryError({
          reason: {
            _tag: "ProviderFailed",
            provider,
            detail: `${failed.length} session(s) failed: ${Option.getOrElse(failed[0]!.detail, () => "unknown")}`
          }
        })
      }
      return results
    })

  const recoverAll = (mode: SessionRecovery.Mode & { readonly retry: boolean }) =>
    Effect.gen(function*() {
      const listed = (yield* store.list.pipe(Effect.mapError((error) => new RecoveryError({ reason: { _tag: "Store", error } }))))
        .filter(TokenStore.isSession)
      const byProvider = new Map<string, Array<TokenStore.SessionMetadata>>()
      for (const m of listed) {
        const group = byProvider.get(m.provider)
        if (group === undefined) byProvider.set(m.provider, [m])
        else group.push(m)
      }
      const perProvider = yield* Effect.forEach(
        byProvider,
        ([provider, group]) =>
          settings.gracefulDegradation
            ? recoverProvider(provider, group, mode).pipe(
              // Isolation: whatever goes wrong with one provider stays with it.
              Effect.catchCause((cause) =>
                Cause.hasInterruptsOnly(cause)
                  ? Effect.failCause(cause)
                  : Effect.logError(`recovery of provider ${provider} failed unexpectedly`, cause).pipe(
                    Effect.as(group.map((m) => result(m, "failed", "unexpected error (see the error log)")))
                  )
              )
            )
            : recoverProvider(provider, group, mode),
        { concurrency: providerConcurrency }
      )
      const report = reportOf(perProvider.flat().map(({ detail, id, outcome, provider }) => ({ id, provider, outcome, detail })))
      yield* Metrics.sessionsListed(listed)
      // Counted once per outcome rather than once per session.
      for (const outcome of outcomes) {
        if (report[outcome] > 0) yield* Metrics.recovered(outcome, report[outcome])
      }
      yield* AuditLog.recordAll(report.sessions.map((s) => ({
        event: "recovery",
        provider: s.provider,
        sessionId: s.id,
        outcome: s.outcome,
        reason: Option.getOrUndefined(s.detail),
        backend: store.backend
      })))
      yield* Effect.annotateCurrentSpan({
        "recovery.recovered": report.recovered,
        "recovery.refreshed": report.refreshed,
        "recovery.needs_reauth": report.needs_reauth,
        "recovery.failed": report.failed
      })
      return report
    })

  const disabled = Effect.logInfo("session recovery is off (session_recovery.enabled)").pipe(Effect.as(reportOf([])))

  const run = Effect.fn("Recovery.run")(function*(options?: RunOptions) {
    if (!settings.enabled) return yield* disabled
    return yield* recoverAll({ read: true, validate: options?.validate ?? false, retry: true })
  })

  const check = Effect.fn("Recovery.check")(function*(options?: RunOptions) {
    if (!settings.enabled) return yield* disabled
    return yield* recoverAll({ read: false, validate: options?.validate ?? false, retry: false })
  })

  return Recovery.of({ run, check })
})

/** The service on the application's Sessions, store, OAuth client and user context. */
export const layer: Layer.Layer<
  Recovery,
  never,
  SessionConfig | TokenStore.TokenStore | Sessions.Sessions | OAuthClient.OAuthClient | UserContext
> = Layer.effect(Recovery, make)

/**
 * The startup recovery: runs when `session_recovery.enabled` and
 * `auto_recovery_on_startup` are on (`none` otherwise), and logs the counts.
 */
export const onStartup = (options?: RunOptions): Effect.Effect<Option.Option<RecoveryReport>, RecoveryError, Recovery | SessionConfig> =>
  Effect.gen(function*() {
    const settings = (yield* SessionConfig).settings.sessionRecovery
    if (!settings.enabled || !settings.autoRecoveryOnStartup) return Option.none()
    const report = yield* (yield* Recovery).run(options)
    yield* report.failed + report.needs_reauth > 0 ? Effect.logWarning(summarize(report)) : Effect.logInfo(summarize(report))
    return Option.some(report)
  })

/** The service, with the startup recovery run while the layer is built (see {@link onStartup}). */
export const layerStartup = (options?: RunOptions): Layer.Layer<
  Recovery,
  RecoveryError,
  SessionConfig | TokenStore.TokenStore | Sessions.Sessions | OAuthClient.OAuthClient | UserContext
> =>
  Layer.effect(
    Recovery,
    Effect.gen(function*() {
      const recovery = yield* make
      yield* onStartup(options).pipe(Effect.provideService(Recovery, recovery))
      return recovery
    })
  )

/**
 * Revalidates every `validation_interval_minutes` while it runs (fork it
 * next to the supervisor): the lighter {@link Shape.check}, first one interval
 * after it starts. A failed check is logged and the next one runs as planned.
 */
export const runPeriodic = (options?: RunOptions): Effect.Effect<void, never, Recovery | SessionConfig> =>
  Effect.gen(function*() {
    const settings = (yield* SessionConfig).settings.sessionRecovery
    if (!settings.enabled) return
    const recovery = yield* Recovery
    yield* recovery.check(options).pipe(
      Effect.tap((r) => r.refreshed + r.failed + r.needs_reauth > 0 ? Effect.logInfo(summarize(r)) : Effect.void),
      Effect.catch((e) => Effect.logWarning(e.message)),
      Effect.schedule(Schedule.spaced(Duration.minutes(settings.validationIntervalMinutes))),
      Effect.asVoid
    )
  })
