/**
 * The in-memory side of Sessions: the current access token of each session
 * this process has used, and which session serves which request.
 *
 * Built for the hot path of `getAccessToken`: one map lookup by request key
 * gives the session's slot, whose entry holds the token and its absolute
 * expiry in epoch milliseconds. A slot is shared by every request key that
 * resolved to its session, so a refresh updates all of them at once.
 *
 * Only records already persisted are put here (persist before exposing),
 * and a slot is emptied when its session is logged out or needs
 * re-authentication, here or (through `invalidate`, fed by `FleetSync`) on
 * another instance of a fleet. State lives in the instance, one per Sessions layer.
 * The maps are plain `Map`s on purpose: `MutableHashMap.get` allocates an
 * `Option` and dispatches through `dual`, which costs about 0.4 us per
 * lookup, more than everything else on the cached path together.
 */
import { DateTime, Effect } from "effect"
import type * as Redacted from "effect/Redacted"
import type * as TokenStore from "../TokenStore.js"

/** A usable access token as last persisted. */
export interface Entry {
  readonly token: Redacted.Redacted<string>
  /** `Effect.succeed(token)`, built once: the cached path then allocates nothing. */
  readonly ready: Effect.Effect<Redacted.Redacted<string>>
  /** Epoch ms; `Infinity` when the server gave no expiry. */
  readonly expiresAtMs: number
  readonly generation: number
}

/** One session's place in the cache; mutated in place so every alias sees a refresh. */
interface Slot {
  readonly id: string
  readonly provider: string
  entry: Entry | undefined
  /** The newest generation another instance announced: an older record is never cached again. */
  floor: number
}

/** Epoch ms until which a record's access token is valid: `-Infinity` without one, `Infinity` without an expiry. */
export const expiresAtMsOf = (record: TokenStore.SessionRecord): number =>
  record.state !== "active" || record.accessToken === undefined
    ? Number.NEGATIVE_INFINITY
    : record.expiresAt === undefined
    ? Number.POSITIVE_INFINITY
    : DateTime.toEpochMillis(record.expiresAt)

/** The cache entry of a record, when it holds a usable access token. */
export const entryOf = (record: TokenStore.SessionRecord): Entry | undefined =>
  record.state === "active" && record.accessToken !== undefined
    ? {
      token: record.accessToken,
      ready: Effect.succeed(record.accessToken),
      expiresAtMs: expiresAtMsOf(record),
      generation: record.generation
    }
    : undefined

/** Builds an empty cache. */
export const make = () => {
  const slots = new Map<string, Slot>()
  const aliases = new Map<string, Slot>()

  const slotOf = (id: string, provider: string): Slot => {
    const existing = slots.get(id)
    if (existing !== undefined) return existing
    const slot: Slot = { id, provider, entry: undefined, floor: 0 }
    slots.set(id, slot)
    return slot
  }

  const removeAliases = (predicate: (slot: Slot) => boolean) => {
    const keys = Array.from(aliases).flatMap(([key, slot]) => (predicate(slot) ? [key] : []))
    for (const key of keys) aliases.delete(key)
  }

  return {
    /** The hot path: the entry serving `requestKey`, if any. */
    lookup: (requestKey: string): Entry | undefined => aliases.get(requestKey)?.entry,
    /** Records what is now persisted for a session. */
    update: (record: TokenStore.SessionRecord): void => {
      const slot = slotOf(record.id, record.provider)
      // A read that raced with another instance's write must not bring back what it replaced.
      if (record.generation >= slot.floor) slot.entry = entryOf(record)
    },
    /** Makes `requestKey` resolve to the session `id`. */
    alias: (requestKey: string, id: string, provider: string): void => {
      aliases.set(requestKey, slotOf(id, provider))
    },
    /** Forgets a session (logout, removal). */
    drop: (id: string): void => {
      const slot = slots.get(id)
      if (slot === undefined) return
      slot.entry = undefined
      slots.delete(id)
      removeAliases((aliased) => aliased === slot)
    },
    /**
     * Another instance changed a session: a newer `generation` empties its
     * entry (the next call reads the store); a removal (`undefined`) forgets it.
     */
    invalidate: (id: string, generation: number | undefined): void => {
      const slot = slots.get(id)
      if (slot === undefined) return
      if (generation === undefined) {
        slot.entry = undefined
        slots.delete(id)
        removeAliases((aliased) => aliased === slot)
        return
      }
      slot.floor = Math.max(slot.floor, generation)
      if (slot.entry !== undefined && slot.entry.generation < generation) slot.entry = undefined
    },
    /** Forgets which session serves which request of a provider (a login may have added a better match). */
    dropAliases: (provider: string): void => {
      removeAliases((aliased) => aliased.provider === provider)
    }
  }
}

/** A cache instance. */
export type SessionCache = ReturnType<typeof make>
