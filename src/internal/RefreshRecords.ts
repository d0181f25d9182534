/**
 * What a refresh sends and what it leaves in the store: the server target of
 * a stored grant, the record after a successful refresh (rotated secrets,
 * new absolute expiry, generation + 1), and the record of a dead grant.
 * Pure functions; `Refresher` runs them under the lock.
 *
 * @see https://www.rfc-editor.org/rfc/rfc9700#section-4.14 (refresh token rotation)
 */
import { DateTime, Option } from "effect"
import type * as OAuthClient from "../OAuthClient.js"
import type { ProviderSettings } from "../SessionConfig.js"
import * as TokenResponse from "../TokenResponse.js"
import * as TokenStore from "../TokenStore.js"

/** How a stored grant reaches its server: what the record remembers, completed by the configuration. */
export const targetOf = (record: TokenStore.SessionRecord, settings: ProviderSettings | undefined): OAuthClient.Target => {
  const sameClient = settings !== undefined && settings.clientId === record.clientId
  const configured = <A>(f: (s: ProviderSettings) => Option.Option<A>) =>
    settings === undefined ? Option.none<A>() : f(settings)
  return {
    ...(settings ?? {}),
    name: record.provider,
    issuer: Option.orElse(Option.fromUndefinedOr(record.issuer), () => configured((s) => s.issuer)),
    tokenEndpoint: Option.orElse(Option.fromUndefinedOr(record.tokenEndpoint), () => configured((s) => s.tokenEndpoint)),
    clientId: record.clientId,
    // A secret belongs to the configured client: never sent for a grant issued to another one.
    clientSecret: sameClient ? settings.clientSecret : Option.none()
  }
}

/** The record a successful refresh leaves: rotated secrets, new absolute expiry, generation + 1. */
export const refreshedRecord = (
  old: TokenStore.SessionRecord,
  response: TokenResponse.TokenResponse,
  now: DateTime.Utc
): TokenStore.SessionRecord =>
  new TokenStore.SessionRecord({
    ...old,
    tokenType: response.token_type,
    accessToken: response.access_token,
    // Providers that do not rotate (or omit it on refresh) keep the old refresh token valid.
    refreshToken: response.refresh_token ?? old.refreshToken,
    idToken: response.id_token ?? old.idToken,
    expiresAt: response.expires_in === undefined ? undefined : DateTime.add(now, { seconds: response.expires_in }),
    scopes: [...TokenResponse.grantedScopes(response, old.scopes)],
    state: "active",
    generation: old.generation + 1,
    updatedAt: now,
    lastRefreshAt: now,
    lastError: undefined
  })

/** The record of a dead grant: metadata kept, secrets dropped, the (secret-free) reason noted. */
export const needsReauthRecord = (old: TokenStore.SessionRecord, lastError: string, now: DateTime.Utc) =>
  new TokenStore.SessionRecord({
    ...old,
    accessToken: undefined,
    refreshToken: undefined,
    idToken: undefined,
    state: "needs_reauth",
    updatedAt: now,
    lastError
  })
