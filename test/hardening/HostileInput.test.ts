/**
 * Hostile input, each getting a clear typed error and losing nothing else:
 * damaged, foreign and oversized record files; records that open but lie;
 * an index that disagrees with the records; path traversal and odd
 * characters in session ids, principals and provider names; authorization
 * servers that redirect, hang or answer garbage. (Config and env values and
 * the decoders are in Properties.test.ts; single byte flips and truncation at
 * every length of the envelope are in test/internal/Envelope.test.ts.)
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as NodePath from "node:path"
import { DateTime, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as Envelope from "../../src/internal/Envelope.js"
import * as MetadataIndex from "../../src/internal/MetadataIndex.js"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import * as EncryptedFile from "../../src/TokenStore/EncryptedFile.js"
import * as UserContext from "../../src/UserContext.js"
import { runCli } from "../support/Cli.js"
import { environment, sessionDirectoryOf, tempDir } from "../support/FileStoreFixtures.js"
import { envStore, storeLayer, walk } from "../support/hardening/Stores.js"
import { providerSettings, userLayer } from "../support/SessionsFixtures.js"
import { newKey } from "../support/SessionsStack.js"
import { sampleRecord } from "../support/TokenStoreConformance.js"

/** Hostile inputs tried, per family, for the closing figures. */
const tried = new Map<string, number>()
const count = (family: string) => tried.set(family, (tried.get(family) ?? 0) + 1)

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const r = Exit.isFailure(exit) ? exit.cause.reasons.find((x) => x._tag === "Fail") : undefined
  assert.isDefined(r, `expected a typed failure, got ${Exit.isFailure(exit) ? String(exit.cause) : "success"}`)
  return (r as { error: E }).error
}

const at = (r: TokenStore.SessionRecord) => r.accessToken === undefined ? undefined : Redacted.value(r.accessToken)

const storageOf = Effect.map(UserContext.UserContext, (u) => ({ dir: u.storageDirectory, namespace: u.namespace }))
const recordFile = (dir: string, id: string) => NodePath.join(dir, MetadataIndex.fileKeyOf(id) + EncryptedFile.recordSuffix)

/** Three sessions in a fresh encrypted store; the hostile `mutate` is applied to the second one's file. */
const withVictim = (
  name: string,
  mutate: (file: string, ctx: { dir: string; namespace: string; key: Uint8Array; home: string }) => void,
  expected: ReadonlyArray<TokenStore.Reason["_tag"]>
) =>
  Effect.gen(function*() {
    const home = yield* tempDir("mts-hostile-")
    const key = newKey().bytes
    yield* Effect.gen(function*() {
      const store = yield* TokenStore.TokenStore
      const { dir, namespace } = yield* storageOf
      for (const n of [1, 2, 3]) yield* store.put(sampleRecord(n))
      const outside = walk(home).filter((e) => !e.path.startsWith(dir)).map((e) => e.path)
      mutate(recordFile(dir, "provider-2"), { dir, namespace, key, home })
      const error = failureOf(yield* Effect.exit(store.get("provider-2")))
      assert.instanceOf(error, TokenStore.TokenStoreError, name)
      assert.include(expected, error.reason._tag, `${name}: ${error.message}`)
      assert.notInclude(error.message, "AT-secret", name)
      assert.notInclude(error.message, "RT-secret", name)
      // Nothing else lost: the other sessions read, and list reports each one.
      assert.strictEqual(at(yield* store.get("provider-1")), "AT-secret-1-x")
      assert.strictEqual(at(yield* store.get("provider-3")), "AT-secret-3-xxx")
      // Even a record that cannot be read at all (not a file) hides no other session from `list`.
      const listed = yield* store.list
      assert.isTrue(listed.some((m) => m.id === "provider-2"), `${name}: the damaged session is still listed`)
      assert.deepStrictEqual(
        listed.filter((m) => m.id !== "provider-2").map((m) => [m.id, m.state]).sort(),
        [["provider-1", "active"], ["provider-3", "active"]],
        name
      )
      // Nothing outside the storage directory was touched.
      for (const p of outside) assert.isTrue(Fs.existsSync(p), p)
      // A new login replaces the damaged session.
      if (!Fs.existsSync(recordFile(dir, "provider-2")) || Fs.statSync(recordFile(dir, "provider-2")).isFile()) {
        yield* store.put(sampleRecord(2))
        assert.strictEqual(at(yield* store.get("provider-2")), "AT-secret-2-xx")
      }
      count("records")
    }).pipe(Effect.provide(envStore(home, key)))
  }).pipe(Effect.scoped)

