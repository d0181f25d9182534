/**
 * Dynamic client registration (RFC 7591) and the registration's record.
 *
 * A registration is one client per authorization server and user context:
 * a public native client (RFC 8252: loopback redirect on any port, PKCE,
 * `token_endpoint_auth_method: none`) so that any process of the user can
 * refresh its sessions without a secret. It is kept as a record of its own
 * kind in the same `TokenStore` as the sessions: id `dcr~<hash of the
 * issuer>`, provider `dcr`, token type `client_registration`. So it gets
 * each backend's encryption (AES-GCM bound to the namespace and id, or the
 * OS keyring), its atomic writes and its namespace isolation, with no
 * second store to configure, back up or migrate. The secret parts (client
 * secret, RFC 7592 registration access token) are sealed inside the
 * record's `idToken` member as one JSON document; the record has no access
 * or refresh token, so nothing ever refreshes, revokes or introspects it.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7591#section-3
 * @see https://www.rfc-editor.org/rfc/rfc7592#section-2.1 (reading a registration back)
 */
import { Data, DateTime, Effect, Option, Redacted, Schema } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { transportOf } from "../oauth/Fetch.js"
import * as TokenStore from "../TokenStore.js"

/** The provider name registrations are stored under (never a provider of sessions). */
export const recordProvider = TokenStore.clientRegistrationProvider

/** The token type that marks a registration record. */
export const recordTokenType = "client_registration"

/** The redirect URI registered: loopback, any port (RFC 8252 §7.3). */
export const redirectUri = "http://127.0.0.1/callback"

/** The client metadata sent (RFC 7591 §2). */
export const clientMetadata = (options: { readonly clientName: string; readonly scopes: ReadonlyArray<string> }) => ({
  client_name: options.clientName,
  redirect_uris: [redirectUri],
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
  token_endpoint_auth_method: "none",
  application_type: "native",
  ...(options.scopes.length === 0 ? {} : { scope: options.scopes.join(" ") })
})

/** RFC 7591 §3.2.1: the registration response (members a client keeps). */
const Response = Schema.Struct({
  client_id: Schema.NonEmptyString,
  client_secret: Schema.optional(Schema.String),
  client_id_issued_at: Schema.optional(Schema.Number),
  client_secret_expires_at: Schema.optional(Schema.Number),
  registration_access_token: Schema.optional(Schema.String),
  registration_client_uri: Schema.optional(Schema.String),
  token_endpoint_auth_method: Schema.optional(Schema.String)
})
const decodeResponse = Schema.decodeUnknownEffect(Schema.fromJsonString(Response))

/** What is sealed inside the record. */
const Sealed = Schema.Struct({
  client_secret: Schema.optional(Schema.String),
  client_secret_expires_at: Schema.optional(Schema.Number),
  registration_access_token: Schema.optional(Schema.String),
  registration_client_uri: Schema.optional(Schema.String),
  token_endpoint_auth_method: Schema.optional(Schema.String)
})
const SealedJson = Schema.fromJsonString(Sealed)

/** A client registered with one authorization server. */
export interface Registration {
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: Option.Option<Redacted.Redacted<string>>
  /** When the secret expires (RFC 7591: 0 or absent means never). */
  readonly secretExpiresAt: Option.Option<DateTime.Utc>
  readonly registrationAccessToken: Option.Option<Redacted.Redacted<string>>
  readonly registrationClientUri: Option.Option<string>
  readonly tokenEndpointAuthMethod: string
  readonly createdAt: DateTime.Utc
}

/** Why registering failed. */
export class RegistrationError extends Data.TaggedError("McpRegistrationError")<{
  readonly issuer: string
  readonly detail: string
  readonly retryable: boolean
}> {
  override get message(): string {
    return `client registration with ${this.issuer}: ${this.detail}`
  }
}

/** The store id of the registration with `issuer`. */
export const idOf = (issuer: string): string => TokenStore.sessionIdOf({ provider: recordProvider, resource: issuer })

/** Whether a stored record is a registration (so session views can leave it out). */
export const isRegistration = (m: { readonly provider: string }): boolean => m.provider === recordProvider

/** The record that keeps a registration. */
export const toRecord = Effect.fnUntraced(function*(registration: Registration) {
  const sealed = Schema.encodeSync(SealedJson)({
    ...Option.match(registration.clientSecret, { onNone: () => ({}), onSome: (s) => ({ client_secret: Redacted.value(s) }) }),
    ...Option.match(registration.secretExpiresAt, {
      onNone: () => ({}),
      onSome: (at) => ({ client_secret_expires_at: Math.floor(DateTime.toEpochMillis(at) / 1000) })
    }),
    ...Option.match(registration.registrationAccessToken, {
      onNone: () => ({}),
      onSome: (t) => ({ registration_access_token: Redacted.value(t) })
    }),
    ...Option.match(registration.registrationClientUri, { onNone: () => ({}), onSome: (u) => ({ registration_client_uri: u }) }),
    token_endpoint_auth_method: registration.tokenEndpointAuthMethod
  })
  const now = yield* DateTime.now
  return new TokenStore.SessionRecord({
    version: 1,
    id: idOf(registration.issuer),
    provider: recordProvider,
    issuer: registration.issuer,
    clientId: registration.clientId,
    scopes: [],
    resource: registration.issuer,
    tokenType: recordTokenType,
    idToken: Redacted.make(sealed),
    state: "active",
    generation: 0,
    createdAt: registration.createdAt,
    updatedAt: now
  })
})

