/**
 * Which stored session serves a token request (multi-level auth): the
 * session whose id the request names exactly, else any active session of
 * the provider bound to the same resource whose granted scopes cover the
 * requested ones. Server, capability and tool level sessions of one
 * provider coexist; the narrowest one that covers a request wins.
 *
 * The choice itself is a pure function over secret-free metadata;
 * {@link select} reads the store around it.
 */
import { Data, DateTime, Effect, Option } from "effect"
import type { ProviderSettings } from "../SessionConfig.js"
import * as TokenStore from "../TokenStore.js"

/** What a request asks for. */
export interface Wanted {
  readonly provider: string
  /** As asked (part of the exact session id). */
  readonly resource: string | undefined
  readonly scopes: ReadonlyArray<string> | undefined
}

/**
 * The key of a request in the in-memory cache: cheap (no hashing, no
 * sorting), so the cached path stays a map lookup. Two spellings of one
 * request only cost one extra slow lookup each.
 */
export const requestKeyOf = (provider: string, resource: string | undefined, scopes: ReadonlyArray<string> | undefined) =>
  resource === undefined && (scopes === undefined || scopes.length === 0)
    ? provider
    : `${provider}\u0000${resource ?? ""}\u0000${scopes === undefined ? "" : scopes.join(" ")}`

/** The id of the session a login with these options creates, and the first one a request tries. */
export const exactIdOf = (wanted: Wanted): string =>
  TokenStore.sessionIdOf({ provider: wanted.provider, resource: wanted.resource, scopes: wanted.scopes })

/** The resource a session for this request is bound to: the one asked for, else the provider's default. */
export const effectiveResource = (settings: ProviderSettings | undefined, resource: string | undefined) =>
  resource ?? (settings === undefined ? undefined : Option.getOrUndefined(settings.resource))

/** Whether `granted` includes every scope of `requested`. */
export const covers = (granted: ReadonlyArray<string>, requested: ReadonlyArray<string> | undefined): boolean =>
  requested === undefined || requested.every((scope) => granted.includes(scope))

/** Whether a session can serve the request at all (ignoring its state). */
export const matches = (
  m: TokenStore.SessionMetadata,
  wanted: Wanted,
  resource: string | undefined
): boolean =>
  m.provider === wanted.provider &&
  m.state !== "corrupted" &&
  Option.getOrUndefined(m.resource) === resource &&
  covers(m.scopes, wanted.scopes)

const usable = (m: TokenStore.SessionMetadata, now: DateTime.Utc) =>
  m.hasRefreshToken ||
  Option.match(m.expiresAt, { onNone: () => true, onSome: (at) => DateTime.isGreaterThan(at, now) })

const expiryMillis = (m: TokenStore.SessionMetadata) =>
  Option.match(m.expiresAt, { onNone: () => Number.POSITIVE_INFINITY, onSome: DateTime.toEpochMillis })

/**
 * The best active candidate: one that can still produce a token first, then
 * the fewest scopes (least privilege), then the latest expiry, then the id.
 */
export const choose = (
  sessions: ReadonlyArray<TokenStore.SessionMetadata>,
  wanted: Wanted,
  resource: string | undefined,
  now: DateTime.Utc
): Option.Option<TokenStore.SessionMetadata> => {
  const candidates = sessions.filter((m) => m.state === "active" && matches(m, wanted, resource))
  const compare = (a: number, b: number) => (a < b ? -1 : a > b ? 1 : 0)
  const sorted = candidates.toSorted((a, b) =>
    compare(usable(a, now) ? 0 : 1, usable(b, now) ? 0 : 1) ||
    compare(a.scopes.length, b.scopes.length) ||
    compare(expiryMillis(b), expiryMillis(a)) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  )
  return Option.fromUndefinedOr(sorted[0])
}

/** A session that would match but must be signed in again: named in the `ReauthRequired` the caller gets. */
export const needingReauth = (
  sessions: ReadonlyArray<TokenStore.SessionMetadata>,
  wanted: Wanted,
  resource: string | undefined
): Option.Option<TokenStore.SessionMetadata> =>
  Option.fromUndefinedOr(sessions.find((m) => m.state === "needs_reauth" && matches(m, wanted, resource)))

/** No session can serve the request; `sessionId` names one that would, once signed in again. */
export class NoSession extends Data.TaggedError("NoSession")<{
  readonly sessionId: Option.Option<string>
  readonly detail: string
}> {}

/** The record of `id`; none when it is missing or was set aside as corrupted (both mean: sign in). */
export const readOption = (store: TokenStore.Shape, id: string) =>
  store.get(id).pipe(
    Effect.map(Option.some),
    Effect.catch((e) =>
      e.reason._tag === "NotFound" || e.reason._tag === "Corrupted" ? Effect.succeedNone : Effect.fail(e)
    )
  )

/** The record serving a request: the exact id first, else the best active session that covers it. */
export const select = Effect.fnUntraced(function*(
  store: TokenStore.Shape,
  wanted: Wanted,
  resource: string | undefined
) {
  const exact = yield* readOption(store, exactIdOf(wanted))
  if (Option.isSome(exact) && exact.value.state === "active") return exact.value
  const sessions = yield* store.list
  const chosen = choose(sessions, wanted, resource, yield* DateTime.now)
  const found = Option.isSome(chosen) ? yield* readOption(store, chosen.value.id) : Option.none<TokenStore.SessionRecord>()
  if (Option.isSome(found) && found.value.state === "active") return found.value
  const dead = Option.orElse(
    Option.filter(exact, (r) => r.state === "needs_reauth"),
    () => needingReauth(sessions, wanted, resource)
  )
  return yield* new NoSession({
    sessionId: Option.map(dead, (r) => r.id),
    detail: Option.match(dead, {
      onNone: () =>
        `no session${wanted.scopes === undefined ? "" : ` with scopes "${wanted.scopes.join(" ")}"`}${
          resource === undefined ? "" : ` for ${resource}`
        }`,
      onSome: (r) => `the session needs to be signed in again${r.lastError === undefined ? "" : ` (${r.lastError})`}`
    })
  })
})
