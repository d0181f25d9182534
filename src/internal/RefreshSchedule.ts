/**
 * RefreshSchedule: what the background refresher knows of each session it
 * handles and the one timer of each. A session is `scheduled` (its timer
 * runs), `waiting` for a refresh slot, `running`, or `idle` (not refreshable:
 * needs re-authentication, corrupted, no refresh token or expiry). Each
 * entry remembers what its schedule was computed from, so that a sweep
 * re-arms only sessions that changed in the store.
 *
 * Timers run in the schedule's scope; closing it interrupts every one.
 */
import { DateTime, Duration, Effect, FiberMap, HashMap, Option, Ref } from "effect"
import type { SessionStatus } from "../RefreshSupervisor.js"
import type * as TokenStore from "../TokenStore.js"
import * as RefreshPlan from "./RefreshPlan.js"

type Phase = "scheduled" | "waiting" | "running" | "idle"

/** One session's place in the schedule. */
export interface Entry extends SessionStatus {
  readonly phase: Phase
  /** What the schedule was computed from (`RefreshPlan.seenOf`). */
  readonly seen: string
}

/** Builds an empty schedule; `fire` runs when a session's timer is due. */
export const make = Effect.fnUntraced(function*(options: {
  readonly threshold: Duration.Duration
  readonly fire: (id: string) => Effect.Effect<void, unknown>
}) {
  const { threshold } = options
  const entries = yield* Ref.make(HashMap.empty<string, Entry>())
  const timers = yield* FiberMap.make<string>()
  const nowMillis = Effect.map(DateTime.now, DateTime.toEpochMillis)

  const entryOf = (id: string) => Effect.map(Ref.get(entries), HashMap.get(id))

  const forget = (id: string) => Ref.update(entries, HashMap.remove(id)).pipe(Effect.andThen(FiberMap.remove(timers, id)))

  const timer = (id: string, delay: Duration.Duration): Effect.Effect<void> =>
    Effect.sleep(delay).pipe(Effect.andThen(options.fire(id)), Effect.catch(() => Effect.void))

  /** Sets the one timer of a session (replacing any), due after `delay`. */
  const arm = (id: string, delay: Duration.Duration) =>
    Effect.gen(function*() {
      const at = DateTime.makeUnsafe((yield* nowMillis) + Duration.toMillis(delay))
      const present = yield* Ref.modify(entries, (m) =>
        Option.match(HashMap.get(m, id), {
          onNone: () => [false, m] as const,
          onSome: (e) => [true, HashMap.set(m, id, { ...e, phase: "scheduled" as const, nextRefreshAt: Option.some(at) })] as const
        }))
      // Not started immediately: a timer due now could otherwise refresh and re-arm itself before it is registered.
      if (present) yield* FiberMap.run(timers, id, timer(id, delay), { startImmediately: false })
    })

  /** Leaves a session unscheduled. */
  const idle = (id: string) =>
    Ref.update(entries, HashMap.modify(id, (e) => ({ ...e, phase: "idle" as const, nextRefreshAt: Option.none() }))).pipe(
      Effect.andThen(FiberMap.remove(timers, id))
    )

  const note = (id: string, patch: Partial<Entry> | ((e: Entry) => Partial<Entry>)) =>
    Ref.update(entries, HashMap.modify(id, (e) => ({ ...e, ...(typeof patch === "function" ? patch(e) : patch) })))

  /** Marks a session running; false when it is gone or already running. */
  const begin = (id: string) =>
    Ref.modify(entries, (m) =>
      Option.match(HashMap.get(m, id), {
        onNone: () => [false, m] as const,
        onSome: (e) =>
          e.phase === "running"
            ? [false, m] as const
            : [true, HashMap.set(m, id, { ...e, phase: "running" as const, nextRefreshAt: Option.none() })] as const
      }))

  /** Schedules from what the store holds now. */
  const rearm = (id: string, meta: TokenStore.SessionMetadata, afterRefresh: boolean) =>
    Effect.gen(function*() {
      yield* note(id, (e) => ({ seen: RefreshPlan.seenOf(meta), lastRefreshAt: Option.orElse(meta.lastRefreshAt, () => e.lastRefreshAt) }))
      if (!RefreshPlan.refreshable(meta)) return yield* idle(id)
      yield* arm(id, yield* RefreshPlan.delayUntilRefresh(RefreshPlan.expiryMillis(meta), yield* nowMillis, threshold, afterRefresh))
    })

  /** Brings one listed session into the schedule, unless its schedule is already up to date or it is refreshing. */
  const track = (meta: TokenStore.SessionMetadata) =>
    Effect.gen(function*() {
      const seen = RefreshPlan.seenOf(meta)
      const decision = yield* Ref.modify(entries, (m) => {
        const current = HashMap.get(m, meta.id)
        if (Option.isSome(current) && (current.value.phase === "running" || current.value.seen === seen)) {
          return ["keep", m] as const
        }
        const base: Entry = Option.getOrElse(current, (): Entry => ({
          id: meta.id,
          provider: meta.provider,
          phase: "idle",
          seen,
          nextRefreshAt: Option.none(),
          lastRefreshAt: meta.lastRefreshAt,
          lastOutcome: Option.none(),
          lastError: meta.lastError
        }))
        const next: Entry = { ...base, seen, lastRefreshAt: Option.orElse(meta.lastRefreshAt, () => base.lastRefreshAt) }
        return [RefreshPlan.refreshable(meta) ? "arm" : "idle", HashMap.set(m, meta.id, next)] as const
      })
      if (decision === "arm") {
        yield* arm(meta.id, yield* RefreshPlan.delayUntilRefresh(RefreshPlan.expiryMillis(meta), yield* nowMillis, threshold, false))
      } else if (decision === "idle") {
        yield* idle(meta.id)
      }
    })

  /** Forgets every session not in `keep`, except those refreshing (they find out when they re-read the store). */
  const retain = (keep: ReadonlySet<string>) =>
    Effect.gen(function*() {
      for (const [id, entry] of yield* Ref.get(entries)) {
        if (!keep.has(id) && entry.phase !== "running") yield* forget(id)
      }
    })

  /** The entries, sorted by id, as status shows them. */
  const snapshot = Effect.map(Ref.get(entries), (m) =>
    HashMap.toValues(m)
      .map(({ id, lastError, lastOutcome, lastRefreshAt, nextRefreshAt, provider }): SessionStatus => ({
        id,
        provider,
        nextRefreshAt,
        lastRefreshAt,
        lastOutcome,
        lastError
      }))
      .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0))

  return { entryOf, forget, arm, idle, note, begin, rearm, track, retain, snapshot, nowMillis }
})

/** A schedule, as `make` builds it. */
export type RefreshSchedule = Effect.Success<ReturnType<typeof make>>
