import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as MetadataIndex from "../../src/internal/MetadataIndex.js"
import * as RecordCodec from "../../src/internal/RecordCodec.js"
import * as TokenStore from "../../src/TokenStore.js"
import { sampleRecord } from "../support/TokenStoreConformance.js"

const utf8 = new TextEncoder()

/** Every field of a record's JSON, broken in the ways a damaged or forged file could break it. */
const mutations: ReadonlyArray<readonly [string, (o: Record<string, unknown>) => unknown]> = [
  ["intact", (o) => o],
  ["unknown version", (o) => ({ ...o, version: 2 })],
  ["no id", ({ id: _, ...o }) => o],
  ["numeric id", (o) => ({ ...o, id: 7 })],
  ["no provider", ({ provider: _, ...o }) => o],
  ["issuer not a string", (o) => ({ ...o, issuer: 1 })],
  ["scopes not an array", (o) => ({ ...o, scopes: "openid" })],
  ["a scope not a string", (o) => ({ ...o, scopes: ["openid", 3] })],
  ["access token not a string", (o) => ({ ...o, accessToken: { value: "x" } })],
  ["refresh token null", (o) => ({ ...o, refreshToken: null })],
  ["refresh token absent", ({ refreshToken: _, ...o }) => o],
  ["id token a number", (o) => ({ ...o, idToken: 5 })],
  ["expiry a string", (o) => ({ ...o, expiresAt: "tomorrow" })],
  ["expiry not finite", (o) => ({ ...o, expiresAt: 1e400 })],
  ["expiry absent", ({ expiresAt: _, ...o }) => o],
  ["unknown state", (o) => ({ ...o, state: "expired" })],
  ["fractional generation", (o) => ({ ...o, generation: 1.5 })],
  ["no createdAt", ({ createdAt: _, ...o }) => o],
  ["updatedAt null", (o) => ({ ...o, updatedAt: null })],
  ["lastError a number", (o) => ({ ...o, lastError: 1 })],
  ["an extra field", (o) => ({ ...o, extra: "ignored" })],
  ["an array", () => []],
  ["null", () => null]
]

describe("RecordCodec", () => {
  it.effect("list's metadata decoder accepts and refuses exactly what the record decoder does, and agrees on what it accepts", () =>
    Effect.gen(function*() {
      for (const n of [1, 2]) {
        const record = sampleRecord(n)
        const fileKey = MetadataIndex.fileKeyOf(record.id)
        const json = JSON.parse(new TextDecoder().decode(yield* RecordCodec.encode(record))) as Record<string, unknown>
        for (const [name, mutate] of mutations) {
          const bytes = utf8.encode(JSON.stringify(mutate(json)))
          const full = RecordCodec.decodeResult(fileKey, bytes)
          const listed = RecordCodec.decodeMetadata(fileKey, bytes, "filesystem")
          assert.strictEqual(Result.isSuccess(listed), Result.isSuccess(full), `${name} (record ${n})`)
          if (Result.isSuccess(full) && Result.isSuccess(listed)) {
            assert.deepStrictEqual(listed.success, TokenStore.metadataOf(full.success, "filesystem"), name)
          }
          if (Result.isFailure(full) && Result.isFailure(listed)) assert.deepStrictEqual(listed.failure, full.failure, name)
        }
        // Not UTF-8, not JSON, and a record of another session: refused alike, with the same reason.
        for (const [name, bytes, key] of [
          ["not UTF-8", Uint8Array.of(0xff, 0xfe, 0x7b), fileKey],
          ["not JSON", utf8.encode("{ not json"), fileKey],
          ["another session's", utf8.encode(JSON.stringify(json)), MetadataIndex.fileKeyOf("someone-else")]
        ] as const) {
          const full = RecordCodec.decodeResult(key, bytes)
          const listed = RecordCodec.decodeMetadata(key, bytes, "filesystem")
          assert.isTrue(Result.isFailure(full) && Result.isFailure(listed), name)
          if (Result.isFailure(full) && Result.isFailure(listed)) assert.deepStrictEqual(listed.failure, full.failure, name)
        }
      }
    }))
})
