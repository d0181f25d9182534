import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Envelope from "../../src/internal/Envelope.js"

const key = Crypto.randomBytes(32)
const keyId = Envelope.keyIdOf(key)
const keys = new Map([[keyId, new Uint8Array(key)]])
const namespace = "alice@host:1000"
const sessionId = "github"
const plaintext = new TextEncoder().encode(`{"accessToken":"AT-secret"}`)

const sealed = () => Envelope.seal({ key, keyId, namespace, sessionId, plaintext })

const reasonOf = (r: Result.Result<Uint8Array, Envelope.EnvelopeError>): string =>
  Result.isSuccess(r) ? "opened" : r.failure.reason._tag

describe("Envelope", () => {
  it("round-trips, and each seal uses a fresh nonce", () => {
    const a = sealed()
    const b = sealed()
    assert.notDeepEqual(a, b)
    const opened = Envelope.open({ keys, namespace, sessionId, data: a })
    assert.isTrue(Result.isSuccess(opened))
    if (Result.isSuccess(opened)) assert.deepStrictEqual(opened.success, plaintext)
    assert.strictEqual(a.length, Envelope.minimumLength + plaintext.length)
    assert.strictEqual(new TextDecoder().decode(a.subarray(0, 3)), "MTS")
  })

  it("does not contain the plaintext", () => {
    assert.notInclude(Buffer.from(sealed()).toString("latin1"), "AT-secret")
  })

  it("fails on every single-byte flip anywhere in the blob", () => {
    const blob = sealed()
    for (let i = 0; i < blob.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const bad = new Uint8Array(blob)
        bad[i] = bad[i]! ^ mask
        const r = Envelope.open({ keys, namespace, sessionId, data: bad })
        assert.isTrue(Result.isFailure(r), `flip at ${i} opened`)
        const expected = i < 3 ? "BadMagic" : i === 3 ? "UnsupportedVersion" : i < 12 ? "UnknownKey" : "AuthenticationFailed"
        assert.strictEqual(reasonOf(r), expected, `flip at ${i}`)
      }
    }
  })

  it("fails on truncation at every length", () => {
    const blob = sealed()
    for (let n = 0; n < blob.length; n++) {
      const reason = reasonOf(Envelope.open({ keys, namespace, sessionId, data: blob.subarray(0, n) }))
      if (n < Envelope.minimumLength) assert.strictEqual(reason, "Truncated", `length ${n}`)
      else assert.strictEqual(reason, "AuthenticationFailed", `length ${n}`)
    }
  })

  it("a wrong key is UnknownKey; a key forged under the right id fails authentication", () => {
    const other = Crypto.randomBytes(32)
    const r = Envelope.open({ keys: new Map([[Envelope.keyIdOf(other), new Uint8Array(other)]]), namespace, sessionId, data: sealed() })
    assert.strictEqual(reasonOf(r), "UnknownKey")
    if (Result.isFailure(r)) assert.strictEqual((r.failure.reason as { keyId: string }).keyId, keyId)
    const forged = Envelope.open({ keys: () => new Uint8Array(other), namespace, sessionId, data: sealed() })
    assert.strictEqual(reasonOf(forged), "AuthenticationFailed")
  })

  it("is bound to its namespace and session id (AAD)", () => {
    const blob = sealed()
    assert.strictEqual(reasonOf(Envelope.open({ keys, namespace: "bob@host:1001", sessionId, data: blob })), "AuthenticationFailed")
    assert.strictEqual(reasonOf(Envelope.open({ keys, namespace, sessionId: "gitlab", data: blob })), "AuthenticationFailed")
    // The separator keeps namespace and id apart: "a\0b" + "c" is not "a" + "b\0c".
    const split = Envelope.seal({ key, keyId, namespace: "a", sessionId: "bc", plaintext })
    assert.strictEqual(reasonOf(Envelope.open({ keys, namespace: "ab", sessionId: "c", data: split })), "AuthenticationFailed")
  })

  it("rejects another version and foreign data", () => {
    const blob = sealed()
    blob[3] = 2
    const r = Envelope.open({ keys, namespace, sessionId, data: blob })
    assert.strictEqual(reasonOf(r), "UnsupportedVersion")
    if (Result.isFailure(r)) assert.include(r.failure.message, "version 2")
    const json = new TextEncoder().encode(`{"version":1,"id":"github","accessToken":"x"}`.padEnd(80, " "))
    assert.strictEqual(reasonOf(Envelope.open({ keys, namespace, sessionId, data: json })), "BadMagic")
    assert.isFalse(Envelope.isSealed(json))
  })

  it("finds the key by the id in the header, from a map or a function", () => {
    const k2 = Crypto.randomBytes(32)
    const id2 = Envelope.keyIdOf(k2)
    assert.match(id2, /^[0-9a-f]{16}$/)
    assert.notStrictEqual(id2, keyId)
    assert.strictEqual(Envelope.keyIdOf(k2), id2, "stable")
    const blob = Envelope.seal({ key: k2, keyId: id2, namespace, sessionId, plaintext })
    assert.strictEqual(Envelope.keyIdOfSealed(blob), id2)
    const both = new Map([...keys, [id2, new Uint8Array(k2)]])
    assert.strictEqual(reasonOf(Envelope.open({ keys: both, namespace, sessionId, data: blob })), "opened")
    assert.strictEqual(reasonOf(Envelope.open({ keys: (id) => both.get(id), namespace, sessionId, data: blob })), "opened")
    assert.strictEqual(Envelope.keyIdOfSealed(plaintext), undefined)
  })

  it("failure messages carry no secret", () => {
    const reasons: Array<Envelope.Reason> = [
      { _tag: "Truncated", length: 3 },
      { _tag: "BadMagic" },
      { _tag: "UnsupportedVersion", version: 9 },
      { _tag: "UnknownKey", keyId },
      { _tag: "AuthenticationFailed" }
    ]
    const hex = key.toString("hex")
    const b64 = key.toString("base64")
    for (const reason of reasons) {
      const m = new Envelope.EnvelopeError({ reason }).message
      assert.notInclude(m, hex)
      assert.notInclude(m, b64)
      assert.notInclude(m, "AT-secret")
    }
  })

  it("property: round-trips arbitrary plaintext, namespaces and ids, and only for them", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.string({ maxLength: 40 }),
        fc.string({ maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 8 }),
        (bytes, ns, id, extra) => {
          const blob = Envelope.seal({ key, keyId, namespace: ns, sessionId: id, plaintext: bytes })
          const r = Envelope.open({ keys, namespace: ns, sessionId: id, data: blob })
          if (!Result.isSuccess(r) || Buffer.compare(Buffer.from(r.success), Buffer.from(bytes)) !== 0) return false
          return Result.isFailure(Envelope.open({ keys, namespace: ns, sessionId: id + extra, data: blob }))
        }
      ),
      { numRuns: 200 }
    )
  })
})
