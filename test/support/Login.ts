/**
 * A browser sign-in as the tests and benchmarks run it: `Sessions.login`
 * with the user's part played by `approve` (an `OidcServer`'s, or the bench's
 * server process's), which follows the authorization URL and approves it.
 */
import { Effect } from "effect"
import type * as TokenStore from "../../src/TokenStore.js"
import type * as Sessions from "../../src/Sessions.js"

/** What a login answered, and the HTTP status the approval ended with (none when no browser was opened). */
export interface Approved {
  readonly metadata: TokenStore.SessionMetadata
  readonly status: number | undefined
}

/**
 * Logs `provider` in through `sessions`, approving in the "browser", and waits
 * for the approval to finish. Events are dropped and the wait is 20 seconds
 * unless `options` say otherwise.
 */
export const loginApproved = (
  sessions: Sessions.Shape,
  provider: string,
  approve: (url: string) => Promise<number>,
  options?: Omit<Partial<Sessions.LoginOptions>, "openBrowser">
): Effect.Effect<Approved, Sessions.SessionsError> =>
  Effect.gen(function*() {
    let browser: Promise<number> | undefined
    const metadata = yield* sessions.login(provider, {
      onEvent: () => Effect.void,
      timeout: "20 seconds",
      ...options,
      openBrowser: (url) => Effect.sync(() => void (browser = approve(url)))
    })
    const status = browser === undefined ? undefined : yield* Effect.promise(() => browser!)
    return { metadata, status }
  })
