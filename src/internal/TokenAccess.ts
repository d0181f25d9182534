/**
 * How `Sessions.getAccessToken` serves a token. The hot path is a clock read
 * and a map lookup: each cache entry carries its ready `Effect.succeed(token)`,
 * so no store, no span and no new Effect. Otherwise the stored session that
 * matches the request (scopes, resource) is selected, and refreshed when it
 * would not stay valid for `minTtl` (`Refresher`: once per grant, under the
 * cross-process lock). Callers asking the same thing share one selection and
 * one refresh (single flight); only the caller that starts it opens a span.
 */
import { Clock, Duration, Effect, Option, type Scope } from "effect"
import type * as Redacted from "effect/Redacted"
import type * as SessionConfig from "../SessionConfig.js"
import type { TokenRequest } from "../Sessions.js"
import * as Errors from "../SessionsError.js"
import type * as TokenStore from "../TokenStore.js"
import type * as Refresher from "./Refresher.js"
import * as SessionCache from "./SessionCache.js"
import * as SessionMatch from "./SessionMatch.js"
import * as SingleFlight from "./SingleFlight.js"

/** What serving tokens needs from the `Sessions` instance it belongs to. */
export interface Deps {
  readonly store: TokenStore.Shape
  readonly config: SessionConfig.Loaded
  readonly cache: SessionCache.SessionCache
  readonly refresher: Refresher.Refresher
  /** Read once: `Effect.clockWith` per call was most of the cached path's cost. */
  readonly clock: Clock.Clock
  /** Where refreshes run, so an interrupted caller never strands one. */
  readonly scope: Scope.Scope
  readonly annotate: (provider: string, id?: string) => Effect.Effect<void>
  readonly defaultMinTtlMs: number
}

/** `getAccessToken` over `deps`. */
export const make = ({ annotate, cache, clock, config, defaultMinTtlMs, refresher, scope, store }: Deps) => {
  const requests = SingleFlight.make<Redacted.Redacted<string>, Errors.ReauthRequired | Errors.SessionsError>(scope)

  const obtain = (settings: SessionConfig.ProviderSettings, request: TokenRequest | undefined, key: string, needMs: number) =>
    Effect.gen(function*() {
      const wanted = { provider: settings.name, resource: request?.resource, scopes: request?.scopes }
      const record = yield* SessionMatch.select(store, wanted, SessionMatch.effectiveResource(settings, wanted.resource))
        .pipe(
          Effect.catchTags({
            NoSession: (e) =>
              Effect.fail(new Errors.ReauthRequired({ provider: settings.name, sessionId: e.sessionId, detail: e.detail })),
            TokenStoreError: (e) => Effect.fail(Errors.storeFailure("getAccessToken", settings.name)(e))
          })
        )
      yield* annotate(settings.name, record.id)
      cache.alias(key, record.id, settings.name)
      const now = yield* Clock.currentTimeMillis
      const current = SessionCache.entryOf(record)
      if (current !== undefined && current.expiresAtMs - now >= needMs) {
        cache.update(record)
        return current.token
      }
      const { record: refreshed } = yield* refresher.refresh({
        id: record.id,
        provider: settings.name,
        needMs,
        force: false,
        seenGeneration: record.generation
      }).pipe(Effect.mapError(Errors.fromRefresh("getAccessToken", settings.name)))
      const entry = SessionCache.entryOf(refreshed)
      if (entry === undefined) {
        return yield* new Errors.ReauthRequired({ provider: settings.name, sessionId: Option.some(record.id), detail: "no access token" })
      }
      return entry.token
    })

  /** A flight's value: the token. */
  const valueOf = (flown: SingleFlight.Flown<Redacted.Redacted<string>>) => flown.value

  // Callers asking the same thing share one selection and one refresh. Only the caller that starts
  // the flight opens a span; a joiner (a thousand callers on one expired token) costs a map lookup,
  // one Deferred wait and one map: no generator, no span, no call-site stack.
  const slowGet = (provider: string, request: TokenRequest | undefined, key: string, needMs: number) => {
    const settings = request?.settings ?? config.providers.get(provider)
    if (settings === undefined) {
      return Effect.fail(Errors.unknownProvider("getAccessToken", provider, [...config.providers.keys()]))
    }
    return Effect.map(
      requests.run(`${key}\u0001${needMs}`, () =>
        annotate(provider).pipe(
          Effect.andThen(obtain(settings, request, key, needMs)),
          Effect.withSpan("Sessions.getAccessToken")
        )),
      valueOf
    )
  }

  // Parsing "5 minutes" costs microseconds: remember the few spellings an application uses.
  const parsedTtls = new Map<string, number>()
  const millisOf = (input: Duration.Input): number => {
    if (typeof input === "number") return input
    if (typeof input !== "string") return Duration.toMillis(Duration.fromInputUnsafe(input))
    const known = parsedTtls.get(input)
    if (known !== undefined) return known
    const ms = Duration.toMillis(Duration.fromInputUnsafe(input))
    if (parsedTtls.size < 64) parsedTtls.set(input, ms)
    return ms
  }

  /**
   * The hot path: a clock read and a map lookup; no store, no span, no new
   * Effect (each cache entry carries its ready `Effect.succeed(token)`).
   */
  const getAccessToken = (provider: string, request?: TokenRequest) => {
    const key = request === undefined ? provider : SessionMatch.requestKeyOf(provider, request.resource, request.scopes)
    const needMs = request?.minTtl === undefined ? defaultMinTtlMs : millisOf(request.minTtl)
    const entry = cache.lookup(key)
    return entry !== undefined && entry.expiresAtMs - clock.currentTimeMillisUnsafe() >= needMs
      ? entry.ready
      : slowGet(provider, request, key, needMs)
  }

  return getAccessToken
}
