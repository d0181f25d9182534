/**
 * Login and logout, as Sessions runs them.
 *
 * Login signs in (authorization code + PKCE, or the device grant), turns
 * the token response into a record with an absolute expiry, the granted
 * scopes and the subject, and stores it under the id its request names;
 * a session that already had that id is replaced, its generation counting on.
 * Logout revokes the refresh token, then the access token (RFC 7009), where
 * the server can, and removes the session whether or not revocation worked.
 *
 * Both hold the session's `RefreshLock` while they write: a refresh running
 * in another process must neither overwrite a new login nor resurrect a
 * session just removed.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2 (revocation)
 */
import { Duration, Effect, Option } from "effect"
import type * as Redacted from "effect/Redacted"
import * as OAuthClient from "../OAuthClient.js"
import type * as RefreshLock from "../RefreshLock.js"
import type { Loaded, ProviderSettings } from "../SessionConfig.js"
import type { LoginOptions, Reason } from "../Sessions.js"
import * as TokenResponse from "../TokenResponse.js"
import * as TokenStore from "../TokenStore.js"
import type * as SessionCache from "./SessionCache.js"
import * as SessionMatch from "./SessionMatch.js"
import { targetOf } from "./RefreshRecords.js"

/** The services login and logout work with. */
export interface Deps {
  readonly store: TokenStore.Shape
  readonly lock: RefreshLock.Shape
  readonly oauth: OAuthClient.Shape
  readonly config: Loaded
  readonly cache: SessionCache.SessionCache
  readonly annotate: (provider: string, id?: string) => Effect.Effect<void>
  readonly loginTimeout: Duration.Duration
}

/** What logout did with one session's tokens. */
export type Revoked = "revoked" | "unsupported" | "skipped" | "failed"

