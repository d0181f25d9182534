/**
 * SessionRecovery: what recovery does with one session. It is read from the
 * store (a damaged record shows up here), classified by state and expiry,
 * refreshed through `Sessions` when expiring or expired, and, when asked,
 * its access token is validated with the server. Every failure becomes an
 * outcome of that session; nothing escapes to the other sessions.
 */
import { Cause, Clock, DateTime, Duration, Effect, Option } from "effect"
import type * as OAuthClient from "../OAuthClient.js"
import { type Loaded, type ProviderSettings, providerSettings } from "../SessionConfig.js"
import type * as Sessions from "../Sessions.js"
import * as TokenStore from "../TokenStore.js"

/** What recovery made of one session. */
export type Outcome = "recovered" | "refreshed" | "needs_reauth" | "failed"

/** One session's outcome, with whether a failure may go away when tried again. */
export interface Result {
  readonly id: string
  readonly provider: string
  readonly outcome: Outcome
  readonly detail: Option.Option<string>
  /** A failure that may go away when tried again (network, 5xx, a busy lock). */
  readonly transient: boolean
}

/** `read`: get each record (startup) rather than trust the listing (periodic check). */
export interface Mode {
  readonly read: boolean
  readonly validate: boolean
}

/** What the server said of an access token. Only a definite "no" is `Inactive`. */
type Verdict =
  | { readonly _tag: "Active" }
  | { readonly _tag: "Inactive"; readonly detail: string }
  | { readonly _tag: "Inconclusive"; readonly detail: string }

const active: Verdict = { _tag: "Active" }
const inactive = (detail: string): Verdict => ({ _tag: "Inactive", detail })
const inconclusive = (detail: string): Verdict => ({ _tag: "Inconclusive", detail })

const sessionsErrorIsTransient = (e: Sessions.SessionsError): boolean => {
  const r = e.reason
  return r._tag === "UnknownProvider" ? false : r.error.retryable
}

const minutesText = (ms: number) => `${Math.max(0, Math.round(ms / 60_000))} min`

