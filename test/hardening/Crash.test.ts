/**
 * Crash safety, proven by killing writers: worker processes
 * (test/support/hardening/crash-worker.ts) are SIGKILLed at random moments,
 * hundreds of times, while they put records (each put a simulated rotation:
 * new secrets, generation + 1), rotate the data key, and refresh a grant
 * with rotation against a real authorization server. After every kill a new
 * "process" (a fresh store over the same directory) checks that every record
 * opens and is the old or the new version, that the index names every
 * session, whole and never ahead of its record, and the next writer gets through at once (no temp file or lock
 * left behind blocks it).
 *
 * And while sessions are migrated between stores (Migration.migrate, back and
 * forth between the encrypted file store and Redis, a real redis-server):
 * every session stays in one of them or both (then the same record), never
 * neither.
 *
 * Scale with HARDENING_KILL_SCALE (default 1: 235 kills in all).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Redacted } from "effect"
import * as Envelope from "../../src/internal/Envelope.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import { UserContext } from "../../src/UserContext.js"
import { tempDir } from "../support/FileStoreFixtures.js"
import { envStore, fileStore, indexListing, redisStore, tempFiles } from "../support/hardening/Stores.js"
import * as Workers from "../support/hardening/Workers.js"
import * as OidcServer from "../support/OidcServer.js"
import * as RedisServer from "../support/RedisServer.js"
import { fileConfig, newKey, stack, writeConfigFile } from "../support/SessionsStack.js"
import { sampleRecord } from "../support/TokenStoreConformance.js"
import { loginApproved } from "../support/Login.js"

const scale = Number(process.env["HARDENING_KILL_SCALE"] ?? "1")
const putKills = Math.round(100 * scale)
const rotateKills = Math.round(70 * scale)
const refreshKills = Math.round(25 * scale)
const migrateKills = Math.round(40 * scale)

let bundle: string
beforeAll(async () => {
  bundle = await Workers.bundle("crash-worker")
})
afterAll(() => Fs.rmSync(NodePath.dirname(bundle), { recursive: true, force: true }))

const randomDelay = (maxMs: number) => Effect.sleep(Math.floor(Math.random() * maxMs))

/** What the killed writers printed: per session, the last generation written and the last one attempted. */
const track = () => {
  const done = new Map<string, number>()
  const attempted = new Map<string, number>()
  return {
    done,
    attempted,
    read: (lines: ReadonlyArray<string>) => {
      for (const line of lines) {
        const [tag, id, ...rest] = line.split(" ")
        if (id === undefined) continue
        const gen = Number(rest[rest.length - 1])
        if (tag === "W") attempted.set(id, gen)
        if (tag === "D" && gen >= 0) done.set(id, gen)
      }
    },
    allowed: (id: string) => new Set([done.get(id) ?? 0, attempted.get(id) ?? done.get(id) ?? 0]),
    settle: (id: string, gen: number) => {
      done.set(id, gen)
      attempted.set(id, gen)
    }
  }
}

/** The checks a new process makes after a kill: every record opens, is one of `allowed`, and the index agrees. */
const verifyStore = (ids: ReadonlyArray<string>, allowed: (id: string) => ReadonlySet<number>, secretOf: (id: string, gen: number) => string) =>
  Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const listed = yield* store.list
    assert.deepStrictEqual(listed.map((m) => m.id).sort(), [...ids].sort())
    assert.deepStrictEqual([...new Set(listed.map((m) => m.state))], ["active"])
    const generations = new Map<string, number>()
    for (const id of ids) {
      const record = yield* store.get(id)
      assert.isTrue(allowed(id).has(record.generation), `${id}: generation ${record.generation}, expected one of ${[...allowed(id)]}`)
      assert.strictEqual(Redacted.value(record.accessToken!), secretOf(id, record.generation))
      generations.set(id, record.generation)
    }
    // The index entry is written after its record, atomically but without fsync, and `list` does not
    // rewrite the entry of a record that opens (the record is the truth): a kill between the two writes
    // leaves the entry a put behind. It is never torn, never missing, and never ahead of its record.
    const index = yield* indexListing
    assert.deepStrictEqual(index.damaged, [])
    assert.deepStrictEqual(index.entries.map((e) => [e.id, e.state]).sort(), ids.map((id) => [id, "active"]).sort())
    for (const e of index.entries) {
      assert.isAtMost(e.generation, generations.get(e.id)!, `${e.id}: the index is never ahead of its record`)
    }
    return generations
  })