const flip = (offset: (len: number) => number) => (file: string) => {
  const b = Fs.readFileSync(file)
  const i = offset(b.length)
  b[i] = b[i]! ^ 0x40
  Fs.writeFileSync(file, b)
}
const truncate = (length: (len: number) => number) => (file: string) => {
  const b = Fs.readFileSync(file)
  Fs.writeFileSync(file, b.subarray(0, length(b.length)))
}
/** Seals `plaintext` exactly as the store would for `id`, with the right key and AAD. */
const sealAs = (ctx: { namespace: string; key: Uint8Array }, id: string, plaintext: string) =>
  Envelope.seal({
    key: ctx.key,
    keyId: Envelope.keyIdOf(ctx.key),
    namespace: ctx.namespace,
    sessionId: MetadataIndex.fileKeyOf(id),
    plaintext: new TextEncoder().encode(plaintext)
  })

describe("hostile record files", () => {
  const cases: ReadonlyArray<readonly [string, Parameters<typeof withVictim>[1], ReadonlyArray<TokenStore.Reason["_tag"]>]> = [
    ["empty", (f) => Fs.writeFileSync(f, ""), ["Corrupted"]],
    ["truncated to the magic", truncate(() => 3), ["Corrupted"]],
    ["truncated inside the header", truncate(() => 9), ["Corrupted"]],
    ["truncated inside the nonce", truncate(() => 20), ["Corrupted"]],
    ["truncated by one byte", truncate((n) => n - 1), ["Corrupted"]],
    ["truncated to half", truncate((n) => n >> 1), ["Corrupted"]],
    ["tampered key id", flip(() => 5), ["Corrupted"]],
    ["tampered nonce", flip(() => 14), ["Corrupted"]],
    ["tampered ciphertext", flip((n) => n >> 1), ["Corrupted"]],
    ["tampered tag", flip((n) => n - 1), ["Corrupted"]],
    ["version 0", (f) => { const b = Fs.readFileSync(f); b[3] = 0; Fs.writeFileSync(f, b) }, ["Corrupted"]],
    ["version 2", (f) => { const b = Fs.readFileSync(f); b[3] = 2; Fs.writeFileSync(f, b) }, ["Corrupted"]],
    ["version 255", (f) => { const b = Fs.readFileSync(f); b[3] = 255; Fs.writeFileSync(f, b) }, ["Corrupted"]],
    ["wrong key", (f, ctx) => Fs.writeFileSync(f, sealAs({ ...ctx, key: Crypto.randomBytes(32) }, "provider-2", "{}")), ["Corrupted"]],
    ["4 MiB of random bytes", (f) => Fs.writeFileSync(f, Crypto.randomBytes(4 * 1024 * 1024)), ["Corrupted"]],
    ["4 MiB behind a valid header", (f) => {
      const b = Fs.readFileSync(f)
      Fs.writeFileSync(f, Buffer.concat([b.subarray(0, 24), Crypto.randomBytes(4 * 1024 * 1024)]))
    }, ["Corrupted"]],
    ["copied from another session", (f, ctx) => Fs.copyFileSync(recordFile(ctx.dir, "provider-1"), f), ["Corrupted"]],
    ["plaintext JSON in an encrypted store", (f) => Fs.writeFileSync(f, JSON.stringify({ version: 1, id: "provider-2" })), ["Corrupted"]],
    ["opens, but is not JSON", (f, ctx) => Fs.writeFileSync(f, sealAs(ctx, "provider-2", "\u0000\u0001 not json")), ["Corrupted"]],
    ["opens, but is not UTF-8", (f, ctx) =>
      Fs.writeFileSync(f, Envelope.seal({
        key: ctx.key,
        keyId: Envelope.keyIdOf(ctx.key),
        namespace: ctx.namespace,
        sessionId: MetadataIndex.fileKeyOf("provider-2"),
        plaintext: Uint8Array.of(0xff, 0xfe, 0xfd)
      })), ["Corrupted"]],
    ["opens, JSON of the wrong shape", (f, ctx) =>
      Fs.writeFileSync(f, sealAs(ctx, "provider-2", JSON.stringify({ version: 1, id: "provider-2", generation: "x" }))), ["Corrupted"]],
    ["opens, a record of a future version", (f, ctx) =>
      Fs.writeFileSync(f, sealAs(ctx, "provider-2", JSON.stringify({ version: 2, id: "provider-2" }))), ["Corrupted"]],
    ["opens, a valid record of another session sealed for this file", (f, ctx) => {
      const other = JSON.parse(JSON.stringify({
        ...sampleRecord(1),
        accessToken: "x",
        refreshToken: undefined,
        expiresAt: 1_900_000_000_000,
        createdAt: 1_800_000_000_000,
        updatedAt: 1_800_000_000_000
      }))
      Fs.writeFileSync(f, sealAs(ctx, "provider-2", JSON.stringify(other)))
    }, ["Corrupted"]],
    ["a symlink to a file outside", (f, ctx) => {
      const outside = NodePath.join(ctx.home, "outside.txt")
      Fs.writeFileSync(outside, "not yours")
      Fs.rmSync(f)
      Fs.symlinkSync(outside, f)
    }, ["Corrupted"]],
    ["a directory in its place", (f) => {
      Fs.rmSync(f)
      Fs.mkdirSync(f)
    }, ["Io", "AccessDenied"]]
  ]
  for (const [name, mutate, expected] of cases) {
    it.live(`${name}: ${expected.join(" or ")}, and the other sessions are intact`, () =>
      withVictim(name, mutate, expected))
  }

  it.live("a symlinked record is set aside as a link: the file it pointed to is untouched", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-hostile-")
      const outside = NodePath.join(home, "outside.txt")
      Fs.writeFileSync(outside, "not yours")
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const { dir } = yield* storageOf
        yield* store.put(sampleRecord(1))
        Fs.rmSync(recordFile(dir, "provider-1"))
        Fs.symlinkSync(outside, recordFile(dir, "provider-1"))
        const e = failureOf(yield* Effect.exit(store.get("provider-1")))
        assert.strictEqual(e.reason._tag, "Corrupted")
        assert.strictEqual(Fs.readFileSync(outside, "utf8"), "not yours")
        count("records")
      }).pipe(Effect.provide(envStore(home, newKey().bytes)))
    }).pipe(Effect.scoped))

  it.live("a record copied into another principal's (user's) directory does not open there; the original still does", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-hostile-")
      const key = newKey().bytes
      const principal = (p: string) => {
        const env = environment({ home, source: "env", envKey: key })
        const user = Layer.effect(UserContext.UserContext, UserContext.make({
          principal: p,
          identity: { username: "tester", uid: process.getuid!(), home, hostname: "testhost" }
        })).pipe(Layer.provide(env))
        return storeLayer(Layer.merge(env, user) as ReturnType<typeof environment>)
      }
      const alice = yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        yield* store.put(sampleRecord(1))
        return (yield* storageOf).dir
      }).pipe(Effect.provide(principal("alice")))
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const { dir } = yield* storageOf
        assert.notStrictEqual(dir, alice)
        Fs.copyFileSync(recordFile(alice, "provider-1"), recordFile(dir, "provider-1"))
        const e = failureOf(yield* Effect.exit(store.get("provider-1")))
        assert.strictEqual(e.reason._tag, "Corrupted")
        count("records")
      }).pipe(Effect.provide(principal("bob")))
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        assert.strictEqual(at(yield* store.get("provider-1")), "AT-secret-1-x")
      }).pipe(Effect.provide(principal("alice")))
    }).pipe(Effect.scoped))
})