/** The per-session step of recovery over these services. */
export const make = (deps: {
  readonly config: Loaded
  readonly store: TokenStore.Shape
  readonly sessions: Sessions.Shape
  readonly oauth: OAuthClient.Shape
  /** For session fingerprints in spans. */
  readonly namespace: string
}) => {
  const { config, oauth, sessions, store } = deps
  const settings = config.settings.sessionRecovery
  const thresholdMs = Duration.toMillis(Duration.minutes(config.settings.tokenRefresh.refreshThresholdMinutes))
  const validationTimeout = Duration.seconds(settings.tokenValidationTimeoutSeconds)

  const result = (m: TokenStore.SessionMetadata, outcome: Outcome, detail?: string, transient = false): Result => ({
    id: m.id,
    provider: m.provider,
    outcome,
    detail: Option.fromUndefinedOr(detail),
    transient
  })
  const login = (m: TokenStore.SessionMetadata) => `run \`mtsession login ${m.provider}\``

  const refresh = (m: TokenStore.SessionMetadata, force: boolean, why?: string) =>
    sessions.refresh(m.id, { force }).pipe(
      Effect.map((outcome): Result => {
        switch (outcome._tag) {
          case "Refreshed":
            return result(m, "refreshed", why)
          case "Reused":
            return result(m, "refreshed", why ?? "another process had already refreshed it")
          case "Fresh":
            return result(m, "recovered", why)
          case "NeedsReauth":
            return result(m, "needs_reauth", `${outcome.reason}; ${login(m)}`)
          case "Failed":
            return result(m, "failed", outcome.reason, outcome.retryable)
        }
      }),
      Effect.catch((e) => Effect.succeed(result(m, "failed", e.message, sessionsErrorIsTransient(e))))
    )

  /** The provider to validate against: the configured one, else what the record remembers. */
  const providerOf = (m: TokenStore.SessionMetadata, record: TokenStore.SessionRecord): ProviderSettings =>
    config.providers.get(m.provider) ?? providerSettings({
      name: m.provider,
      issuer: Option.fromUndefinedOr(record.issuer),
      tokenEndpoint: Option.fromUndefinedOr(record.tokenEndpoint),
      clientId: record.clientId,
      scopes: record.scopes,
      resource: Option.fromUndefinedOr(record.resource)
    })

  /**
   * Asks the server whether the access token is active: introspection (RFC
   * 7662) where the provider has it, else userinfo. Only a definite "no" is
   * `Inactive`; timeouts and transient errors are `Inconclusive`.
   */
  const validate = (m: TokenStore.SessionMetadata, record: TokenStore.SessionRecord) =>
    Effect.gen(function*() {
      const token = record.accessToken
      if (token === undefined) return inconclusive("no access token stored")
      const provider = providerOf(m, record)
      const endpoints = yield* oauth.discover(provider)
      if (Option.isSome(endpoints.introspectionEndpoint)) {
        const answer = yield* oauth.introspect(provider, token)
        return answer.active
          ? active
          : inactive("introspection reports the access token inactive")
      }
      if (Option.isSome(endpoints.userinfoEndpoint)) {
        return yield* oauth.userinfo(provider, token).pipe(
          Effect.as(active),
          Effect.catch((e) =>
            e.retryable
              ? Effect.fail(e)
              : Effect.succeed(inactive(`userinfo refused the access token (${e.message})`))
          )
        )
      }
      return inconclusive("the provider has no introspection or userinfo endpoint")
    }).pipe(
      Effect.timeoutOption(validationTimeout),
      Effect.map(Option.getOrElse(() => inconclusive(`validation timed out after ${settings.tokenValidationTimeoutSeconds} s`))),
      Effect.catch((e) => Effect.succeed(inconclusive(`validation failed: ${e.message}`)))
    )

  /** Classifies one session; `none` when it vanished between list and get. */
  const classify = Effect.fnUntraced(function*(
    listed: TokenStore.SessionMetadata,
    mode: Mode
  ) {
    let m = listed
    let record = Option.none<TokenStore.SessionRecord>()
    // The record is read when the listing did not verify it, or validation needs its token.
    if (mode.read && listed.state !== "corrupted" && (mode.validate || store.listVerifies !== true)) {
      const got = yield* store.get(listed.id).pipe(
        Effect.map((r) => ({ _tag: "Found" as const, record: r })),
        Effect.catch((error) => Effect.succeed({ _tag: "Error" as const, error }))
      )
      if (got._tag === "Error") {
        if (got.error.reason._tag === "NotFound") return Option.none()
        return Option.some(result(listed, "failed", got.error.message, got.error.retryable))
      }
      record = Option.some(got.record)
      m = TokenStore.metadataOf(got.record, store.backend)
    }
    if (m.state === "corrupted") {
      return Option.some(result(m, "failed", `the stored record is corrupted; ${login(m)}`))
    }
    if (m.state === "needs_reauth") {
      return Option.some(result(m, "needs_reauth", `${Option.getOrElse(m.lastError, () => "re-authentication required")}; ${login(m)}`))
    }
    const now = DateTime.toEpochMillis(yield* DateTime.now)
    const remaining = Option.match(m.expiresAt, {
      onNone: () => Number.POSITIVE_INFINITY,
      onSome: (at) => DateTime.toEpochMillis(at) - now
    })
    if (remaining <= 0) {
      return Option.some(
        m.hasRefreshToken
          ? yield* refresh(m, false)
          : result(m, "needs_reauth", `expired, and there is no refresh token; ${login(m)}`)
      )
    }
    if (remaining <= thresholdMs) {
      return Option.some(
        m.hasRefreshToken
          ? yield* refresh(m, false)
          : result(m, "recovered", `expires in ${minutesText(remaining)}; no refresh token to renew it`)
      )
    }
    if (!mode.validate || Option.isNone(record)) return Option.some(result(m, "recovered"))
    const verdict = yield* validate(m, record.value)
    switch (verdict._tag) {
      case "Active":
        return Option.some(result(m, "recovered", "validated with the server"))
      case "Inconclusive":
        return Option.some(result(m, "recovered", `not validated: ${verdict.detail}`))
      case "Inactive":
        return Option.some(
          m.hasRefreshToken
            ? yield* refresh(m, true, `${verdict.detail}; refreshed`)
            : result(m, "needs_reauth", `${verdict.detail}, and there is no refresh token; ${login(m)}`)
        )
    }
  })

  const traced = Effect.fn("Recovery.session")(function*(
    m: TokenStore.SessionMetadata,
    mode: Mode
  ) {
    yield* Effect.annotateCurrentSpan({
      "session.provider": m.provider,
      "session.fingerprint": TokenStore.fingerprint(deps.namespace, m.id)
    })
    const r = yield* classify(m, mode).pipe(
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.logError(`recovery of session ${m.id} failed unexpectedly`, cause).pipe(
            Effect.as(Option.some(result(m, "failed", "unexpected error (see the error log)")))
          )
      )
    )
    yield* Effect.annotateCurrentSpan("recovery.outcome", Option.match(r, { onNone: () => "gone", onSome: (x) => x.outcome }))
    return [m.id, r] as const
  })

  /**
   * True when the listing alone settles a session: verified by the store (or
   * not to be read), active, valid beyond the refresh threshold, and not to be
   * validated with the server. Nothing is done for it, so its span is made
   * with its attributes in one step (no generator, no annotations): a full
   * traced run costs about as much as the rest of its recovery.
   */
  const settledByListing = (m: TokenStore.SessionMetadata, mode: Mode, nowMs: number) =>
    !mode.validate &&
    (!mode.read || store.listVerifies === true) &&
    m.state === "active" &&
    (Option.isNone(m.expiresAt) || DateTime.toEpochMillis(m.expiresAt.value) - nowMs > thresholdMs)

  /** One session's outcome, in its own `Recovery.session` span; `none` when it vanished between list and get. */
  const one = (m: TokenStore.SessionMetadata, mode: Mode) =>
    Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
      settledByListing(m, mode, nowMs)
        ? Effect.succeed([m.id, Option.some(result(m, "recovered"))] as const).pipe(
          Effect.withSpan("Recovery.session", {
            attributes: {
              "session.provider": m.provider,
              "session.fingerprint": TokenStore.fingerprint(deps.namespace, m.id),
              "recovery.outcome": "recovered"
            }
          })
        )
        : traced(m, mode))

  return { one, result }
}
