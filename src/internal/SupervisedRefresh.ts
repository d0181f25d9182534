/**
 * One refresh by the background refresher (`RefreshSupervisor.ts`), and what
 * its outcome does to the session's schedule: the session is read first (gone:
 * forgotten; unreadable: backed off, or idle when corrupted; refreshed by
 * someone else since its timer was set: re-armed, nothing sent), then
 * refreshed through `Sessions`; a failure is backed off
 * (`RefreshPlan.failureBackoff`), a session that needs re-authentication goes
 * idle until the user logs in, and a refreshed one is re-armed from the expiry
 * now in the store.
 */
import { Cause, DateTime, Duration, Effect, Option } from "effect"
import type * as Sessions from "../Sessions.js"
import * as TokenStore from "../TokenStore.js"
import * as RefreshPlan from "./RefreshPlan.js"
import type * as RefreshSchedule from "./RefreshSchedule.js"

/** What one supervised refresh needs of its supervisor. */
export interface Deps {
  readonly store: TokenStore.Shape
  readonly sessions: Sessions.Shape
  readonly schedule: RefreshSchedule.RefreshSchedule
  readonly threshold: Duration.Duration
  /** The user namespace, for the session fingerprint in spans (absent in bare test compositions). */
  readonly namespace: Option.Option<string>
}

/** The refresh of one session by id, never failing: every outcome ends in the schedule. */
export const make = ({ namespace, schedule, sessions, store, threshold }: Deps) => {
  const { arm, forget, idle, note, nowMillis, rearm } = schedule

  /** The session as stored now: metadata, or why it cannot be read. */
  const look = (id: string) =>
    store.get(id).pipe(
      Effect.map((record) => ({ _tag: "Found" as const, meta: TokenStore.metadataOf(record, store.backend) })),
      Effect.catch((error) =>
        Effect.succeed(
          error.reason._tag === "NotFound"
            ? { _tag: "Gone" as const }
            : { _tag: "Unreadable" as const, detail: error.message, corrupted: error.reason._tag === "Corrupted" }
        )
      )
    )

  const backoff = (id: string, lastError: string) =>
    note(id, { lastOutcome: Option.some("Failed"), lastError: Option.some(lastError) }).pipe(
      Effect.andThen(arm(id, RefreshPlan.failureBackoff(threshold)))
    )

  // A root span: the timer that started it was set by a sweep or an earlier refresh long finished.
  return Effect.fn("RefreshSupervisor.refresh", { root: true })(function*(id: string) {
    const before = yield* look(id)
    if (before._tag === "Gone") return yield* forget(id)
    if (before._tag === "Unreadable") {
      yield* Effect.logWarning(`background refresh of ${id}: ${before.detail}`)
      return yield* before.corrupted
        ? note(id, { lastError: Option.some(before.detail) }).pipe(Effect.andThen(idle(id)))
        : backoff(id, before.detail)
    }
    const meta = before.meta
    yield* Effect.annotateCurrentSpan({
      "session.provider": meta.provider,
      "session.backend": meta.backend,
      ...Option.match(namespace, {
        onNone: () => ({}),
        onSome: (ns) => ({ "session.fingerprint": TokenStore.fingerprint(ns, id) })
      })
    })
    if (!RefreshPlan.refreshable(meta)) return yield* rearm(id, meta, false)
    // Another process (or a caller of this one) refreshed since the timer was set: nothing to do yet.
    const now = yield* nowMillis
    if (RefreshPlan.expiryMillis(meta) - now > Duration.toMillis(threshold) + Duration.toMillis(RefreshPlan.jitterWindow(threshold))) {
      return yield* rearm(id, meta, false)
    }

    const result = yield* sessions.refresh(id, { force: true }).pipe(
      Effect.map((outcome) => ({ _tag: "Outcome" as const, outcome })),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.succeed({ _tag: "Error" as const, cause })
      )
    )
    if (result._tag === "Error") {
      const error = Cause.findErrorOption(result.cause)
      if (Option.isSome(error) && error.value.reason._tag === "Store" && error.value.reason.error.reason._tag === "NotFound") {
        return yield* forget(id)
      }
      const detail = Option.match(error, { onNone: () => "unexpected failure (see the error log)", onSome: (e) => e.message })
      if (Option.isNone(error)) yield* Effect.logError(`background refresh of ${id} failed unexpectedly`, result.cause)
      else yield* Effect.logWarning(`background refresh of ${id}: ${detail}`)
      yield* Effect.annotateCurrentSpan("refresh.outcome", "Failed")
      return yield* backoff(id, detail)
    }

    const outcome = result.outcome
    yield* Effect.annotateCurrentSpan("refresh.outcome", outcome._tag)
    switch (outcome._tag) {
      case "NeedsReauth": {
        yield* Effect.logWarning(
          `session ${id} of ${meta.provider} needs re-authentication (${outcome.reason}); run \`mtsession login ${meta.provider}\``
        )
        yield* note(id, { lastOutcome: Option.some(outcome._tag), lastError: Option.some(outcome.reason) })
        return yield* idle(id)
      }
      case "Failed": {
        yield* Effect.logWarning(
          `background refresh of ${id} failed (${outcome.reason}); trying again in ${Duration.format(RefreshPlan.failureBackoff(threshold))}`
        )
        return yield* backoff(id, outcome.reason)
      }
      default: {
        const after = yield* look(id)
        if (after._tag === "Gone") return yield* forget(id)
        const refreshedAt = outcome._tag === "Fresh" ? Option.none() : Option.some(DateTime.makeUnsafe(yield* nowMillis))
        yield* note(id, { lastOutcome: Option.some(outcome._tag), lastError: Option.none() })
        if (after._tag === "Unreadable") return yield* backoff(id, after.detail)
        yield* rearm(id, after.meta, true)
        if (Option.isSome(refreshedAt)) yield* note(id, { lastRefreshAt: refreshedAt })
      }
    }
  })
}
