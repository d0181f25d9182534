/**
 * Sessions: what embedding applications call. `getAccessToken` returns a token
 * valid for at least `minTtl`, from memory when it is, else refreshed: once
 * per grant at a time in the process (a thousand concurrent callers cause one
 * refresh and all get its result) and across processes (the `RefreshLock`;
 * under it the store is re-read, and a token another process already obtained
 * is reused). A rotated refresh token is persisted before any caller sees the
 * new access token; if persisting fails, the refresh fails closed and the
 * previous record stays.
 *
 * Refresh outcomes are classified: `invalid_grant` / `invalid_client` put the
 * session in `needs_reauth` (metadata kept, secrets dropped, never retried);
 * 5xx, 429, network errors and timeouts are retried with `retrySchedule`
 * and the refresh token is kept.
 *
 * The contract is at the top of this module; the implementation follows it.
 */
import { Context, Data } from "effect"
import type { Duration, Effect, Option } from "effect"
import type * as Redacted from "effect/Redacted"
import type * as OAuthClient from "./OAuthClient.js"
import type * as RefreshLock from "./RefreshLock.js"
import type * as TokenStore from "./TokenStore.js"

/** What a caller asks a token for. */
export interface TokenRequest {
  /** Scopes the token must carry; a session whose granted scopes cover them serves the request. */
  readonly scopes?: ReadonlyArray<string> | undefined
  /** RFC 8707 resource the token must be bound to. */
  readonly resource?: string | undefined
  /** The token must stay valid at least this long (default `defaultMinTtl`). */
  readonly minTtl?: Duration.Input | undefined
}

/** How a login reaches the user (the CLI prints these, an app may show them). */
export type LoginEvent =
  | { readonly _tag: "AuthorizationUrl"; readonly url: string }
  | {
    readonly _tag: "DeviceCode"
    readonly verificationUri: string
    readonly verificationUriComplete: Option.Option<string>
    readonly userCode: string
    readonly expiresIn: number
    readonly interval: number
  }

/** Options of a login. */
export interface LoginOptions {
  readonly device?: boolean | undefined
  readonly scopes?: ReadonlyArray<string> | undefined
  readonly resource?: string | undefined
  /** Opens a browser on the authorization URL (authorization code only); failures are ignored. */
  readonly openBrowser?: ((url: string) => Effect.Effect<void, unknown>) | undefined
  readonly onEvent: (event: LoginEvent) => Effect.Effect<void>
  /** How long to wait for the browser or the device approval. */
  readonly timeout?: Duration.Input | undefined
}

/** The result of one refresh of one session. */
export type RefreshOutcome =
  /** The server issued new tokens; `rotated` when it also issued a new refresh token. */
  | { readonly _tag: "Refreshed"; readonly rotated: boolean; readonly generation: number }
  /** Another process had already refreshed: its token was reused, nothing was sent. */
  | { readonly _tag: "Reused"; readonly generation: number }
  /** Still valid beyond the threshold: nothing to do. */
  | { readonly _tag: "Fresh" }
  /** The grant is dead (`invalid_grant` / `invalid_client`): the session is now `needs_reauth`. */
  | { readonly _tag: "NeedsReauth"; readonly reason: string }
  /** Transient failures outlasted the retry schedule; the refresh token is kept. */
  | { readonly _tag: "Failed"; readonly reason: string; readonly retryable: boolean }

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

/** The operations embedders call. */
export interface Shape {
  /** A token valid for at least `minTtl`; refreshes (once per grant) when needed. */
  readonly getAccessToken: (
    provider: string,
    request?: TokenRequest
  ) => Effect.Effect<Redacted.Redacted<string>, ReauthRequired | SessionsError>
  /** Logs in (authorization code + PKCE, or the device grant) and stores the session. */
  readonly login: (
    provider: string,
    options: LoginOptions
  ) => Effect.Effect<TokenStore.SessionMetadata, SessionsError>
  /** Revokes (unless `revoke: false`) and removes the session(s) of a provider that match. */
  readonly logout: (
    provider: string,
    options: { readonly revoke: boolean; readonly scopes?: ReadonlyArray<string> | undefined; readonly resource?: string | undefined }
  ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly revoked: "revoked" | "unsupported" | "skipped" | "failed" }>, SessionsError>
  /** Refreshes one stored session now (`force`: even when still fresh). */
  readonly refresh: (id: string, options?: { readonly force?: boolean | undefined }) => Effect.Effect<RefreshOutcome, SessionsError>
}

/** The sessions of this process's user context. */
export class Sessions extends Context.Service<Sessions, Shape>()("magictunnel-session/Sessions") {}
