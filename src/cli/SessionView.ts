/**
 * The JSON and table views of sessions shared by `list`, `import` and later
 * `status` and `login`. The JSON element is a contract (docs/cli.md): `id`,
 * `provider`, `state`, `expires_at` (RFC 3339 or null), `scopes`, `backend`,
 * plus informative fields. No secret is ever part of a view.
 */
import { DateTime, Option } from "effect"
import * as SessionState from "../SessionState.js"
import type * as TokenStore from "../TokenStore.js"
import * as Output from "./Output.js"

/** One element of `list --json`. */
export interface Element {
  readonly id: string
  readonly provider: string
  readonly state: SessionState.State
  readonly expires_at: string | null
  readonly scopes: ReadonlyArray<string>
  readonly backend: TokenStore.Backend
  readonly issuer: string | null
  readonly resource: string | null
  readonly subject: string | null
  readonly has_refresh_token: boolean
  readonly generation: number
  readonly updated_at: string
  readonly last_error: string | null
}

const iso = (d: DateTime.Utc) => DateTime.formatIso(d)

/** The JSON view of one session at `now`. */
export const element = (m: TokenStore.SessionMetadata, now: DateTime.Utc): Element => ({
  id: m.id,
  provider: m.provider,
  state: SessionState.of(m, now),
  expires_at: Option.match(m.expiresAt, { onNone: () => null, onSome: iso }),
  scopes: m.scopes,
  backend: m.backend,
  issuer: Option.getOrNull(m.issuer),
  resource: Option.getOrNull(m.resource),
  subject: Option.getOrNull(m.subject),
  has_refresh_token: m.hasRefreshToken,
  generation: m.generation,
  updated_at: iso(m.updatedAt),
  last_error: Option.getOrNull(m.lastError)
})

/** The human table of sessions. */
export const table = (elements: ReadonlyArray<Element>, now: DateTime.Utc, color: boolean): string => {
  const c = Output.paint(color)
  const stateCell = (s: SessionState.State) =>
    s === "active" ? c.green(s) : s === "expired" ? c.yellow(s) : c.red(s)
  const expires = (e: Element) =>
    e.expires_at === null
      ? "never"
      : `${e.expires_at} (${Output.relative(Date.parse(e.expires_at) - DateTime.toEpochMillis(now))})`
  return Output.table(
    ["provider", "session", "state", "expires", "scopes", "backend"],
    elements.map((e) => [e.provider, e.id, stateCell(e.state), expires(e), e.scopes.join(" "), e.backend])
  )
}
