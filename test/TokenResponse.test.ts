import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Redacted } from "effect"
import { TestClock } from "effect/testing"
import * as TokenResponse from "../src/TokenResponse.js"

const decode = (text: string) => Effect.result(TokenResponse.fromJson(text))

describe("TokenResponse", () => {
  it.effect("decodes RFC 6749 §5.1 responses, with expires_in as a number or numeric string", () =>
    Effect.gen(function*() {
      const r = yield* TokenResponse.fromJson(
        '{"access_token":"AT-SECRET","token_type":"Bearer","expires_in":"3600","refresh_token":"RT-SECRET","scope":"a  b","extra":1}'
      )
      assert.strictEqual(Redacted.value(r.access_token), "AT-SECRET")
      assert.strictEqual(r.expires_in, 3600)
      assert.deepStrictEqual(TokenResponse.grantedScopes(r, ["x"]), ["a", "b"])
      assert.notInclude(String(r), "SECRET")
      const noRefresh = yield* TokenResponse.fromJson('{"access_token":"AT","token_type":"bearer"}')
      assert.strictEqual(noRefresh.refresh_token, undefined)
      assert.deepStrictEqual(TokenResponse.grantedScopes(noRefresh, ["x"]), ["x"])
    }))

  it.effect("refuses bad responses naming the member and never the value", () =>
    Effect.gen(function*() {
      const cases: Array<[string, string]> = [
        ['{"token_type":"Bearer"}', "access_token"],
        ['{"access_token":"AT-SECRET"}', "token_type"],
        ['{"access_token":"AT-SECRET","token_type":"Bearer","expires_in":-1}', "expires_in"],
        ['{"access_token":"AT-SECRET","token_type":"Bearer","expires_in":"soon"}', "expires_in"],
        ['{"access_token":["AT-SECRET"],"token_type":"Bearer"}', "access_token"],
        ['{"access_token":"AT-SECRET","token_type":"Bearer","refresh_token":""}', "refresh_token"],
        ["AT-SECRET", "JSON"],
        ["[]", "object"]
      ]
      for (const [text, member] of cases) {
        const r = yield* decode(text)
        assert.strictEqual(r._tag, "Failure", text)
        if (r._tag === "Failure") {
          assert.include(r.failure.message, member, text)
          assert.notInclude(r.failure.message, "SECRET", text)
        }
      }
      const huge = yield* decode(JSON.stringify({ access_token: "x".repeat(300_000), token_type: "Bearer" }))
      assert.strictEqual(huge._tag, "Failure")
    }))

  it.effect("a stored session gets an absolute expiry from the clock at receipt", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_800_000_000_000)
      const r = yield* TokenResponse.fromJson('{"access_token":"AT","token_type":"Bearer","expires_in":60}')
      const rec = yield* TokenResponse.toRecord(r, { id: "gh", provider: "gh", clientId: "c", requestedScopes: ["repo"] })
      assert.strictEqual(DateTime.toEpochMillis(rec.expiresAt!), 1_800_000_060_000)
      assert.strictEqual(rec.generation, 0)
      assert.deepStrictEqual(rec.scopes, ["repo"])
    }))
})
