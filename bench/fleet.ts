/**
 * Fleet bench: refresh throughput and `getAccessToken` latency with 1, 2 and 4
 * instances sharing one Redis, beside the single-instance encrypted file store.
 *
 * Each instance is a separate Sessions stack with its own Redis connection,
 * in this process (separate processes would add nothing the lock sees: every
 * instance already contends through Redis). One real grant on a real
 * authorization server (oidc-provider, refresh token rotation on) is refreshed
 * with `refresh(id, { force: true })` from every instance at once: each
 * refresh takes the grant's lock, re-reads, refreshes, writes under the fence.
 * Then each instance reads its cached token many times.
 *
 *   npx tsx bench/fleet.ts [--refreshes 200] [--reads 100000]
 *
 * Prints figures; asserts nothing about time.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePathModule from "node:path"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import * as StoreFromConfig from "../layers/StoreFromConfig.js"
import * as OAuthClient from "../src/OAuthClient.js"
import * as SessionConfig from "../src/SessionConfig.js"
import * as Sessions from "../src/Sessions.js"
import * as UserContext from "../src/UserContext.js"
import * as OidcServer from "../test/support/OidcServer.js"
import * as RedisServer from "../test/support/RedisServer.js"
import { median, now } from "./Measure.js"
import { loginApproved } from "../test/support/Login.js"

const argOf = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const refreshes = argOf("refreshes", 200)
const reads = argOf("reads", 100_000)

const instanceLayer = (backend: "redis" | "filesystem", options: {
  readonly dir: string
  readonly redisUrl: string
  readonly key: Uint8Array
  readonly provider: SessionConfig.ProviderSettings
}) => {
  const config = SessionConfig.layerWith((s) => ({
    ...s,
    userContext: { ...s.userContext, sessionDirectory: NodePathModule.join(options.dir, "sessions") },
    tokenStorage: { ...s.tokenStorage, storageBackend: backend, encryptionKeySource: "env" },
    tokenRefresh: { ...s.tokenRefresh, backgroundRefreshEnabled: false },
    redis: { ...s.redis, url: options.redisUrl, keyPrefix: "bench:" }
  }), {
    encryptionKey: Option.some(Redacted.make(options.key)),
    providers: new Map([[options.provider.name, options.provider]])
  })
  const base = Layer.mergeAll(config, NodeFileSystem.layer, NodePath.layer)
  const withUser = Layer.merge(base, UserContext.layer.pipe(Layer.provide(base)))
  const storage = StoreFromConfig.layer.pipe(Layer.provideMerge(withUser))
  const lock = StoreFromConfig.lock.pipe(Layer.provide(storage))
  const oauth = OAuthClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
  // Fresh: each instance gets its own connection, as a separate process would.
  return Layer.fresh(Sessions.layer.pipe(Layer.provideMerge(Layer.mergeAll(storage, lock, oauth))))
}

const program = Effect.gen(function*() {
  const server = yield* Effect.acquireRelease(Effect.promise(() => OidcServer.start({ accessTokenTtl: 3600 })), (s) =>
    Effect.promise(() => s.close()))
  const redis = yield* Effect.acquireRelease(Effect.promise(() => RedisServer.start({ appendonly: true })), (r) =>
    Effect.promise(() => r.stop()))
  const rows: Array<Array<string>> = []

  for (const [backend, count] of [["filesystem", 1], ["redis", 1], ["redis", 2], ["redis", 4]] as const) {
    const dir = Fs.mkdtempSync(NodePathModule.join(Os.tmpdir(), "mts-bench-fleet-"))
    const options = { dir, redisUrl: redis.url, key: new Uint8Array(Crypto.randomBytes(32)), provider: { ...server.provider, name: "bench" } }
    yield* Effect.scoped(Effect.gen(function*() {
      const instances = yield* Effect.forEach(Array.from({ length: count }), () =>
        Effect.map(Layer.build(instanceLayer(backend, options)), (ctx) => Context.get(ctx, Sessions.Sessions)))
      const first = instances[0]!
      yield* loginApproved(first, "bench", server.approve)

      const before = server.counters().refreshSucceeded
      const start = now()
      yield* Effect.forEach(
        Array.from({ length: refreshes }, (_, i) => instances[i % count]!),
        (s) => s.refresh("bench", { force: true }),
        { concurrency: count * 4, discard: true }
      )
      const seconds = (now() - start) / 1000
      const sent = server.counters().refreshSucceeded - before

      const latencies: Array<number> = []
      for (const s of instances) {
        yield* s.getAccessToken("bench")
        const t0 = now()
        for (let i = 0; i < reads; i++) yield* s.getAccessToken("bench")
        latencies.push(((now() - t0) * 1000) / reads)
      }
      rows.push([
        `${backend} x${count}`,
        `${(sent / seconds).toFixed(0)} refresh/s (${sent} of ${refreshes} sent)`,
        `${median(latencies).toFixed(2)} us`
      ])
    }))
    Fs.rmSync(dir, { recursive: true, force: true })
  }

  process.stdout.write(`fleet bench on ${Os.cpus().length} cores, ${refreshes} forced refreshes, ${reads} cached reads per instance\n`)
  process.stdout.write(`${"store".padEnd(16)}${"refresh throughput".padEnd(36)}getAccessToken (cached, median per instance)\n`)
  for (const [a, b, c] of rows) process.stdout.write(`${a!.padEnd(16)}${b!.padEnd(36)}${c}\n`)
})

Effect.runPromise(Effect.scoped(program)).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`fleet bench failed: ${String(e)}\n`)
    process.exit(1)
  }
)
