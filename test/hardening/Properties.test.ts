/**
 * Property-based tests (fast-check) of the three decoders that meet hostile
 * bytes: the record envelope, the configuration decoder (YAML file and
 * MAGICTUNNEL_* environment) and the token response decoder. Each one, on any
 * input, returns a value or a typed failure, never throws or dies, accepts
 * what it documents, and never echoes a secret in its failure.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import { Cause, Effect, Exit, Result } from "effect"
import * as fc from "fast-check"
import * as ConfigLoader from "../../src/internal/ConfigLoader.js"
import * as Envelope from "../../src/internal/Envelope.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as TokenResponse from "../../src/TokenResponse.js"

const runs = Number(process.env["HARDENING_PROPERTY_RUNS"] ?? "300")
/** Hostile inputs tried, for the closing figures. */
let tried = 0

describe("property: the record envelope", () => {
  const key = Crypto.randomBytes(32)
  const keyId = Envelope.keyIdOf(key)
  const keys = new Map([[keyId, new Uint8Array(key)]])
  const seal = (plaintext: Uint8Array, ns: string, id: string) =>
    Envelope.seal({ key, keyId, namespace: ns, sessionId: id, plaintext })
  const open = (data: Uint8Array, ns: string, id: string) => Envelope.open({ keys, namespace: ns, sessionId: id, data })

  it("arbitrary bytes never throw: a typed failure, or (astronomically unlikely) a valid blob", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string(), fc.string(), fc.boolean(), (bytes, ns, id, withMagic) => {
        tried++
        const data = withMagic ? Uint8Array.from([...Envelope.magic, Envelope.version, ...bytes]) : bytes
        const r = open(data, ns, id)
        return Result.isFailure(r) && ["Truncated", "BadMagic", "UnsupportedVersion", "UnknownKey", "AuthenticationFailed"].includes(r.failure.reason._tag)
      }),
      { numRuns: runs * 3 }
    )
  })

  it("any change to a sealed blob fails: a flipped bit, a cut, extra bytes, or another blob's body", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 256 }),
        fc.uint8Array({ maxLength: 256 }),
        fc.string({ maxLength: 30 }),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        fc.uint8Array({ minLength: 1, maxLength: 16 }),
        (a, b, ns, where, bit, extra) => {
          tried += 4
          const blob = seal(a, ns, "s")
          const flipped = Uint8Array.from(blob)
          const i = where % blob.length
          flipped[i] = flipped[i]! ^ (1 << bit)
          const cut = blob.subarray(0, where % blob.length)
          const longer = Uint8Array.from([...blob, ...extra])
          const other = seal(b, ns, "s")
          const spliced = Uint8Array.from([...blob.subarray(0, 24), ...other.subarray(24)])
          return [flipped, cut, longer, spliced].every((d) => Result.isFailure(open(d, ns, "s"))) &&
            Result.isSuccess(open(blob, ns, "s"))
        }
      ),
      { numRuns: runs }
    )
  })
})

const keys = SessionConfig.describeKeys()
const rangeOf = (accepts: string) => {
  const m = /^an integer between (-?\d+) and (-?\d+)$/.exec(accepts)
  return m === null ? undefined : { min: Number(m[1]), max: Number(m[2]) }
}
const valueAt = (loaded: SessionConfig.Loaded, key: string): unknown =>
  key.split(".").reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], loaded.effective)

const decodeEnv = (env: Record<string, string>) => ConfigLoader.decode({ env })
const decodeFile = (text: string) =>
  ConfigLoader.decode({ env: {}, file: { path: "/nonexistent/config.yaml", display: "config.yaml", via: "--config", text } })

