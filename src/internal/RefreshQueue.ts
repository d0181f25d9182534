/**
 * RefreshQueue: the admission of background refreshes. At most `limit`
 * refreshes run at once and at most `size` wait for a slot; a session due
 * while the queue is full is refused with `QueueFull` and counted as an
 * overflow (the supervisor asks again later: never dropped).
 *
 * Only the wait for a slot is interruptible: a queue place and a slot are
 * never lost, and each admitted refresh runs in its own fiber in the queue's
 * scope, so closing the scope interrupts every waiting and running refresh.
 */
import { Effect, Exit, FiberSet, Metric, Ref, Semaphore } from "effect"
import * as Metrics from "../Metrics.js"

/** The queue's counters, as the supervisor's status reports them. */
export interface Load {
  readonly waiting: number
  readonly inFlight: number
  /** How many times a due session found the queue full. */
  readonly overflow: number
}

/** The steps of one admission; the supervisor keeps its per-session state in them. */
export interface Steps {
  /** Checked before a queue place is taken: false when the session was forgotten meanwhile. */
  readonly present: Effect.Effect<boolean>
  /** A queue place was taken: the session now waits for a slot. */
  readonly onWaiting: Effect.Effect<void>
  /** A slot was taken: marks the session running, or answers false (already running) to give the slot back. */
  readonly begin: Effect.Effect<boolean>
  /** The refresh itself, in its own fiber. */
  readonly work: Effect.Effect<void, unknown>
}

/** Builds a queue; its refreshes run in the current scope. */
export const make = Effect.fnUntraced(function*(options: { readonly limit: number; readonly size: number }) {
  const load = yield* Ref.make<Load>({ waiting: 0, inFlight: 0, overflow: 0 })
  const slots = yield* Semaphore.make(options.limit)
  const running = yield* FiberSet.make()

  /** Takes a place (or counts an overflow and fails), waits for a slot, then hands the work to its own fiber. */
  const enter = (steps: Steps): Effect.Effect<void, "QueueFull"> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        if (!(yield* steps.present)) return
        const admitted = yield* Ref.modify(load, (l) =>
          l.waiting < options.size
            ? [true, { ...l, waiting: l.waiting + 1 }] as const
            : [false, { ...l, overflow: l.overflow + 1 }] as const)
        yield* Effect.flatMap(Ref.get(load), (l) => Metric.update(Metrics.queueDepth, l.waiting))
        if (!admitted) return yield* Effect.fail("QueueFull" as const)
        yield* steps.onWaiting
        const acquired = yield* Effect.exit(restore(slots.take(1)))
        const waiting = yield* Ref.modify(load, (l) => [l.waiting - 1, { ...l, waiting: l.waiting - 1 }] as const)
        yield* Metric.update(Metrics.queueDepth, waiting)
        if (Exit.isFailure(acquired)) return yield* acquired
        if (!(yield* steps.begin)) return yield* slots.release(1)
        yield* Ref.update(load, (l) => ({ ...l, inFlight: l.inFlight + 1 }))
        yield* FiberSet.run(
          running,
          Effect.interruptible(steps.work).pipe(
            Effect.ensuring(Ref.update(load, (l) => ({ ...l, inFlight: l.inFlight - 1 })).pipe(Effect.andThen(slots.release(1))))
          )
        )
      })
    )

  return { load: Ref.get(load), enter }
})
