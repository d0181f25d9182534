/**
 * Single flight: concurrent callers with the same key share one run of an
 * effect and all get its result (a thousand callers on an expired token
 * cause one refresh).
 *
 * The run is forked into the owner's scope, not the first caller's: a
 * refresh that reached the server is persisted even if every caller was
 * interrupted meanwhile (its rotated refresh token must not be lost). A
 * flight is forgotten as soon as it ends, so a later caller starts afresh.
 *
 * The effect is passed as a thunk, built only by the caller that starts a
 * flight: a joiner builds nothing. (Building a traced effect captures a call
 * site stack, 10-20 µs: in a herd of 10,000 callers that was 200 ms, most of
 * the herd's wall time.)
 */
import { Deferred, Effect, type Scope } from "effect"

/** A flight's result, and whether this caller joined a flight someone else started. */
export interface Flown<A> {
  readonly value: A
  readonly joined: boolean
}

/** Builds a single-flight group whose runs live in `scope`. */
export const make = <A, E>(scope: Scope.Scope) => {
  // A plain Map: string keys need no structural hashing, and a joiner's lookup allocates nothing.
  const flights = new Map<string, Deferred.Deferred<A, E>>()

  /** Joins the flight of `key`, or starts one running `make()`; `joined` says which happened. */
  const run = (key: string, make: () => Effect.Effect<A, E>): Effect.Effect<Flown<A>, E> =>
    Effect.suspend((): Effect.Effect<Flown<A>, E> => {
      const existing = flights.get(key)
      if (existing !== undefined) return Effect.map(Deferred.await(existing), (value) => ({ value, joined: true }))
      // Checking and registering happen in one synchronous step: no other fiber can start a second flight.
      const deferred = Deferred.makeUnsafe<A, E>()
      flights.set(key, deferred)
      const flight = make().pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            flights.delete(key)
            return Deferred.done(deferred, exit)
          })
        )
      )
      // Started at once, on this stack until its first wait: callers that join later find it already
      // under way (a herd's joiners run while the refresh waits for I/O, not before it starts).
      return Effect.forkIn(flight, scope, { startImmediately: true }).pipe(
        Effect.andThen(Deferred.await(deferred)),
        Effect.map((value) => ({ value, joined: false }))
      )
    })

  return { run }
}
