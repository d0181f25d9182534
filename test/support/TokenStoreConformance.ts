/**
 * The TokenStore conformance suite: the same behaviour, checked against every
 * backend. A backend's test file calls `conformance(name, harness)`.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Exit, Redacted } from "effect"
import type { Scope } from "effect"
import * as TokenStore from "../../src/TokenStore.js"

/** How to get stores of one backend. */
export interface Harness {
  /**
   * Sets up a fresh, empty environment (temp directory, keyring namespace, ...)
   * and returns an opener; each call of the opener builds a new store instance
   * on that environment, as a new process would.
   */
  readonly fresh: Effect.Effect<Effect.Effect<TokenStore.Shape, unknown, Scope.Scope>, unknown, Scope.Scope>
  /** Whether a new instance sees what an earlier one stored. */
  readonly persistent: boolean
  readonly backend: TokenStore.Backend
}

/** A record with recognizable secrets; `n` varies the id and the values. */
export const sampleRecord = (n: number, overrides: Partial<ConstructorParameters<typeof TokenStore.SessionRecord>[0]> = {}) =>
  new TokenStore.SessionRecord({
    version: 1,
    id: n === 0 ? "github" : `provider-${n}`,
    provider: n === 0 ? "github" : `provider-${n}`,
    issuer: "https://issuer.example",
    tokenEndpoint: "https://issuer.example/token",
    clientId: "client-123",
    scopes: ["openid", "offline_access", `scope-${n}`],
    resource: n % 2 === 0 ? undefined : `https://api.example/${n}`,
    tokenType: "Bearer",
    accessToken: Redacted.make(`AT-secret-${n}-${"x".repeat(n % 7)}`),
    refreshToken: Redacted.make(`RT-secret-${n}`),
    idToken: undefined,
    expiresAt: DateTime.makeUnsafe(1_900_000_000_000 + n * 1000),
    subject: `user-${n}`,
    state: "active",
    generation: 0,
    createdAt: DateTime.makeUnsafe(1_800_000_000_000),
    updatedAt: DateTime.makeUnsafe(1_800_000_000_000 + n),
    ...overrides
  })

const secretOf = (r: TokenStore.SessionRecord, k: "accessToken" | "refreshToken") => {
  const v = r[k]
  return v === undefined ? undefined : Redacted.value(v)
}

const reasonOf = <A>(exit: Exit.Exit<A, unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const err = exit.cause.reasons.find((r) => r._tag === "Fail")
  const e = err?._tag === "Fail" ? err.error : undefined
  return e instanceof TokenStore.TokenStoreError ? e.reason._tag : `not a TokenStoreError: ${String(e)}`
}