describe("property: the configuration decoder", () => {
  const integers = keys.filter((k) => rangeOf(k.accepts) !== undefined)
  const booleans = keys.filter((k) => k.accepts === "true or false")
  const envValue = fc.oneof(
    fc.integer({ min: -1_000_000, max: 10_000_000 }).map(String),
    fc.string({ maxLength: 12 }),
    fc.constantFrom("NaN", "Infinity", "-0", "0x10", "1e3", " 5", "5 ", "5.5", "007", "+3", "９", "true", "yes", "1_000")
  )

  it(`every integer variable (${integers.length}): a value in range, or a ConfigError naming the variable`, () => {
    fc.assert(
      fc.property(fc.constantFrom(...integers), envValue, (k, value) => {
        tried++
        const range = rangeOf(k.accepts)!
        const r = decodeEnv({ [k.env]: value })
        if (Result.isFailure(r)) {
          assert.instanceOf(r.failure, SessionConfig.ConfigError)
          assert.include(r.failure.message, k.env)
          assert.isFalse(/^\d+$/.test(value) && Number(value) >= range.min && Number(value) <= range.max, `${k.env}=${value} refused`)
          return
        }
        if (value === "") return // an empty variable counts as unset
        const v = valueAt(r.success, k.key)
        assert.isTrue(Number.isInteger(v) && (v as number) >= range.min && (v as number) <= range.max, `${k.env}=${value} gave ${String(v)}`)
      }),
      { numRuns: runs }
    )
  })

  it(`every boolean variable (${booleans.length}): a boolean, or a ConfigError naming the variable`, () => {
    fc.assert(
      fc.property(fc.constantFrom(...booleans), envValue, (k, value) => {
        tried++
        const r = decodeEnv({ [k.env]: value })
        if (Result.isFailure(r)) return assert.include(r.failure.message, k.env)
        assert.isBoolean(valueAt(r.success, k.key))
      }),
      { numRuns: runs }
    )
  })

  it("the encryption key variable: 32 bytes of base64 or a refusal that never shows the value", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ minLength: 8 }), fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b).toString("base64"))), (value) => {
        tried++
        const r = decodeEnv({ [SessionConfig.encryptionKeyEnv]: value })
        if (Result.isSuccess(r)) return assert.strictEqual(Buffer.from(value, "base64").length, 32)
        assert.include(r.failure.message, SessionConfig.encryptionKeyEnv)
        assert.notInclude(r.failure.message, value.trim())
      }),
      { numRuns: runs }
    )
  })

  it("arbitrary file text: loads, or a ConfigError whose every problem says where (file:line)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ maxLength: 60 }).map((s) => `auth:\n  session_persistence:\n    ${s}`)), (text) => {
        tried++
        const r = decodeFile(text)
        if (Result.isFailure(r)) for (const p of r.failure.problems) assert.match(p.source, /^(config\.yaml(:\d+)?|env:.*)$/, p.source)
      }),
      { numRuns: runs }
    )
  })

  it("arbitrary values (wrong types, out of range) at every key of the file: typed, or a ConfigError naming the key", () => {
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 2 }), (k, value) => {
        tried++
        const path = k.key.split(".")
        const tree = path.reduceRight<unknown>((inner, part) => ({ [part]: inner }), value)
        const r = decodeFile(JSON.stringify({ auth: { session_persistence: tree } }))
        if (Result.isFailure(r)) {
          assert.isTrue(r.failure.problems.some((p) => p.key.endsWith(k.key) || p.key === "yaml"), `${k.key}: ${r.failure.message}`)
          return
        }
        const v = valueAt(r.success, k.key)
        const range = rangeOf(k.accepts)
        if (range !== undefined) assert.isTrue(Number.isInteger(v) && (v as number) >= range.min && (v as number) <= range.max, `${k.key}: ${JSON.stringify(value)} gave ${String(v)}`)
        if (k.accepts === "true or false") assert.isBoolean(v)
      }),
      { numRuns: runs }
    )
  })
})

describe("property: the token response decoder", () => {
  const decode = (u: unknown) => Effect.runSyncExit(TokenResponse.fromUnknown(u))
  const typedOrValue = <A>(exit: Exit.Exit<A, TokenResponse.TokenResponseError>) =>
    Exit.isSuccess(exit) || (!Cause.hasDies(exit.cause) && exit.cause.reasons.every((r) => r._tag === "Fail" && r.error._tag === "TokenResponseError"))

  it("anything at all: a response or a TokenResponseError, never a defect", () => {
    fc.assert(
      fc.property(fc.anything(), (u) => {
        tried++
        return typedOrValue(decode(u))
      }),
      { numRuns: runs * 3 }
    )
  })

  it("responses with members of any type: valid ones decode as documented, bad ones never echo a secret", () => {
    const secret = fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 8, maxLength: 24 })
      .map((h): string => `SECRET-${h}`)
    const member = fc.oneof(fc.constant(undefined), fc.anything())
    fc.assert(
      fc.property(
        secret,
        secret,
        fc.oneof(fc.constant("Bearer"), member),
        fc.oneof(fc.integer({ min: -10_000, max: 10 * 365 * 24 * 3600 + 10 }), fc.integer().map(String), fc.double(), member),
        fc.oneof(fc.constant("openid offline_access"), member),
        fc.boolean(),
        (at: string, rt: string, tokenType, expiresIn, scope, withRefresh) => {
          tried++
          const input: Record<string, unknown> = { access_token: at, token_type: tokenType, expires_in: expiresIn, scope }
          if (withRefresh) input["refresh_token"] = rt
          for (const k of Object.keys(input)) if (input[k] === undefined) delete input[k]
          const exit = decode(input)
          if (!typedOrValue(exit)) return false
          if (Exit.isFailure(exit)) {
            const message = String(exit.cause)
            return !message.includes(at) && !message.includes(rt)
          }
          const e = exit.value.expires_in
          return e === undefined || (Number.isInteger(e) && e >= 0 && e <= 10 * 365 * 24 * 3600)
        }
      ),
      { numRuns: runs * 2 }
    )
  })

  it("negative or fractional expires_in is always refused; a non-negative integer (or its string) is kept", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ max: -1 }), fc.double({ noNaN: true }).filter((d) => !Number.isInteger(d))), (bad) => {
        tried++
        return Exit.isFailure(decode({ access_token: "a", token_type: "Bearer", expires_in: bad }))
      }),
      { numRuns: runs }
    )
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3_000_000 }), fc.boolean(), (n, asString) => {
        tried++
        const exit = decode({ access_token: "a", token_type: "Bearer", expires_in: asString ? String(n) : n })
        return Exit.isSuccess(exit) && exit.value.expires_in === n
      }),
      { numRuns: runs }
    )
  })

  it("JSON text of any shape or size: typed; over the size limit refused unread", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        tried++
        return typedOrValue(Effect.runSyncExit(TokenResponse.fromJson(text)))
      }),
      { numRuns: runs }
    )
    const huge = JSON.stringify({ access_token: "x".repeat(TokenResponse.maxResponseBytes), token_type: "Bearer" })
    const exit = Effect.runSyncExit(TokenResponse.fromJson(huge))
    assert.isTrue(Exit.isFailure(exit))
    tried++
    console.info(`[hardening] property-based hostile inputs: ${tried}`)
  })
})