/** Builds login and logout over `deps`. */
export const make = (deps: Deps) => {
  const { cache, lock, oauth, store } = deps
  const storeFailure = (error: TokenStore.TokenStoreError): Reason => ({ _tag: "Store", error })
  const lockFailure = (error: RefreshLock.RefreshLockError): Reason => ({ _tag: "Lock", error })
  const oauthFailure = (error: OAuthClient.OAuthError): Reason => ({ _tag: "OAuth", error })

  const readOption = (id: string) => SessionMatch.readOption(store, id).pipe(Effect.mapError(storeFailure))

  const signIn = (settings: ProviderSettings, options: LoginOptions) => {
    if (options.device !== true) {
      return oauth.authorizationCode(settings, {
        scopes: options.scopes,
        resource: options.resource,
        onUrl: (url) => options.onEvent({ _tag: "AuthorizationUrl", url }),
        openBrowser: options.openBrowser ?? (() => Effect.void),
        timeout: options.timeout ?? deps.loginTimeout
      })
    }
    const device = oauth.deviceAuthorization(settings, {
      scopes: options.scopes,
      resource: options.resource,
      onCode: (info) =>
        options.onEvent({
          _tag: "DeviceCode",
          verificationUri: info.verification_uri,
          verificationUriComplete: Option.fromUndefinedOr(info.verification_uri_complete),
          userCode: info.user_code,
          expiresIn: info.expires_in,
          interval: info.interval
        })
    })
    // The device code's own expiry bounds the wait; a caller's timeout may end it sooner.
    if (options.timeout === undefined) return device
    const after = Duration.fromInputUnsafe(options.timeout)
    return device.pipe(Effect.timeoutOrElse({
      duration: after,
      orElse: () =>
        Effect.fail(
          new OAuthClient.OAuthError({
            provider: settings.name,
            operation: "deviceAuthorization",
            reason: { _tag: "Timeout", after, detail: "the device was not approved in time" }
          })
        )
    }))
  }

  const login = (settings: ProviderSettings, options: LoginOptions) =>
    Effect.gen(function*() {
      const { response, subject } = yield* signIn(settings, options).pipe(Effect.mapError(oauthFailure))
      // Discovery is cached per issuer: after a sign-in this costs nothing.
      const metadata = yield* oauth.discover(settings).pipe(Effect.option)
      const id = SessionMatch.exactIdOf({ provider: settings.name, resource: options.resource, scopes: options.scopes })
      yield* deps.annotate(settings.name, id)
      const fresh = yield* TokenResponse.toRecord(response, {
        id,
        provider: settings.name,
        issuer: Option.getOrUndefined(settings.issuer),
        tokenEndpoint: Option.getOrUndefined(
          Option.orElse(Option.flatMap(metadata, (m) => m.tokenEndpoint), () => settings.tokenEndpoint)
        ),
        clientId: settings.clientId,
        requestedScopes: options.scopes ?? settings.scopes,
        resource: SessionMatch.effectiveResource(settings, options.resource),
        subject: Option.getOrUndefined(subject)
      })
      const record = yield* lock.withLock(
        id,
        Effect.gen(function*() {
          const previous = yield* readOption(id)
          // A new grant replaces the session; the generation keeps counting so writers stay ordered.
          const record = Option.match(previous, {
            onNone: () => fresh,
            onSome: (p) => new TokenStore.SessionRecord({ ...fresh, generation: p.generation + 1, createdAt: p.createdAt })
          })
          yield* store.put(record).pipe(Effect.withSpan("Sessions.persist"), Effect.mapError(storeFailure))
          return record
        })
      ).pipe(Effect.mapError((e) => (e._tag === "RefreshLockError" ? lockFailure(e) : e)))
      cache.update(record)
      // The new session may now be the better match for requests already resolved to another one.
      cache.dropAliases(settings.name)
      yield* Effect.annotateCurrentSpan("session.generation", record.generation)
      return TokenStore.metadataOf(record, store.backend)
    })

  /** Revokes the refresh token, then the access token; `failed` if either failed. */
  const revokeAll = (record: TokenStore.SessionRecord, settings: ProviderSettings | undefined) =>
    Effect.gen(function*() {
      const target = targetOf(record, settings)
      const tokens: ReadonlyArray<readonly [Redacted.Redacted<string> | undefined, OAuthClient.TokenTypeHint]> = [
        [record.refreshToken, "refresh_token"],
        [record.accessToken, "access_token"]
      ]
      const outcomes: Array<Revoked> = []
      for (const [token, hint] of tokens) {
        if (token === undefined) continue
        outcomes.push(
          yield* oauth.revoke(target, token, hint).pipe(
            Effect.catch((e) => Effect.as(Effect.logWarning(`revocation failed: ${e.message}`), "failed" as const))
          )
        )
      }
      return outcomes.length === 0
        ? "skipped"
        : outcomes.includes("failed")
        ? "failed"
        : outcomes.every((o) => o === "unsupported")
        ? "unsupported"
        : "revoked"
    })

  const logoutOne = (id: string, settings: ProviderSettings | undefined, revoke: boolean) =>
    lock.withLock(
      id,
      Effect.gen(function*() {
        yield* deps.annotate(settings?.name ?? id, id)
        const record = yield* readOption(id)
        const revoked: Revoked = Option.isSome(record) && revoke ? yield* revokeAll(record.value, settings) : "skipped"
        yield* store.remove(id).pipe(Effect.mapError(storeFailure))
        cache.drop(id)
        return { id, revoked, existed: Option.isSome(record) }
      }).pipe(Effect.withSpan("Sessions.logoutSession"))
    ).pipe(Effect.mapError((e) => (e._tag === "RefreshLockError" ? lockFailure(e) : e)))

  const logout = (
    provider: string,
    settings: ProviderSettings | undefined,
    options: { readonly revoke: boolean; readonly scopes?: ReadonlyArray<string> | undefined; readonly resource?: string | undefined }
  ) =>
    Effect.gen(function*() {
      const everything = options.scopes === undefined && options.resource === undefined
      const ids = everything
        ? (yield* store.list.pipe(Effect.mapError(storeFailure))).filter((m) => m.provider === provider).map((m) => m.id)
        : [SessionMatch.exactIdOf({ provider, resource: options.resource, scopes: options.scopes })]
      const results = yield* Effect.forEach(ids, (id) => logoutOne(id, settings, options.revoke))
      cache.dropAliases(provider)
      // Listed sessions are reported even if unreadable; a named one only if it was there.
      return results
        .filter((r) => everything || r.existed)
        .map(({ id, revoked }) => ({ id, revoked }))
    })

  return { login, logout }
}
