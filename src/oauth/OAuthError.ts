/**
 * OAuthError: why a call to an authorization server failed, classified so
 * that a caller can decide without parsing text: `invalid_grant` and
 * `invalid_client` mean "sign in again" (never retried with the same
 * credentials), 5xx, 429, network failures, timeouts and garbled responses
 * are transient (retry later, keep the token).
 *
 * Classification is exported on its own ({@link classify}) so the refresh
 * supervisor can share it. Retries are not done here: the caller owns the
 * `Schedule`, and {@link retryAfterOf} tells it what the server asked for.
 *
 * Nothing secret reaches a message: details are built from the library's
 * fixed messages and the server's `error_description`, truncated and scrubbed
 * of every secret the failing operation sent.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2 (token endpoint errors)
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3 (Retry-After)
 */
import { Data, DateTime, Duration, Effect, Option } from "effect"
import * as oauth from "oauth4webapi"

/** Why an operation against an authorization server failed. */
export type Reason =
  /** The refresh token or code is dead (expired, revoked, reused): sign in again. */
  | { readonly _tag: "InvalidGrant"; readonly description: Option.Option<string> }
  /** The client is unknown or its authentication failed: fix the configuration, sign in again. */
  | { readonly _tag: "InvalidClient"; readonly description: Option.Option<string> }
  /** A 5xx answer. */
  | { readonly _tag: "ServerError"; readonly status: number }
  /** 429, or 503 with `Retry-After`: the server asked to slow down. */
  | { readonly _tag: "RateLimited"; readonly status: number; readonly retryAfter: Option.Option<Duration.Duration> }
  /** Connection refused or reset, DNS failure: nothing usable came back. */
  | { readonly _tag: "Network"; readonly detail: string }
  /** No answer (or no user action) within the allowed time. */
  | { readonly _tag: "Timeout"; readonly after: Duration.Duration; readonly detail: string }
  /** An answer that is not the JSON the protocol requires (treated as transient: proxies and outages produce these). */
  | { readonly _tag: "MalformedResponse"; readonly detail: string }
  /** The user or the server refused the authorization. */
  | { readonly _tag: "AccessDenied"; readonly description: Option.Option<string> }
  /** The device code (RFC 8628) expired before the user approved it. */
  | { readonly _tag: "ExpiredToken"; readonly description: Option.Option<string> }
  /** Any other OAuth error code, or a response that violates the protocol (state, iss, ID token checks). */
  | { readonly _tag: "Protocol"; readonly code: string; readonly description: Option.Option<string> }
  /** An `http://` issuer or endpoint on a host that is not loopback. */
  | { readonly _tag: "InsecureIssuer"; readonly url: string }
  /** Metadata could not be obtained, or lacks an endpoint the operation needs. */
  | { readonly _tag: "Discovery"; readonly detail: string }

/** The operations of `OAuthClient`, as named in errors and spans. */
export type Operation =
  | "discover"
  | "authorizationCode"
  | "deviceAuthorization"
  | "refresh"
  | "revoke"
  | "introspect"
  | "userinfo"

/** Whether trying again later, with the same credentials, may succeed. */
export const isRetryable = (reason: Reason): boolean => {
  switch (reason._tag) {
    case "ServerError":
    case "RateLimited":
    case "Network":
    case "Timeout":
    case "MalformedResponse":
      return true
    default:
      return false
  }
}

/** Whether the grant is dead and the session must be signed in again (`needs_reauth`). */
export const requiresReauth = (reason: Reason): boolean =>
  reason._tag === "InvalidGrant" || reason._tag === "InvalidClient"

/** The wait the server asked for, when it asked. */
export const retryAfterOf = (reason: Reason): Option.Option<Duration.Duration> =>
  reason._tag === "RateLimited" ? reason.retryAfter : Option.none()

/** A failed call to an authorization server. The message never contains a token, code, verifier, state or secret. */
export class OAuthError extends Data.TaggedError("OAuthError")<{
  readonly provider: string
  readonly operation: Operation
  readonly reason: Reason
}> {
  /** Whether trying again later may succeed; see {@link isRetryable}. */
  get retryable(): boolean {
    return isRetryable(this.reason)
  }
  override get message(): string {
    return `${this.provider} ${this.operation}: ${describe(this.reason)}`
  }
}