/** One store's view after a kill: what it lists, every listed record opens (and, for the file store, its index agrees). */
const storeView = (store: TokenStore.Shape, checkIndex?: Effect.Effect<ReadonlyArray<readonly [string, number]>, unknown>) =>
  Effect.gen(function*() {
    const listed = yield* store.list
    assert.notInclude(listed.map((m) => m.state), "corrupted")
    const generations = new Map<string, number>()
    for (const m of listed) {
      const record = yield* store.get(m.id)
      assert.strictEqual(Redacted.value(record.accessToken!), `at-${m.id}`)
      generations.set(m.id, record.generation)
    }
    if (checkIndex !== undefined) assert.deepStrictEqual([...(yield* checkIndex)].sort(), [...generations].sort())
    return generations
  })

/**
 * One lane of put kills in its own home; two lanes run at once (each kill mostly waits on a process
 * start). With `busy`, each writer is killed only once its store's worker thread runs, so the kills
 * land in the worker's replaces; without, mostly before it starts (the `FileSystem` path).
 */
const putLane = (kills: number, busy: boolean) =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-crash-put-")
      const key = newKey()
      const ids = ["s0", "s1", "s2"]
      const secretOf = (id: string, gen: number) => `at-${id}-${gen}`
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        for (const [n, id] of ids.entries()) {
          yield* store.put(sampleRecord(n + 1, { id, accessToken: Redacted.make(secretOf(id, 0)) }))
        }
      }).pipe(Effect.provide(envStore(home, key.bytes)))

      const t = track()
      let midWrite = 0, newVersion = 0
      for (let k = 0; k < kills; k++) {
        const w = Workers.start(bundle, ["put", home, String(ids.length), key.base64])
        // The next writer gets through promptly: nothing a killed one left blocks it.
        yield* Workers.waitForLine(w, (l) => l.startsWith("D "), "a first completed put", 15_000)
        if (busy) yield* Workers.waitForLine(w, (l) => l === "busy", "the store's worker thread", 15_000)
        yield* randomDelay(25)
        yield* Workers.kill(w)
        t.read(w.lines())
        if (ids.some((id) => t.attempted.get(id) !== t.done.get(id))) midWrite++
        const generations = yield* verifyStore(ids, t.allowed, secretOf).pipe(Effect.provide(envStore(home, key.bytes)))
        for (const [id, gen] of generations) {
          if (gen !== t.done.get(id)) newVersion++
          t.settle(id, gen)
        }
      }
      // Leftover temp files never pass for records, and are swept once old enough.
      const storage = NodePath.join(home, ".magictunnel", "sessions")
      const leftovers = tempFiles(storage)
      const old = new Date(Date.now() - 5 * 60_000)
      for (const f of leftovers) Fs.utimesSync(f.path, old, old)
      yield* verifyStore(ids, t.allowed, secretOf).pipe(Effect.provide(envStore(home, key.bytes)))
      assert.deepStrictEqual(tempFiles(storage), [])
      return { kills, midWrite, newVersion, swept: leftovers.length }
    }).pipe(Effect.scoped)

