/**
 * oidc-provider's development in-memory adapter keeps its records in an LRU
 * of 1000 entries. A login stores about six (session, interaction, code,
 * grant, tokens) and every refresh two more, so with a few hundred sessions
 * refreshed in rounds the grants are evicted and refreshes fail with
 * `invalid_grant`. `test/support/OidcServer.ts` takes no adapter option, so
 * the throughput benchmark lifts the bound for the duration of its run by
 * replacing the methods of that LRU class with an unbounded map (expiry kept).
 * This only changes the test server's bookkeeping, not anything measured of ours.
 */
import * as Path from "node:path"
import * as Url from "node:url"

interface Entry {
  readonly value: unknown
  readonly expiry: number | undefined
}

/** The LRU class oidc-provider's own modules import (the same file URL, so the same module instance). */
const lruModule = () =>
  import(
    Url.pathToFileURL(
      Path.join(Path.dirname(Url.fileURLToPath(import.meta.url)), "..", "node_modules", "oidc-provider", "lib", "helpers", "lru.js")
    ).href
  ) as Promise<{ default: { prototype: Record<string, unknown> } }>

/** Lifts the bound; returns a function that puts the original methods back. */
export const unbounded = async (): Promise<() => void> => {
  const proto = (await lruModule()).default.prototype
  const names = ["get", "set", "has", "delete", "clear"] as const
  const original = Object.fromEntries(names.map((n) => [n, Object.getOwnPropertyDescriptor(proto, n)!]))
  const sizeDescriptor = Object.getOwnPropertyDescriptor(proto, "size")!
  const maps = new WeakMap<object, Map<unknown, Entry>>()
  const mapOf = (self: object) => {
    let m = maps.get(self)
    if (m === undefined) maps.set(self, m = new Map())
    return m
  }
  const live = (self: object, key: unknown): Entry | undefined => {
    const m = mapOf(self)
    const e = m.get(key)
    if (e !== undefined && e.expiry !== undefined && e.expiry <= Date.now()) {
      m.delete(key)
      return undefined
    }
    return e
  }
  Object.defineProperties(proto, {
    get: { configurable: true, writable: true, value: function(this: object, key: unknown) {
      return live(this, key)?.value
    } },
    set: { configurable: true, writable: true, value: function(this: object, key: unknown, value: unknown, options?: { maxAge?: number }) {
      const maxAge = options?.maxAge
      mapOf(this).set(key, {
        value,
        expiry: typeof maxAge === "number" && maxAge !== Number.POSITIVE_INFINITY ? Date.now() + maxAge : undefined
      })
      return this
    } },
    has: { configurable: true, writable: true, value: function(this: object, key: unknown) {
      return live(this, key) !== undefined
    } },
    delete: { configurable: true, writable: true, value: function(this: object, key: unknown) {
      return mapOf(this).delete(key)
    } },
    clear: { configurable: true, writable: true, value: function(this: object) {
      mapOf(this).clear()
    } },
    size: { configurable: true, get: function(this: object) {
      return mapOf(this).size
    } }
  })
  return () => {
    for (const n of names) Object.defineProperty(proto, n, original[n]!)
    Object.defineProperty(proto, "size", sizeDescriptor)
  }
}
