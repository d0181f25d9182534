/**
 * TokenResponse: the successful token response of RFC 6749 section 5.1,
 * decoded strictly enough to be safe and loosely enough for real servers
 * (`expires_in` as a numeric string, `refresh_token` absent, extra members).
 *
 * Used by `mtsession import` and by every grant that stores a session: the
 * response becomes a {@link TokenStore.SessionRecord} with an absolute expiry
 * computed from the `Clock` at the moment the response was received.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1
 */
import { Data, DateTime, Effect, Schema } from "effect"
import * as SchemaIssues from "./internal/SchemaIssues.js"
import * as TokenStore from "./TokenStore.js"

/** Accepts a non-negative integer or its decimal string (some servers send `"3600"`). */
const ExpiresIn = Schema.Union([Schema.Int, Schema.NumberFromString.pipe(Schema.check(Schema.isInt()))]).pipe(
  Schema.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(10 * 365 * 24 * 3600))
)

/** An RFC 6749 §5.1 token response. Secrets decode straight into `Redacted`. */
export class TokenResponse extends Schema.Class<TokenResponse>("magictunnel-session/TokenResponse")({
  access_token: Schema.RedactedFromValue(Schema.NonEmptyString),
  token_type: Schema.NonEmptyString,
  expires_in: Schema.optional(ExpiresIn),
  refresh_token: Schema.optional(Schema.RedactedFromValue(Schema.NonEmptyString)),
  scope: Schema.optional(Schema.String),
  id_token: Schema.optional(Schema.RedactedFromValue(Schema.NonEmptyString))
}) {}

/** The largest token response accepted (a real one is a few KiB). */
export const maxResponseBytes = 256 * 1024

/** A token response that could not be used. The message never contains a token. */
export class TokenResponseError extends Data.TaggedError("TokenResponseError")<{
  readonly detail: string
}> {
  override get message(): string {
    return `invalid token response: ${this.detail}`
  }
}

const decodeJson = Schema.decodeUnknownEffect(Schema.fromJsonString(TokenResponse))
const decodeObject = Schema.decodeUnknownEffect(TokenResponse)

/** Decodes a token response from JSON text; errors name members, never their values. */
export const fromJson = (text: string): Effect.Effect<TokenResponse, TokenResponseError> => {
  if (text.length > maxResponseBytes) {
    return Effect.fail(new TokenResponseError({ detail: `larger than ${maxResponseBytes} bytes` }))
  }
  return decodeJson(text).pipe(Effect.mapError((e) => new TokenResponseError({ detail: SchemaIssues.render(e.issue) })))
}

/** Decodes a token response from an already parsed value. */
export const fromUnknown = (u: unknown): Effect.Effect<TokenResponse, TokenResponseError> =>
  decodeObject(u).pipe(Effect.mapError((e) => new TokenResponseError({ detail: SchemaIssues.render(e.issue) })))

/** Scopes granted: the response's `scope` when present (RFC 6749 §5.1), else what was requested. */
export const grantedScopes = (response: TokenResponse, requested: ReadonlyArray<string>): ReadonlyArray<string> =>
  response.scope === undefined ? requested : response.scope.split(/\s+/).filter((s) => s.length > 0)

/** Builds a new session record from a token response received now. */
export const toRecord = Effect.fnUntraced(function*(response: TokenResponse, session: {
  readonly id: string
  readonly provider: string
  readonly issuer?: string | undefined
  readonly tokenEndpoint?: string | undefined
  readonly clientId: string
  readonly requestedScopes: ReadonlyArray<string>
  readonly resource?: string | undefined
  readonly subject?: string | undefined
}) {
  const now = yield* DateTime.now
  return yield* TokenStore.newRecord({
    id: session.id,
    provider: session.provider,
    issuer: session.issuer,
    tokenEndpoint: session.tokenEndpoint,
    clientId: session.clientId,
    scopes: grantedScopes(response, session.requestedScopes),
    resource: session.resource,
    tokenType: response.token_type,
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    idToken: response.id_token,
    expiresAt: response.expires_in === undefined ? undefined : DateTime.add(now, { seconds: response.expires_in }),
    subject: session.subject
  })
})
