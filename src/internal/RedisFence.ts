/**
 * RedisFence: the refresh lock a fiber holds while it writes, handed from the
 * Redis lock to the Redis store through the fiber's context.
 *
 * The Redis lock provides {@link CurrentFence} to the effect it runs under the
 * lock: the session it locks, its owner token and its fencing token (one per
 * acquisition, increasing). A put of that session made inside the lock sends
 * both to the put script, which refuses it when another instance holds the
 * lock now or wrote with a newer fence: the check happens in Redis at write
 * time, so it holds even if this holder's lease ran out unnoticed.
 */
import { Context, Option } from "effect"

/** The lock a fiber holds. */
export interface Fence {
  /** The lock key: the session id. */
  readonly key: string
  readonly token: string
  readonly fence: number
}

/** The lock held by the current fiber, if any. */
export const CurrentFence = Context.Reference<Option.Option<Fence>>("magictunnel-session/RedisFence", {
  defaultValue: () => Option.none()
})