/** One lane of key rotation kills in its own home. */
const rotateLane = (kills: number) =>
    Effect.gen(function*() {
      const home = yield* tempDir("mts-crash-rotate-")
      const ids = ["r0", "r1", "r2", "r3", "r4"]
      const secretOf = (id: string) => `at-${id}`
      yield* Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        for (const [n, id] of ids.entries()) yield* store.put(sampleRecord(n + 1, { id, accessToken: Redacted.make(secretOf(id)) }))
      }).pipe(Effect.provide(fileStore(home)))
      const keyFile = NodePath.join(home, ".magictunnel", "encryption.key")
      const storage = NodePath.join(home, ".magictunnel", "sessions")
      const keyIds = () =>
        Fs.readdirSync(storage).filter((d) => d.startsWith("ns-")).flatMap((d) =>
          Fs.readdirSync(NodePath.join(storage, d)).filter((n) => n.endsWith(".session")).map((n) =>
            Envelope.keyIdOfSealed(Fs.readFileSync(NodePath.join(storage, d, n)))
          )
        )
      let mixed = 0
      for (let k = 0; k < kills; k++) {
        const w = Workers.start(bundle, ["rotate", home])
        yield* Workers.waitForLine(w, (l) => l === "ready", "ready", 15_000)
        yield* randomDelay(80)
        yield* Workers.kill(w)
        if (new Set(keyIds()).size > 1) mixed++
        yield* verifyStore(ids, () => new Set([0]), (id) => secretOf(id)).pipe(Effect.provide(fileStore(home)))
        assert.strictEqual(Fs.statSync(keyFile).mode & 0o777, 0o600)
      }
      // The next rotation completes, and afterwards the keyset is back to the current key and the one it replaced.
      const w = Workers.start(bundle, ["rotate", home])
      yield* Workers.waitForLine(w, (l) => l === "R 1", "a completed rotation", 15_000)
      yield* Workers.kill(w)
      const keys = (JSON.parse(Fs.readFileSync(keyFile, "utf8")) as { keys: Array<unknown> }).keys.length
      assert.isAtMost(keys, 3)
      yield* verifyStore(ids, () => new Set([0]), (id) => secretOf(id)).pipe(Effect.provide(fileStore(home)))
      // A killed rotation may leave a temp copy of the keyset beside the key file; once old, the next open removes it.
      const keyTemps = tempFiles(NodePath.dirname(keyFile)).filter((f) => NodePath.dirname(f.path) === NodePath.dirname(keyFile))
      for (const f of keyTemps) {
        assert.strictEqual(f.mode, 0o600)
        const old = new Date(Date.now() - 5 * 60_000)
        Fs.utimesSync(f.path, old, old)
      }
      // Planted too, so the sweep is proven whatever the kills left: only the key file's own temp copies go.
      const planted = NodePath.join(NodePath.dirname(keyFile), ".encryption.key.tmp-0123456789ab")
      const unrelated = NodePath.join(NodePath.dirname(keyFile), ".someone-else.tmp-0123456789ab")
      for (const f of [planted, unrelated]) {
        Fs.writeFileSync(f, "{}", { mode: 0o600 })
        const old = new Date(Date.now() - 5 * 60_000)
        Fs.utimesSync(f, old, old)
      }
      yield* verifyStore(ids, () => new Set([0]), (id) => secretOf(id)).pipe(Effect.provide(fileStore(home)))
      assert.deepStrictEqual(
        Fs.readdirSync(NodePath.dirname(keyFile)).filter((n) => n.includes(".tmp-")),
        [NodePath.basename(unrelated)],
        "no copy of the keyset is left behind; other programs' temp files are not ours to remove"
      )
      return { mixed, swept: keyTemps.length }
    }).pipe(Effect.scoped)