describe("an index that disagrees with the records", () => {
  it.live("entries copied, forged, pointing elsewhere or lying about state: list and get follow the records", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-hostile-")
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const { dir } = yield* storageOf
        for (const n of [1, 2, 3, 4]) yield* store.put(sampleRecord(n))
        const indexFile = (id: string) => NodePath.join(dir, "index", MetadataIndex.fileKeyOf(id) + ".json")
        // 1. provider-1's entry replaced by a copy of provider-2's.
        Fs.copyFileSync(indexFile("provider-2"), indexFile("provider-1"))
        // 2. provider-3's entry claims it is needs_reauth, without refresh token, under another provider.
        const e3 = JSON.parse(Fs.readFileSync(indexFile("provider-3"), "utf8"))
        Fs.writeFileSync(indexFile("provider-3"), JSON.stringify({ ...e3, state: "needs_reauth", hasRefreshToken: false, provider: "evil" }))
        // 3. an entry whose id is a path, in a file named after nothing.
        Fs.writeFileSync(NodePath.join(dir, "index", "0123456789abcdef0123456789abcdef.json"), JSON.stringify({ ...e3, id: "../../../etc/passwd" }))
        // 4. an entry for a session that has no record, claiming to be active.
        Fs.writeFileSync(indexFile("ghost"), JSON.stringify({ ...e3, id: "ghost" }))
        // 5. provider-4's entry is not JSON.
        Fs.writeFileSync(indexFile("provider-4"), "{{{{")
        // 6. provider-2's entry claims a later generation than its record (as a concurrent put would).
        const e2 = JSON.parse(Fs.readFileSync(indexFile("provider-2"), "utf8"))
        Fs.writeFileSync(indexFile("provider-2"), JSON.stringify({ ...e2, generation: 99 }))
        const listed = yield* store.list
        assert.deepStrictEqual(
          listed.map((m) => [m.id, m.provider, m.state, m.hasRefreshToken, m.generation]).sort(),
          [1, 2, 3, 4].map((n) => [`provider-${n}`, `provider-${n}`, "active", true, 0]).sort()
        )
        for (const n of [1, 2, 3, 4]) assert.strictEqual(at(yield* store.get(`provider-${n}`)), sampleRecord(n).accessToken && Redacted.value(sampleRecord(n).accessToken!))
        // The forged files that name no record are gone.
        const again = yield* store.list
        assert.deepStrictEqual(again.map((m) => m.id).sort(), listed.map((m) => m.id).sort())
        const entries = Fs.readdirSync(NodePath.join(dir, "index")).filter((n) => n.endsWith(".json")).sort()
        assert.deepStrictEqual(entries, [1, 2, 3, 4].map((n) => MetadataIndex.fileKeyOf(`provider-${n}`) + ".json").sort())
        // list never reads the entry of a record that opens (the record is the truth, and reading every
        // entry doubled the cost of a listing), so the forged entries of healthy records stay until the
        // next put of their session rewrites them; meanwhile nothing reads them.
        for (const n of [1, 2, 3, 4]) yield* store.put(sampleRecord(n))
        for (const n of [1, 2, 3, 4]) {
          const entry = JSON.parse(Fs.readFileSync(indexFile(`provider-${n}`), "utf8"))
          assert.strictEqual(entry.id, `provider-${n}`)
          assert.strictEqual(entry.state, "active")
          assert.strictEqual(entry.generation, 0)
        }
        for (let i = 0; i < 6; i++) count("index")
      }).pipe(Effect.provide(envStore(home, newKey().bytes)))
    }).pipe(Effect.scoped))
})

