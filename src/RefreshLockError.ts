/**
 * The error of `RefreshLock` (re-exported there): a lock that could not be
 * taken, with why. The key is a session id, never a secret.
 */
import { Data } from "effect"

/** Why a lock could not be taken. */
export type Reason =
  | { readonly _tag: "Timeout"; readonly waitedMs: number }
  | { readonly _tag: "Unavailable"; readonly detail: string }

/** Whether trying again may take the lock: a timeout may, a broken lock directory will not. */
export const isRetryable = (reason: Reason): boolean => reason._tag === "Timeout"

/** A lock that could not be taken. The key is a session id, not a secret. */
export class RefreshLockError extends Data.TaggedError("RefreshLockError")<{
  readonly key: string
  readonly reason: Reason
}> {
  get retryable(): boolean {
    return isRetryable(this.reason)
  }
  override get message(): string {
    const r = this.reason
    return r._tag === "Timeout"
      ? `lock ${this.key}: still held by another process or fiber after waiting ${r.waitedMs} ms`
      : `lock ${this.key}: unavailable: ${r.detail}`
  }
}