const withDescription = (text: string, description: Option.Option<string>): string =>
  Option.match(description, { onNone: () => text, onSome: (d) => `${text} (${d})` })

/** One line for a reason, secret-free by construction. */
export const describe = (reason: Reason): string => {
  switch (reason._tag) {
    case "InvalidGrant":
      return withDescription("the grant is invalid, expired or revoked: sign in again", reason.description)
    case "InvalidClient":
      return withDescription("client authentication failed", reason.description)
    case "ServerError":
      return `server error (HTTP ${reason.status})`
    case "RateLimited":
      return `rate limited (HTTP ${reason.status})${
        Option.match(reason.retryAfter, {
          onNone: () => "",
          onSome: (d) => `, retry after ${Duration.format(d)}`
        })
      }`
    case "Network":
      return `network error: ${reason.detail}`
    case "Timeout":
      return `timed out after ${Duration.format(reason.after)}: ${reason.detail}`
    case "MalformedResponse":
      return `malformed response: ${reason.detail}`
    case "AccessDenied":
      return withDescription("access denied", reason.description)
    case "ExpiredToken":
      return withDescription("the device code expired before it was approved", reason.description)
    case "Protocol":
      return withDescription(`protocol error ${reason.code}`, reason.description)
    case "InsecureIssuer":
      return `refusing ${reason.url}: plain http is allowed only on loopback (127.0.0.0/8, ::1, localhost)`
    case "Discovery":
      return `discovery failed: ${reason.detail}`
  }
}

// -----------------------------------------------------------------------------
// Classification
// -----------------------------------------------------------------------------

/**
 * A failure of the transport under oauth4webapi (the fetch bridge), carried
 * through its promise as a rejection and recognised by {@link classify}.
 */
export class TransportFailure extends Error {
  constructor(readonly reason: Reason) {
    super(describe(reason))
    this.name = "TransportFailure"
  }
}

const maxDetail = 200

/** Removes every secret (of at least 4 characters) and bounds the length. */
export const scrub = (text: string, secrets: ReadonlyArray<string>): string => {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join("<redacted>")
  }
  // oauth4webapi messages quote parameter names, never values; still bound what a server wrote.
  return out.length > maxDetail ? `${out.slice(0, maxDetail)}...` : out
}

/**
 * Parses `Retry-After`: delta-seconds or an HTTP-date, relative to `now`;
 * a date in the past is a zero wait; anything else is ignored.
 *
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3
 */
export const parseRetryAfter = (value: string | null | undefined, now: DateTime.Utc): Option.Option<Duration.Duration> => {
  if (value === null || value === undefined) return Option.none()
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Option.some(Duration.seconds(Number(trimmed)))
  // IMF-fixdate, and the obsolete RFC 850 / asctime forms, all carry a weekday name.
  if (!/^[A-Za-z]{3}/.test(trimmed)) return Option.none()
  return DateTime.make(trimmed).pipe(
    Option.map((at) => Duration.millis(Math.max(0, DateTime.toEpochMillis(at) - DateTime.toEpochMillis(now))))
  )
}

const description = (text: string | undefined, secrets: ReadonlyArray<string>): Option.Option<string> =>
  text === undefined || text.length === 0 ? Option.none() : Option.some(scrub(text, secrets))

/** Classifies an HTTP status that is not the expected success, before looking at any body. */
const fromStatus = (status: number, headers: Headers, now: DateTime.Utc): Option.Option<Reason> => {
  if (status === 429) {
    return Option.some({ _tag: "RateLimited", status, retryAfter: parseRetryAfter(headers.get("retry-after"), now) })
  }
  if (status === 503) {
    const retryAfter = parseRetryAfter(headers.get("retry-after"), now)
    if (Option.isSome(retryAfter)) return Option.some({ _tag: "RateLimited", status, retryAfter })
  }
  if (status >= 500 && status <= 599) return Option.some({ _tag: "ServerError", status })
  return Option.none()
}