describe("names: path traversal and odd characters", () => {
  const ids = [
    "../../../../tmp/escape",
    "a/b/c",
    "..",
    ".",
    "",
    "con",
    "nul\u0000byte",
    "new\nline",
    "sp ace\ttab",
    "ünïcødé-🔑",
    "\\..\\windows",
    "x".repeat(10_000)
  ]
  it.live(`${ids.length} hostile session ids stay inside the storage directory and round-trip`, () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-hostile-")
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const { dir } = yield* storageOf
        const before = new Set(walk(home).map((e) => e.path))
        for (const [n, id] of ids.entries()) yield* store.put(sampleRecord(n + 1, { id, provider: "p" }))
        for (const [n, id] of ids.entries()) {
          const back = yield* store.get(id)
          assert.strictEqual(back.id, id)
          assert.strictEqual(at(back), at(sampleRecord(n + 1)))
          count("names")
        }
        assert.strictEqual((yield* store.list).length, ids.length)
        for (const e of walk(home)) {
          if (before.has(e.path)) continue
          assert.isTrue(e.path.startsWith(dir + NodePath.sep), `${e.path} is outside ${dir}`)
          assert.match(NodePath.basename(e.path), /^([0-9a-f]{32}\.(session|json)|index)$/)
        }
        for (const id of ids) yield* store.remove(id)
        assert.deepStrictEqual(yield* store.list, [])
      }).pipe(Effect.provide(envStore(home, newKey().bytes)))
    }).pipe(Effect.scoped))

  it.live("principals: a path stays inside the session directory; control characters and overlong ones are refused", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-hostile-")
      const env = environment({ home, source: "env", envKey: newKey().bytes })
      const make = (principal: string) =>
        UserContext.make({ principal, identity: { username: "tester", uid: process.getuid!(), home, hostname: "testhost" } }).pipe(
          Effect.provide(env)
        )
      for (const p of ["../../../../tmp/escape", "/etc", "a/../../b", "~root", "$(rm -rf ~)", "x y"]) {
        const user = yield* make(p)
        assert.strictEqual(NodePath.dirname(user.storageDirectory), sessionDirectoryOf(home))
        assert.match(NodePath.basename(user.storageDirectory), /^ns-[0-9a-f]{16}$/)
        count("names")
      }
      for (const p of ["", "new\nline", "nul\u0000", "tab\tx", " leading-space", "x".repeat(300), "ünï"]) {
        const e = failureOf(yield* Effect.exit(make(p)))
        assert.strictEqual(e.reason._tag, "InvalidPrincipal")
        count("names")
      }
    }).pipe(Effect.scoped))

  it.live("provider names: traversal and odd characters are refused by the configuration, and by the CLI", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-hostile-")
      for (const name of ["../x", "a/b", ".hidden", "x y", "-dash", "ünï", "x".repeat(65), "\"a\\u0000b\""]) {
        const configPath = NodePath.join(home, "config.yaml")
        Fs.writeFileSync(configPath, `auth:\n  oauth:\n    providers:\n      ${JSON.stringify(name)}:\n        issuer: "https://auth.example"\n        client_id: "c"\n`)
        const r = yield* Effect.result(SessionConfig.load({ configPath, env: {}, cwd: home, home }).pipe(Effect.provide(environment({ home }))))
        assert.isTrue(r._tag === "Failure", name)
        if (r._tag === "Failure") assert.instanceOf(r.failure, SessionConfig.ConfigError)
        count("names")
      }
      const cli = yield* Effect.promise(() =>
        runCli(["token", "../../../etc/passwd"], { env: { HOME: home, MAGICTUNNEL_CONFIG_PATH: NodePath.join(home, "none.yaml") } })
      )
      assert.notStrictEqual(cli.code, 0)
      assert.strictEqual(cli.stdout, "")
      assert.isFalse(Fs.existsSync(NodePath.join(home, "..", "..", "etc", "passwd.session")))
      count("names")
    }).pipe(Effect.scoped))
})

