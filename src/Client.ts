/**
 * The Promise-based entry point to Sessions, for programs that do not use
 * Effect: `getAccessToken(provider)` resolves to the token string, and the
 * same store, lock, cache and background refresh serve every call.
 *
 * The services run on a `ManagedRuntime` the caller owns (from
 * {@link fromLayer} or {@link fromConfig}); running Effects here is the point of
 * this module: it is the boundary to Promise code.
 *
 * The cached path does not start a fiber. `Sessions.getAccessToken` answers a
 * cached token with an already completed `Exit` (`Effect.succeed`, one per
 * cache entry), so the client answers with a Promise it resolved once for
 * that entry: a cached call allocates nothing and costs one microtask.
 * Anything else (a refresh, the first read of the store, an error) runs on
 * the runtime as usual.
 *
 * @see docs/sessions.md
 */
import { Duration, Effect, Exit, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as Main from "../layers/Main.js"
import * as Recovery from "./Recovery.js"
import * as RefreshSupervisor from "./RefreshSupervisor.js"
import * as Sessions from "./Sessions.js"
import * as TokenStore from "./TokenStore.js"

/** What a token is asked for (as `Sessions.TokenRequest`, without provider settings). */
export interface TokenRequest {
  /** Scopes the token must carry. */
  readonly scopes?: ReadonlyArray<string> | undefined
  /** RFC 8707 resource the token must be bound to. */
  readonly resource?: string | undefined
  /** The token must stay valid at least this long, in milliseconds or as a duration string (default 60 s). */
  readonly minTtl?: number | `${number} ${Duration.Unit}` | undefined
}

/** A stored session as listed (no secrets). */
export interface SessionSummary {
  readonly id: string
  readonly provider: string
  readonly state: TokenStore.SessionMetadata["state"]
  readonly scopes: ReadonlyArray<string>
  /** Absent when the server gave no expiry. */
  readonly expiresAt: Date | undefined
  readonly lastError: string | undefined
}

/** The Promise API. Rejections are the library's typed errors (`ReauthRequired`, `SessionsError`, ...). */
export interface SessionsClient {
  /** A valid access token of `provider`: cached, or refreshed once per grant when needed. */
  readonly getAccessToken: (provider: string, request?: TokenRequest) => Promise<string>
  /** Refreshes the session `id` now (`force`: even when still fresh). */
  readonly refresh: (id: string, options?: { readonly force?: boolean | undefined }) => Promise<Sessions.RefreshOutcome>
  /** Signs out of `provider`: revokes at the server (unless `revoke: false`) and removes the session(s). */
  readonly logout: (provider: string, options?: { readonly revoke?: boolean | undefined }) => Promise<ReadonlyArray<string>>
  /** The stored sessions of this user context. */
  readonly list: () => Promise<ReadonlyArray<SessionSummary>>
  /** Stops background refresh and releases the store and lock; calls after it reject. */
  readonly close: () => Promise<void>
}

/** What the client runs on: `Sessions` and the store. */
export type Services = Sessions.Sessions | TokenStore.TokenStore

const summaryOf = (m: TokenStore.SessionMetadata): SessionSummary => ({
  id: m.id,
  provider: m.provider,
  state: m.state,
  scopes: m.scopes,
  expiresAt: Option.match(m.expiresAt, { onNone: () => undefined, onSome: (d) => new Date(d.epochMilliseconds) }),
  lastError: Option.getOrUndefined(m.lastError)
})

/** Whether `effect` is already its result: an `Exit` is an `Effect` that needs no fiber. */
const completed = <A, E, R>(effect: Effect.Effect<A, E, R>): effect is Exit.Exit<A, E> & Effect.Effect<A, E, R> =>
  Exit.isExit(effect)

/** The client over a runtime that provides {@link Services}; `close` disposes that runtime. */
export const make = <E>(runtime: ManagedRuntime.ManagedRuntime<Services, E>): SessionsClient => {
  // Every Effect this client runs goes through here: the one boundary to Promise code.
  let closed = false
  const run = <A, X>(effect: Effect.Effect<A, X, Services>): Promise<A> =>
    closed ? Promise.reject(new Error("the sessions client is closed")) : runtime.runPromise(effect)

  // The service, once the runtime is built: from then on the cached path needs no runtime call.
  let sessions: Sessions.Shape | undefined
  const sessionsReady = run(Sessions.Sessions).then((s) => (sessions = s))
  // An unobserved rejection here would crash the process; every call reports it instead.
  sessionsReady.catch(() => undefined)

  // The answer to a cached token, one already resolved Promise per cache entry: awaiting it costs
  // one microtask, and nothing is allocated per call. Keyed by the entry's Exit, which a refresh
  // replaces, so a refreshed token is never answered from here.
  const answered = new WeakMap<object, Promise<string>>()
  let lastExit: object | undefined
  let lastAnswer: Promise<string> | undefined

  const tokenOf = (
    effect: Effect.Effect<Redacted.Redacted<string>, Sessions.ReauthRequired | Sessions.SessionsError>
  ): Promise<string> => {
    if (closed) return Promise.reject(new Error("the sessions client is closed"))
    if (effect === lastExit && lastAnswer !== undefined) return lastAnswer
    if (!(completed(effect) && Exit.isSuccess(effect))) return run(effect).then((token) => Redacted.value(token))
    let answer = answered.get(effect)
    if (answer === undefined) {
      answer = Promise.resolve(Redacted.value(effect.value))
      answered.set(effect, answer)
    }
    lastExit = effect
    lastAnswer = answer
    return answer
  }

  const getAccessToken = (provider: string, request?: TokenRequest): Promise<string> => {
    let minTtl: Duration.Duration | undefined
    if (request?.minTtl !== undefined) {
      const parsed = Duration.fromInput(request.minTtl)
      if (Option.isNone(parsed)) {
        return Promise.reject(
          new TypeError(`minTtl: expected milliseconds or a duration such as "30 seconds", got ${JSON.stringify(request.minTtl)}`)
        )
      }
      minTtl = parsed.value
    }
    const options = request === undefined ? undefined : { scopes: request.scopes, resource: request.resource, minTtl }
    return sessions !== undefined
      ? tokenOf(sessions.getAccessToken(provider, options))
      : sessionsReady.then((s) => tokenOf(s.getAccessToken(provider, options)))
  }

  return {
    getAccessToken,
    refresh: (id, options) => run(Effect.flatMap(Sessions.Sessions, (s) => s.refresh(id, options))),
    logout: (provider, options) =>
      run(Effect.flatMap(Sessions.Sessions, (s) => s.logout(provider, { revoke: options?.revoke ?? true })))
        .then((removed) => removed.map((r) => r.id)),
    list: () =>
      run(Effect.flatMap(TokenStore.TokenStore, (store) => store.list)).then((all) =>
        all.filter(TokenStore.isSession).map(summaryOf)
      ),
    close: () => {
      closed = true
      return runtime.dispose()
    }
  }
}

/** The client over `layer`, on a runtime of its own. */
export const fromLayer = <E>(layer: Layer.Layer<Services, E>): SessionsClient => make(ManagedRuntime.make(layer))

/** Options of {@link fromConfig}. */
export interface ConfigOptions {
  /** The configuration file (default: `MAGICTUNNEL_CONFIG_PATH`, then the search order). */
  readonly configPath?: string | undefined
  /** The principal whose sessions these are, for multi-tenant programs (default: the OS user). */
  readonly principal?: string | undefined
  /**
   * Recover stored sessions at start and keep them fresh in the background
   * (the refresh supervisor), as a long-running program wants. Default true;
   * false for a short-lived script that only reads tokens.
   */
  readonly background?: boolean | undefined
}

/** The layer {@link fromConfig} runs: sessions from the configuration, with recovery and the supervisor unless `background: false`. */
export const layerFromConfig = (options?: ConfigOptions): Layer.Layer<Services, unknown> => {
  const sessions = Main.layerSessions({ configPath: options?.configPath, principal: options?.principal })
  return options?.background === false
    ? sessions
    : RefreshSupervisor.layer.pipe(Layer.provideMerge(Recovery.layerStartup()), Layer.provideMerge(sessions))
}

/** {@link fromLayer} over the process's usual composition: what most programs call. */
export const fromConfig = (options?: ConfigOptions): SessionsClient => fromLayer(layerFromConfig(options))
