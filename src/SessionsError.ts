/**
 * The errors of `Sessions` (re-exported there): `ReauthRequired` when the
 * user must sign in again, `SessionsError` with a typed reason otherwise.
 * Messages never contain a secret; `reasonTag` names a failure for the
 * audit log. The constructors below are shared by `Sessions` and
 * `internal/TokenAccess.ts`.
 */
import { Data, Option } from "effect"
import type * as Refresher from "./internal/Refresher.js"
import type * as OAuthClient from "./OAuthClient.js"
import type * as RefreshLock from "./RefreshLock.js"
import type * as TokenStore from "./TokenStore.js"

/** The user must log in again (or has never logged in) for what was asked. */
export class ReauthRequired extends Data.TaggedError("ReauthRequired")<{
  readonly provider: string
  readonly sessionId: Option.Option<string>
  readonly detail: string
}> {
  override get message(): string {
    return `${this.provider}: ${this.detail}; run \`mtsession login ${this.provider}\``
  }
}

/** Why a session operation failed for a reason other than re-authentication. */
export type Reason =
  | { readonly _tag: "UnknownProvider"; readonly provider: string; readonly known: ReadonlyArray<string> }
  | { readonly _tag: "Store"; readonly error: TokenStore.TokenStoreError }
  | { readonly _tag: "Lock"; readonly error: RefreshLock.RefreshLockError }
  | { readonly _tag: "OAuth"; readonly error: OAuthClient.OAuthError }
  /** The new tokens could not be persisted: the caller gets no token (fail closed). */
  | { readonly _tag: "PersistFailed"; readonly error: TokenStore.TokenStoreError }

/** A session operation failed; the message never contains a secret. */
export class SessionsError extends Data.TaggedError("SessionsError")<{
  readonly operation: "getAccessToken" | "login" | "logout" | "refresh" | "status"
  readonly provider: string
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    switch (r._tag) {
      case "UnknownProvider":
        return `unknown provider "${r.provider}": ${
          r.known.length === 0 ? "no providers are configured (auth.oauth.providers)" : `configured: ${r.known.join(", ")}`
        }`
      case "PersistFailed":
        return `${this.provider}: new tokens could not be stored, so none is handed out: ${r.error.message}`
      default:
        return `${this.provider} ${this.operation}: ${r.error.message}`
    }
  }
}

/** The operations a `SessionsError` names. */
export type Operation = SessionsError["operation"]

/** The error of `operation` on `provider` for `reason`. */
export const failure = (operation: Operation, provider: string) => (reason: Reason): SessionsError =>
  new SessionsError({ operation, provider, reason })

/** A store failure of `operation`. */
export const storeFailure = (operation: Operation, provider: string) => (error: TokenStore.TokenStoreError): SessionsError =>
  failure(operation, provider)({ _tag: "Store", error })

/** `provider` is not configured; `known` are those that are. */
export const unknownProvider = (operation: Operation, provider: string, known: ReadonlyArray<string>): SessionsError =>
  failure(operation, provider)({ _tag: "UnknownProvider", provider, known })

/** What a caller sees of a refresh that produced no token: re-authentication, or the reason. */
export const fromRefresh = (operation: Operation, provider: string) =>
(e: Refresher.RefreshFailed): ReauthRequired | SessionsError =>
  e.failure._tag === "Reauth"
    ? new ReauthRequired({ provider, sessionId: Option.some(e.failure.sessionId), detail: e.failure.detail })
    : failure(operation, provider)(e.failure)

/** A secret-free name for why an operation failed (for the audit log). */
export const reasonTag = (reason: Reason): string =>
  reason._tag === "UnknownProvider" ? "UnknownProvider" : `${reason._tag}: ${reason.error.reason._tag}`