/** Maps an OAuth error code (RFC 6749 §5.2, RFC 8628 §3.5) to a reason. */
export const fromErrorCode = (
  code: string,
  errorDescription: string | undefined,
  secrets: ReadonlyArray<string>
): Reason => {
  const d = description(errorDescription, secrets)
  switch (code) {
    case "invalid_grant":
      return { _tag: "InvalidGrant", description: d }
    case "invalid_client":
    case "unauthorized_client":
      return { _tag: "InvalidClient", description: d }
    case "access_denied":
      return { _tag: "AccessDenied", description: d }
    case "expired_token":
      return { _tag: "ExpiredToken", description: d }
    default:
      return { _tag: "Protocol", code: scrub(code, secrets), description: d }
  }
}

const isResponse = (u: unknown): u is Response => u instanceof Response

/**
 * Classifies whatever an oauth4webapi call (or the transport under it)
 * rejected with. `secrets` are the values the operation sent (tokens, code,
 * verifier, state, client secret): they are removed from every detail.
 */
export const classifyAt = (cause: unknown, now: DateTime.Utc, secrets: ReadonlyArray<string>): Reason => {
  if (cause instanceof TransportFailure) return cause.reason
  if (cause instanceof oauth.ResponseBodyError) {
    return Option.getOrElse(
      fromStatus(cause.status, cause.response.headers, now),
      () => fromErrorCode(cause.error, cause.error_description, secrets)
    )
  }
  if (cause instanceof oauth.WWWAuthenticateChallengeError) {
    const status = fromStatus(cause.status, cause.response.headers, now)
    if (Option.isSome(status)) return status.value
    const challenge = cause.cause[0]
    const code = challenge?.parameters.error
    if (code !== undefined) return fromErrorCode(code, challenge?.parameters.error_description, secrets)
    return cause.status === 401
      ? { _tag: "InvalidClient", description: Option.some(`HTTP 401 (${scrub(challenge?.scheme ?? "", secrets)} challenge)`) }
      : { _tag: "Protocol", code: `http_${cause.status}`, description: Option.none() }
  }
  if (cause instanceof oauth.AuthorizationResponseError) {
    return fromErrorCode(cause.error, cause.error_description, secrets)
  }
  if (cause instanceof oauth.OperationProcessingError) {
    const detail = scrub(cause.message, secrets)
    // For an unexpected status oauth4webapi hands back the Response itself as the cause.
    if (isResponse(cause.cause)) {
      const status = cause.cause.status
      const byStatus = fromStatus(status, cause.cause.headers, now)
      if (Option.isSome(byStatus)) return byStatus.value
      if (status < 200 || status > 299) {
        return { _tag: "Protocol", code: `http_${status}`, description: Option.some(detail) }
      }
    }
    switch (cause.code) {
      case oauth.RESPONSE_IS_NOT_JSON:
      case oauth.PARSE_ERROR:
      case oauth.RESPONSE_IS_NOT_CONFORM:
        return { _tag: "MalformedResponse", detail }
      case oauth.INVALID_RESPONSE:
        // Missing or mistyped members of a token response; other INVALID_RESPONSE are protocol checks (state, iss).
        return /"response" body/.test(cause.message)
          ? { _tag: "MalformedResponse", detail }
          : { _tag: "Protocol", code: "invalid_response", description: Option.some(detail) }
      case oauth.MISSING_SERVER_METADATA:
      case oauth.INVALID_SERVER_METADATA:
        return { _tag: "Discovery", detail }
      default:
        return { _tag: "Protocol", code: "invalid_response", description: Option.some(detail) }
    }
  }
  if (cause instanceof oauth.UnsupportedOperationError) {
    return { _tag: "Protocol", code: "unsupported", description: Option.some(scrub(cause.message, secrets)) }
  }
  return { _tag: "Protocol", code: "client_error", description: Option.some(scrub(String(cause), secrets)) }
}

/** {@link classifyAt} with the current time from the `Clock`. */
export const classify = (cause: unknown, secrets: ReadonlyArray<string>): Effect.Effect<Reason> =>
  Effect.map(DateTime.now, (now) => classifyAt(cause, now, secrets))