/** A hostile authorization server: every path is one misbehaviour; `sink` records what reaches the redirect target. */
const hostileServer = Effect.acquireRelease(
  Effect.promise(async () => {
    const sinkBodies: Array<string> = []
    const sink = Http.createServer((req, res) => {
      let body = ""
      req.on("data", (d) => (body += d))
      req.on("end", () => {
        sinkBodies.push(`${req.method} ${req.url} ${body}`)
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ access_token: "stolen", token_type: "Bearer", expires_in: 3600 }))
      })
    })
    await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()))
    const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/token`
    const json = (res: Http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers })
      res.end(body)
    }
    const server = Http.createServer((req, res) => {
      req.resume()
      const mode = (req.url ?? "").split("/")[1] ?? ""
      switch (mode) {
        case "redirect307": return void (res.writeHead(307, { location: sinkUrl }), res.end())
        case "redirect308": return void (res.writeHead(308, { location: sinkUrl }), res.end())
        case "redirect302": return void (res.writeHead(302, { location: sinkUrl }), res.end())
        case "hang": return
        case "html": return void (res.writeHead(200, { "content-type": "text/html" }), res.end("<html>hello</html>"))
        case "array": return json(res, 200, "[1,2,3]")
        case "null": return json(res, 200, "null")
        case "empty": return json(res, 200, "")
        case "numeric-token": return json(res, 200, JSON.stringify({ access_token: 5, token_type: "Bearer" }))
        case "missing-token": return json(res, 200, JSON.stringify({ token_type: "Bearer", expires_in: 60 }))
        case "missing-type": return json(res, 200, JSON.stringify({ access_token: "a", expires_in: 60 }))
        case "negative-expiry": return json(res, 200, JSON.stringify({ access_token: "a", token_type: "Bearer", expires_in: -60 }))
        case "string-expiry": return json(res, 200, JSON.stringify({ access_token: "a", token_type: "Bearer", expires_in: "soon" }))
        case "huge-expiry": return json(res, 200, JSON.stringify({ access_token: "a", token_type: "Bearer", expires_in: 1e300 }))
        case "object-refresh": return json(res, 200, JSON.stringify({ access_token: "a", token_type: "Bearer", refresh_token: { x: 1 } }))
        case "huge": return json(res, 200, JSON.stringify({ access_token: "a".repeat(2 * 1024 * 1024), token_type: "Bearer" }))
        case "huge-chunked": {
          res.writeHead(200, { "content-type": "application/json" })
          const chunk = "x".repeat(64 * 1024)
          for (let i = 0; i < 40; i++) res.write(chunk)
          return void res.end()
        }
        case "gzip-garbage": return json(res, 200, Crypto.randomBytes(64).toString("binary"), { "content-encoding": "gzip" })
        case "error-500-echo": return json(res, 500, JSON.stringify({ error: "server_error", error_description: "echo" }))
        case "unknown-error": return json(res, 400, JSON.stringify({ error: "no_such_error", error_description: "\u0000\u001b[31m" }))
        default: return json(res, 404, "{}")
      }
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      sinkBodies,
      close: () => {
        server.closeAllConnections()
        sink.closeAllConnections()
        server.close()
        sink.close()
      }
    }
  }),
  (s) => Effect.sync(() => s.close())
)

describe("authorization servers that misbehave", () => {
  const modes = [
    "redirect307", "redirect308", "redirect302", "hang", "html", "array", "null", "empty", "numeric-token",
    "missing-token", "missing-type", "negative-expiry", "string-expiry", "huge-expiry", "object-refresh", "huge",
    "huge-chunked", "gzip-garbage", "error-500-echo", "unknown-error", "not-found"
  ]
  it.live(`${modes.length} misbehaviours at the token endpoint: a typed failure, the refresh token kept, nothing sent elsewhere`, () =>
    Effect.gen(function*() {
      const server = yield* hostileServer
      const providers = new Map(modes.map((m) => [m, {
        ...providerSettings,
        name: m,
        issuer: Option.none(),
        tokenEndpoint: Option.some(`${server.url}/${m}/token`)
      }]))
      const config = SessionConfig.layerWith((s) => ({
        ...s,
        tokenRefresh: { ...s.tokenRefresh, maxRetryAttempts: 0, refreshTimeoutSeconds: 1 }
      }), { providers })
      const layer = Sessions.layer.pipe(Layer.provideMerge(Layer.mergeAll(
        TokenStore.layerMemory,
        RefreshLock.layerMemory,
        OAuthClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici)),
        config,
        userLayer
      )))
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const sessions = yield* Sessions.Sessions
        const now = yield* DateTime.now
        for (const m of modes) {
          const secret = `rt-${m}-SECRETVALUE`
          yield* store.put(yield* TokenStore.newRecord({
            id: m,
            provider: m,
            tokenEndpoint: `${server.url}/${m}/token`,
            clientId: providerSettings.clientId,
            scopes: [],
            tokenType: "Bearer",
            accessToken: Redacted.make(`at-${m}`),
            refreshToken: Redacted.make(secret),
            expiresAt: DateTime.subtract(now, { seconds: 10 })
          }))
          const outcome = yield* Effect.exit(sessions.refresh(m, { force: true }))
          const described = Exit.isSuccess(outcome) ? JSON.stringify(outcome.value) : failureOf(outcome).message
          if (Exit.isSuccess(outcome)) assert.strictEqual(outcome.value._tag, "Failed", `${m}: ${described}`)
          else assert.strictEqual(failureOf(outcome)._tag, "SessionsError", m)
          assert.notInclude(described, secret, m)
          const record = yield* store.get(m)
          assert.strictEqual(record.refreshToken && Redacted.value(record.refreshToken), secret, `${m}: refresh token kept`)
          assert.strictEqual(at(record), `at-${m}`)
          assert.strictEqual(record.state, "active", m)
          assert.notInclude(record.lastError ?? "", secret)
          count("servers")
        }
        assert.deepStrictEqual(server.sinkBodies, [], "a redirect never carries the refresh token elsewhere")
      }).pipe(Effect.provide(layer))
      console.info(`[hardening] hostile inputs: ${[...tried].map(([k, v]) => `${k} ${v}`).join(", ")}`)
    }).pipe(Effect.scoped), 60_000)
})