/** Runs the suite for one backend. */
export const conformance = (name: string, harness: Harness) =>
  describe(`TokenStore conformance: ${name}`, () => {
    it.live("returns what was put, secrets intact", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        const rec = sampleRecord(1)
        yield* store.put(rec)
        const back = yield* store.get(rec.id)
        assert.strictEqual(back.id, rec.id)
        assert.strictEqual(secretOf(back, "accessToken"), "AT-secret-1-x")
        assert.strictEqual(secretOf(back, "refreshToken"), "RT-secret-1")
        assert.deepStrictEqual(back.scopes, rec.scopes)
        assert.strictEqual(back.resource, "https://api.example/1")
        assert.strictEqual(DateTime.toEpochMillis(back.expiresAt!), 1_900_000_001_000)
        assert.strictEqual(back.subject, "user-1")
      }).pipe(Effect.scoped))

    it.live("a missing session is NotFound", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        const exit = yield* Effect.exit(store.get("nobody"))
        assert.strictEqual(reasonOf(exit), "NotFound")
      }).pipe(Effect.scoped))

    it.live("put replaces the whole record", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        yield* store.put(sampleRecord(2))
        yield* store.put(sampleRecord(2, {
          generation: 1,
          accessToken: Redacted.make("AT-rotated"),
          refreshToken: undefined
        }))
        const back = yield* store.get("provider-2")
        assert.strictEqual(back.generation, 1)
        assert.strictEqual(secretOf(back, "accessToken"), "AT-rotated")
        assert.strictEqual(back.refreshToken, undefined)
        const listed = yield* store.list
        assert.strictEqual(listed.length, 1)
        assert.strictEqual(listed[0]!.generation, 1)
        assert.strictEqual(listed[0]!.hasRefreshToken, false)
      }).pipe(Effect.scoped))

    it.live("remove deletes the record and its metadata; removing twice is fine", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        yield* store.put(sampleRecord(3))
        yield* store.put(sampleRecord(4))
        yield* store.remove("provider-3")
        yield* store.remove("provider-3")
        assert.strictEqual(reasonOf(yield* Effect.exit(store.get("provider-3"))), "NotFound")
        const ids = (yield* store.list).map((m) => m.id)
        assert.deepStrictEqual(ids, ["provider-4"])
      }).pipe(Effect.scoped))

    it.live("list returns metadata of every session and no secret", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        yield* Effect.forEach([0, 1, 2, 3, 4, 5], (n) => store.put(sampleRecord(n)), { concurrency: 3 })
        const listed = yield* store.list
        assert.deepStrictEqual(
          listed.map((m) => m.id).sort(),
          ["github", "provider-1", "provider-2", "provider-3", "provider-4", "provider-5"]
        )
        for (const m of listed) {
          assert.strictEqual(m.backend, harness.backend)
          assert.strictEqual(m.state, "active")
          assert.isTrue(m.hasRefreshToken)
        }
        const text = JSON.stringify(listed) + String(listed.map((m) => JSON.stringify(m)))
        assert.notInclude(text, "-secret-")
      }).pipe(Effect.scoped))

    it.live("a session without refresh token and a needs_reauth session without secrets round-trip", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        yield* store.put(sampleRecord(6, { refreshToken: undefined }))
        yield* store.put(sampleRecord(7, {
          state: "needs_reauth",
          accessToken: undefined,
          refreshToken: undefined,
          lastError: "invalid_grant: refresh token revoked"
        }))
        const a = yield* store.get("provider-6")
        assert.strictEqual(a.refreshToken, undefined)
        assert.strictEqual(secretOf(a, "accessToken"), "AT-secret-6-xxxxxx")
        const b = yield* store.get("provider-7")
        assert.strictEqual(b.state, "needs_reauth")
        assert.strictEqual(b.accessToken, undefined)
        assert.strictEqual(b.lastError, "invalid_grant: refresh token revoked")
        const states = new Map((yield* store.list).map((m) => [m.id, m.state]))
        assert.strictEqual(states.get("provider-7"), "needs_reauth")
      }).pipe(Effect.scoped))

    it.live("ids of multi-level sessions with odd characters are kept apart", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        const idA = TokenStore.sessionIdOf({ provider: "mcp.server_1", resource: "https://a.example/mcp" })
        const idB = TokenStore.sessionIdOf({ provider: "mcp.server_1", scopes: ["tools:write", "tools:read"] })
        assert.notStrictEqual(idA, idB)
        yield* store.put(sampleRecord(8, { id: idA, provider: "mcp.server_1", accessToken: Redacted.make("A") }))
        yield* store.put(sampleRecord(8, { id: idB, provider: "mcp.server_1", accessToken: Redacted.make("B") }))
        assert.strictEqual(secretOf(yield* store.get(idA), "accessToken"), "A")
        assert.strictEqual(secretOf(yield* store.get(idB), "accessToken"), "B")
        assert.strictEqual((yield* store.list).length, 2)
      }).pipe(Effect.scoped))

    it.live("concurrent puts of different sessions are all kept", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        const ns = Array.from({ length: 24 }, (_, i) => 100 + i)
        yield* Effect.forEach(ns, (n) => store.put(sampleRecord(n)), { concurrency: "unbounded" })
        const ids = new Set((yield* store.list).map((m) => m.id))
        assert.strictEqual(ids.size, ns.length)
        for (const n of ns) assert.strictEqual(secretOf(yield* store.get(`provider-${n}`), "refreshToken"), `RT-secret-${n}`)
      }).pipe(Effect.scoped))

    it.live("the health probe reports the backend as available", () =>
      Effect.gen(function*() {
        const store = yield* (yield* harness.fresh)
        const h = yield* store.health
        assert.strictEqual(h.backend, harness.backend)
        assert.isTrue(h.available, h.detail)
        assert.isAtLeast(h.latencyMs, 0)
      }).pipe(Effect.scoped))

    if (harness.persistent) {
      it.live("a new instance (a new process) lists and reads what an earlier one stored", () =>
        Effect.gen(function*() {
          const open = yield* harness.fresh
          const first = yield* open
          yield* first.put(sampleRecord(9))
          yield* first.put(sampleRecord(10, { refreshToken: undefined }))
          const second = yield* open
          const ids = (yield* second.list).map((m) => m.id).sort()
          assert.deepStrictEqual(ids, ["provider-10", "provider-9"])
          assert.strictEqual(secretOf(yield* second.get("provider-9"), "refreshToken"), "RT-secret-9")
          yield* second.remove("provider-9")
          assert.strictEqual(reasonOf(yield* Effect.exit(first.get("provider-9"))), "NotFound")
        }).pipe(Effect.scoped))
    } else {
      it.live("a new instance starts empty (process durability)", () =>
        Effect.gen(function*() {
          const open = yield* harness.fresh
          const first = yield* open
          yield* first.put(sampleRecord(9))
          const second = yield* open
          assert.strictEqual((yield* second.list).length, 0)
          assert.strictEqual(first.durability, "process")
        }).pipe(Effect.scoped))
    }
  })
