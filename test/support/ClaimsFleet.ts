/**
 * Supervisors of several instances in one test process, for the claims tests:
 * each has its own fake `Sessions` whose refresh stores a new expiry (as the
 * real one would) and is counted per instance, its own claims, and its own
 * scope, so a test can stop one instance (closing the scope without
 * releasing its claims is what a killed process looks like to the others).
 */
import { DateTime, Effect, Exit, Option, Ref, Scope } from "effect"
import * as RefreshClaims from "../../src/RefreshClaims.js"
import * as RefreshSupervisor from "../../src/RefreshSupervisor.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import { sampleRecord } from "./TokenStoreConformance.js"

/** Who refreshed what, in order. */
export type Calls = Ref.Ref<ReadonlyArray<{ readonly instance: string; readonly id: string }>>

/** No calls yet. */
export const makeCalls: Effect.Effect<Calls> = Ref.make<ReadonlyArray<{ readonly instance: string; readonly id: string }>>([])

/** A session `s-<n>` expiring at `expiresAt`. */
export const session = (n: number, expiresAt: DateTime.Utc) =>
  sampleRecord(n, { id: `s-${n}`, provider: `p-${n}`, expiresAt })

/** Stores every session again with a new expiry (and the next generation), as a refresh elsewhere would. */
export const expireAll = (store: TokenStore.Shape, ids: ReadonlyArray<string>, expiresAt: DateTime.Utc) =>
  Effect.forEach(ids, (id) =>
    Effect.flatMap(store.get(id), (r) =>
      store.put(new TokenStore.SessionRecord({ ...r, expiresAt, generation: r.generation + 1 }))), { discard: true })

/** A fake Sessions of one instance: a refresh stores an expiry an hour on and counts the call. */
const fakeSessions = (store: TokenStore.Shape, instance: string, calls: Calls) =>
  Sessions.Sessions.of({
    refresh: (id) =>
      Effect.gen(function*() {
        yield* Ref.update(calls, (cs) => [...cs, { instance, id }])
        const now = yield* DateTime.now
        const r = yield* Effect.orDie(store.get(id))
        yield* Effect.orDie(store.put(
          new TokenStore.SessionRecord({ ...r, expiresAt: DateTime.add(now, { hours: 1 }), generation: r.generation + 1, lastRefreshAt: now })
        ))
        return { _tag: "Refreshed", rotated: true, generation: r.generation + 1 } as const
      }),
    getAccessToken: () => Effect.die("not used"),
    login: () => Effect.die("not used"),
    logout: () => Effect.die("not used")
  })

/** One instance: a supervisor over `store` with `claims`, in its own scope. */
export const startInstance = (options: {
  readonly instance: string
  readonly store: TokenStore.Shape
  readonly claims: RefreshClaims.Shape
  readonly calls: Calls
  /** The scope the instance's own resources (e.g. a Redis connection) were built in; closed by `kill`. Default: a child of the current scope. */
  readonly scope?: Scope.Closeable | undefined
}) =>
  Effect.gen(function*() {
    const scope = options.scope ?? (yield* Scope.fork(yield* Effect.scope))
    const supervisor = yield* RefreshSupervisor.make({ cleanup: false }).pipe(
      Effect.provideService(TokenStore.TokenStore, options.store),
      Effect.provideService(Sessions.Sessions, fakeSessions(options.store, options.instance, options.calls)),
      Effect.provideService(RefreshClaims.RefreshClaims, options.claims),
      Effect.provide(SessionConfig.layerWith((s) => s)),
      Scope.provide(scope)
    )
    /** The sessions this instance has scheduled. */
    const scheduled = Effect.map(supervisor.status, (s) => s.sessions.filter((x) => Option.isSome(x.nextRefreshAt)).map((x) => x.id))
    return {
      instance: options.instance,
      supervisor,
      scheduled,
      /** Stops the instance without releasing its claims (as a kill would). */
      kill: Scope.close(scope, Exit.void)
    }
  })
