/**
 * The CLI's exit codes, a contract scripts rely on:
 * 0 ok, 2 usage or configuration error, 3 re-authentication needed or no
 * session, 4 storage unavailable, 1 anything else; 130 interrupted, 141
 * the reader of stdout went away (as a process killed by SIGPIPE).
 */
import type * as Mcp from "../Mcp.js"
import type * as Sessions from "../Sessions.js"
import type * as TokenStore from "../TokenStore.js"

export const ok = 0
export const failure = 1
export const usage = 2
export const reauth = 3
export const storageUnavailable = 4
/** stdout's reader closed the pipe (`mtsession list | head -1`): 128 + SIGPIPE. */
export const brokenPipe = 141

const tagOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "_tag" in e && typeof e._tag === "string" ? e._tag : undefined

/** The exit code for an error that ended a command. */
export const of = (error: unknown): number => {
  switch (tagOf(error)) {
    case "CommandExit":
      return (error as { readonly code: number }).code
    case "ConfigError":
    case "ShowHelp":
    case "TokenResponseError":
    case "UsageError":
      return usage
    case "ReauthRequired":
    case "NoSession":
      return reauth
    case "SessionsError":
      return ofSessions(error as Sessions.SessionsError)
    case "McpError": {
      const reason = (error as Mcp.McpError).reason
      return reason._tag === "LoginRequired"
        ? reauth
        : reason._tag === "Store" || reason._tag === "Sessions"
        ? of(reason.error)
        : failure
    }
    case "TokenStoreError": {
      const reason = (error as TokenStore.TokenStoreError).reason._tag
      return reason === "NotFound" || reason === "Corrupted" ? reauth : storageUnavailable
    }
    case "UserContextError":
    case "StoreSelectionError":
    case "EncryptionKeyError":
    case "KeyringError":
      return storageUnavailable
    default:
      return failure
  }
}

const ofSessions = (error: Sessions.SessionsError): number => {
  const reason = error.reason
  switch (reason._tag) {
    case "UnknownProvider":
      return usage
    case "Store":
    case "PersistFailed":
      return of(reason.error)
    case "Lock":
      return storageUnavailable
    case "OAuth":
      return failure
  }
}