/** The registration a record keeps; none when the record is not one (or cannot be read as one). */
export const fromRecord = (record: TokenStore.SessionRecord): Option.Option<Registration> => {
  if (record.tokenType !== recordTokenType || record.issuer === undefined || record.idToken === undefined) {
    return Option.none()
  }
  const issuer = record.issuer
  return Option.map(
    Schema.decodeUnknownOption(SealedJson)(Redacted.value(record.idToken)),
    (s): Registration => ({
      issuer,
      clientId: record.clientId,
      clientSecret: Option.map(Option.fromUndefinedOr(s.client_secret), Redacted.make),
      secretExpiresAt: Option.fromUndefinedOr(s.client_secret_expires_at).pipe(
        Option.filter((at) => at > 0),
        Option.map((at) => DateTime.makeUnsafe(at * 1000))
      ),
      registrationAccessToken: Option.map(Option.fromUndefinedOr(s.registration_access_token), Redacted.make),
      registrationClientUri: Option.fromUndefinedOr(s.registration_client_uri),
      tokenEndpointAuthMethod: s.token_endpoint_auth_method ?? "none",
      createdAt: record.createdAt
    })
  )
}

/** The requests of RFC 7591 and RFC 7592, over an `HttpClient`. */
export const make = (client: HttpClient.HttpClient) => {
  /** Registers a new public native client at `endpoint`. */
  const register = (issuer: string, endpoint: string, options: { readonly clientName: string; readonly scopes: ReadonlyArray<string> }) =>
    Effect.gen(function*() {
      const fail = (detail: string, retryable: boolean) => new RegistrationError({ issuer, detail, retryable })
      if (transportOf(endpoint) === "refused") return yield* fail(`refusing plain http registration endpoint ${endpoint}`, false)
      const response = yield* client.execute(
        HttpClientRequest.post(endpoint).pipe(
          HttpClientRequest.acceptJson,
          HttpClientRequest.bodyJsonUnsafe(clientMetadata(options))
        )
      ).pipe(Effect.mapError((e) => fail(`request failed (${e.reason._tag})`, true)))
      const text = yield* response.text.pipe(Effect.mapError(() => fail("the response could not be read", true)))
      if (response.status !== 201 && response.status !== 200) {
        // RFC 7591 §3.2.2: `invalid_client_metadata`, `invalid_redirect_uri`, ...; only the code is shown.
        const code = /"error"\s*:\s*"([A-Za-z0-9_.-]{1,64})"/.exec(text)?.[1]
        return yield* fail(`HTTP ${response.status}${code === undefined ? "" : ` (${code})`}`, response.status >= 500)
      }
      const body = yield* decodeResponse(text).pipe(Effect.mapError(() => fail("malformed registration response", false)))
      const now = yield* DateTime.now
      return {
        issuer,
        clientId: body.client_id,
        clientSecret: Option.map(Option.fromUndefinedOr(body.client_secret), Redacted.make),
        secretExpiresAt: Option.fromUndefinedOr(body.client_secret_expires_at).pipe(
          Option.filter((at) => at > 0),
          Option.map((at) => DateTime.makeUnsafe(at * 1000))
        ),
        registrationAccessToken: Option.map(Option.fromUndefinedOr(body.registration_access_token), Redacted.make),
        registrationClientUri: Option.fromUndefinedOr(body.registration_client_uri),
        tokenEndpointAuthMethod: body.token_endpoint_auth_method ?? "none",
        createdAt: now
      } satisfies Registration
    })

  /**
   * Whether the server still knows the client (RFC 7592 §2.1 read): `false`
   * when it answers 401, 403 or 404 (the client was deleted or the token
   * revoked); `true` when it cannot say (no management URI, transient failure).
   */
  const stillValid = (registration: Registration): Effect.Effect<boolean> => {
    if (Option.isNone(registration.registrationClientUri) || Option.isNone(registration.registrationAccessToken)) {
      return Effect.succeed(true)
    }
    const uri = registration.registrationClientUri.value
    if (transportOf(uri) === "refused") return Effect.succeed(true)
    return client.execute(
      HttpClientRequest.get(uri).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.bearerToken(registration.registrationAccessToken.value)
      )
    ).pipe(
      Effect.tap((r) => Effect.ignore(r.arrayBuffer)),
      Effect.map((r) => r.status !== 401 && r.status !== 403 && r.status !== 404),
      Effect.orElseSucceed(() => true)
    )
  }

  return { register, stillValid }
}