describe("crash safety: writers killed with SIGKILL", () => {
  it.live(`${putKills} kills during puts (simulated rotations: generation + 1), half once the store's worker thread runs: every record old or new, index whole and never ahead`, () =>
    Effect.gen(function*() {
      const lanes = yield* Effect.all([putLane(Math.ceil(putKills / 2), false), putLane(Math.floor(putKills / 2), true)], {
        concurrency: 2
      })
      const sum = (k: "midWrite" | "newVersion" | "swept") => lanes.reduce((n, l) => n + l[k], 0)
      console.info(
        `[hardening] put: ${putKills} kills survived (${lanes[1]!.kills} once the store's worker thread ran; ${
          sum("midWrite")
        } between "about to write" and "written", ${sum("newVersion")} of those found the new version), ${
          sum("swept")
        } temp files swept, 0 records lost`
      )
    }), 240_000)

  it.live(`${rotateKills} kills during key rotation: every record opens with the key file, nothing else of the key left behind`, () =>
    Effect.gen(function*() {
      const lanes = yield* Effect.all([rotateLane(Math.ceil(rotateKills / 2)), rotateLane(Math.floor(rotateKills / 2))], {
        concurrency: 2
      })
      console.info(
        `[hardening] key rotation: ${rotateKills} kills survived (${
          lanes.reduce((n, l) => n + l.mixed, 0)
        } left records under two keys), ${lanes.reduce((n, l) => n + l.swept, 0)} keyset temp copies swept, 0 records lost`
      )
    }), 240_000)

  it.live(`${refreshKills} kills during refreshes with rotation on a real server: record old or new, grant lost only in the server-to-disk window`, () =>
    Effect.gen(function*() {
      const server = yield* OidcServer.acquire({ accessTokenTtl: 300 })
      const dir = yield* tempDir("mts-crash-refresh-")
      const key = newKey()
      const configPath = writeConfigFile(dir, {
        sessionDirectory: NodePath.join(dir, "sessions"),
        provider: "test",
        issuer: server.issuer,
        clientId: server.clientId,
        scopes: server.provider.scopes
      })
      const env = { MAGICTUNNEL_CONFIG_PATH: configPath, MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key.base64 }
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        const store = yield* TokenStore.TokenStore
        const login = Effect.gen(function*() {
          yield* loginApproved(sessions, "test", server.approve)
          return (yield* store.get("test")).generation
        })
        let generation = yield* login
        let lost = 0, refreshed = 0
        const before = server.counters()
        for (let k = 0; k < refreshKills; k++) {
          const w = Workers.start(bundle, ["refresh", "test", "test"], env)
          const first = yield* Workers.waitForLine(w, (l) => l.startsWith("D ") || l.startsWith("crash-worker failed"), "a first refresh", 20_000)
            .pipe(Effect.catchTag("WorkerError", (e) => Effect.succeed(`failed ${e.message}`)))
          if (!first.startsWith("D test Refreshed")) {
            // The previous kill fell between the server's rotation and the store write: the grant is dead,
            // and the session says so (needs_reauth), readable and typed. Log in again.
            yield* Workers.kill(w)
            const record = yield* store.get("test")
            assert.strictEqual(record.state, "needs_reauth", `${first}\n${w.output()}`)
            lost++
            generation = yield* login
            continue
          }
          yield* randomDelay(30)
          yield* Workers.kill(w)
          const t = track()
          t.done.set("test", generation)
          t.read(w.lines())
          const record = yield* store.get("test")
          assert.isTrue(t.allowed("test").has(record.generation), `generation ${record.generation}, allowed ${[...t.allowed("test")]}`)
          assert.isDefined(record.refreshToken)
          const index = yield* indexListing
          yield* store.list
          // Written after the record and not rewritten by list while the record opens: never ahead of it.
          const entry = (yield* indexListing).entries.find((e) => e.id === "test")
          assert.isDefined(entry, `index ${JSON.stringify(index.entries.map((e) => e.generation))}`)
          assert.isAtMost(entry!.generation, record.generation, `index ${JSON.stringify(index.entries.map((e) => e.generation))}`)
          refreshed += record.generation - generation
          generation = record.generation
        }
        const after = server.counters()
        // Reuse is detected only where a kill lost a rotated token: never from two processes refreshing at once.
        assert.strictEqual(after.refreshReuseDetected - before.refreshReuseDetected, lost)
        console.info(
          `[hardening] refresh: ${refreshKills} kills survived, ${refreshed} refreshes persisted, ${lost} grants lost in the window between the server's rotation and the store write (session marked needs_reauth, record readable)`
        )
      }).pipe(Effect.provide(stack(fileConfig(configPath, key.base64))))
    }).pipe(Effect.scoped), 240_000)

  it.live(`${migrateKills} kills during migrations between the file store and Redis: every session in one of them or both, never neither`, () =>
    Effect.gen(function*() {
      const redisServer = yield* RedisServer.acquire({ appendonly: true })
      const home = yield* tempDir("mts-crash-migrate-")
      const key = newKey()
      const ids = ["m0", "m1", "m2", "m3", "m4", "m5"]
      const fileLayer = envStore(home, key.bytes)
      const { file, namespace } = yield* Effect.provide(
        Effect.all({ file: Effect.service(TokenStore.TokenStore), namespace: Effect.map(Effect.service(UserContext), (u) => u.namespace) }),
        fileLayer
      )
      for (const [n, id] of ids.entries()) {
        yield* file.put(sampleRecord(n + 1, { id, accessToken: Redacted.make(`at-${id}`), generation: n }))
      }
      const fileIndex = Effect.map(Effect.provide(indexListing, fileLayer), (l) => {
        assert.deepStrictEqual(l.damaged, [])
        return l.entries.map((e) => [e.id, e.generation] as const)
      })
      let inBoth = 0
      for (let k = 0; k < migrateKills; k++) {
        const w = Workers.start(bundle, ["migrate", home, redisServer.url, key.base64])
        yield* Workers.waitForLine(w, (l) => l === "ready", "ready", 15_000)
        yield* randomDelay(40)
        yield* Workers.kill(w)
        const { a, b } = yield* Effect.scoped(Effect.gen(function*() {
          const redis = yield* redisStore(redisServer.url, key.bytes, namespace)
          return { a: yield* storeView(file, fileIndex), b: yield* storeView(redis) }
        }))
        for (const [n, id] of ids.entries()) {
          assert.isTrue(a.has(id) || b.has(id), `${id} is in neither store after kill ${k}`)
          for (const g of [a.get(id), b.get(id)]) if (g !== undefined) assert.strictEqual(g, n)
          if (a.has(id) && b.has(id)) inBoth++
        }
        assert.deepStrictEqual([...new Set([...a.keys(), ...b.keys()])].sort(), ids)
      }
      // Running the migration again finishes the job.
      const w = Workers.start(bundle, ["migrate", home, redisServer.url, key.base64])
      yield* Workers.waitForLine(w, (l) => l === "M 1 file", "a complete migration", 15_000)
      yield* Workers.kill(w)
      const a = yield* storeView(file, fileIndex)
      assert.strictEqual(a.size, 0, "all moved to Redis")
      console.info(
        `[hardening] migration: ${migrateKills} kills survived (${inBoth} times a session was found in both stores), 0 sessions lost`
      )
    }).pipe(Effect.scoped), 240_000)
})
