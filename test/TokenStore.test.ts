import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as TokenStore from "../src/TokenStore.js"
import { conformance } from "./support/TokenStoreConformance.js"

conformance("memory", {
  backend: "memory",
  persistent: false,
  fresh: Effect.succeed(TokenStore.makeMemory)
})

describe("TokenStore", () => {
  it("session ids: the provider alone for the default session, a stable hash for variants", () => {
    assert.strictEqual(TokenStore.sessionIdOf({ provider: "github" }), "github")
    const a = TokenStore.sessionIdOf({ provider: "github", scopes: ["b", "a", "a"] })
    const b = TokenStore.sessionIdOf({ provider: "github", scopes: ["a", "b"] })
    assert.strictEqual(a, b)
    assert.match(a, /^github~[0-9a-f]{12}$/)
    assert.notStrictEqual(a, TokenStore.sessionIdOf({ provider: "github", resource: "https://x" }))
  })

  it("errors never render a secret and say whether a retry may help", () => {
    const e = new TokenStore.TokenStoreError({
      backend: "secret_service",
      operation: "get",
      sessionId: "github",
      reason: { _tag: "Unavailable", detail: "no Secret Service on the session bus" }
    })
    assert.strictEqual(e.message, "secret_service get github: unavailable: no Secret Service on the session bus")
    assert.isTrue(e.retryable)
    const c = new TokenStore.TokenStoreError({
      backend: "filesystem",
      operation: "get",
      sessionId: "github",
      reason: { _tag: "Corrupted", detail: "authentication tag mismatch", quarantinedAs: "x.corrupt-1" }
    })
    assert.isFalse(c.retryable)
    assert.include(c.message, "kept aside as x.corrupt-1")
  })
})
