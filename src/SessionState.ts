/**
 * SessionState: the state a user sees for a session, derived from stored
 * metadata and the clock. `expired` is never stored; it is what `active`
 * becomes once the access token's absolute expiry has passed.
 */
import { DateTime, Option } from "effect"
import type * as TokenStore from "./TokenStore.js"

/** The states of the `list --json` contract. */
export type State = "active" | "expired" | "needs_reauth" | "corrupted"

/** The user-visible state of a session at `now`. */
export const of = (m: TokenStore.SessionMetadata, now: DateTime.Utc): State =>
  m.state !== "active"
    ? m.state
    : Option.match(m.expiresAt, {
      onNone: () => "active",
      onSome: (at) => DateTime.isLessThanOrEqualTo(at, now) ? "expired" : "active"
    })
