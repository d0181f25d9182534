import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Effect, Layer } from "effect"
import * as AuditLog from "../src/AuditLog.js"
import * as AuditFile from "../src/internal/AuditFile.js"
import * as TokenStore from "../src/TokenStore.js"
import { tempDir } from "./support/FileStoreFixtures.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)
const namespace = "alice@host:1000"

const open = (path: string, options: { readonly maxBytes?: number; readonly maxFiles?: number } = {}) =>
  Effect.gen(function*() {
    const write = yield* AuditFile.writer({ path, maxBytes: options.maxBytes ?? 1024 * 1024, maxFiles: options.maxFiles ?? 3 })
    return yield* AuditLog.make({ namespace, write, path })
  })

describe("AuditLog", () => {
  it.effect("writes one JSON line per event, 0600, with the fingerprint and never the session id", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-audit-")
      const path = NodePathModule.join(dir, "logs", "audit.log")
      const log = yield* open(path)
      yield* log.record({ event: "login", provider: "github", sessionId: "github~abc123", outcome: "success", backend: "filesystem", generation: 0 })
      yield* log.record({ event: "reauth_required", provider: "github", sessionId: "github~abc123", outcome: "needs_reauth", reason: "invalid_grant" })
      assert.strictEqual(Fs.statSync(path).mode & 0o777, 0o600)
      const text = Fs.readFileSync(path, "utf8")
      assert.isTrue(text.endsWith("\n"))
      assert.notInclude(text, "github~abc123")
      const { entries, skipped } = yield* AuditLog.read(path)
      assert.strictEqual(skipped, 0)
      assert.deepStrictEqual(entries.map((e) => e.event), ["login", "reauth_required"])
      assert.strictEqual(entries[0]!.session, TokenStore.fingerprint(namespace, "github~abc123"))
      assert.strictEqual(entries[0]!.namespace, namespace)
      assert.strictEqual(entries[0]!.generation, 0)
      assert.strictEqual(entries[1]!.reason, "invalid_grant")
      assert.isFalse(Number.isNaN(Date.parse(entries[0]!.time)))
      assert.deepStrictEqual((yield* log.recent).map((e) => e.event), ["login", "reauth_required"])
    }).pipe(Effect.scoped, Effect.provide(platform)))

  it.effect("a line torn by a crash is skipped on read, and the next line starts whole on its own", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-audit-")
      const path = NodePathModule.join(dir, "audit.log")
      const log = yield* open(path)
      yield* log.record({ event: "refresh", provider: "p", sessionId: "p", outcome: "refreshed" })
      // What a crash in the middle of an older writer's line leaves.
      Fs.appendFileSync(path, '{"time":"2026-01-01T00:00:00.000Z","event":"refr')
      assert.strictEqual(AuditLog.parse(Fs.readFileSync(path, "utf8")).skipped, 1)
      yield* log.record({ event: "logout", provider: "p", sessionId: "p", outcome: "removed" })
      const { entries, skipped } = yield* AuditLog.read(path)
      assert.deepStrictEqual(entries.map((e) => e.event), ["refresh", "logout"])
      assert.strictEqual(skipped, 1)
    }).pipe(Effect.scoped, Effect.provide(platform)))

  it.effect("rotates by size and keeps max_files old files; every line stays whole under concurrency", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-audit-")
      const path = NodePathModule.join(dir, "audit.log")
      const log = yield* open(path, { maxBytes: 2048, maxFiles: 2 })
      yield* Effect.forEach(
        Array.from({ length: 120 }, (_, i) => i),
        (i) => log.record({ event: "refresh", provider: "p", sessionId: `p~${i}`, outcome: "refreshed", generation: i }),
        { concurrency: 16 }
      )
      const files = Fs.readdirSync(dir).sort()
      assert.deepStrictEqual(files, ["audit.log", "audit.log.1", "audit.log.2"])
      for (const f of files) {
        const file = NodePathModule.join(dir, f)
        assert.isAtMost(Fs.statSync(file).size, 2048)
        const { entries, skipped } = AuditLog.parse(Fs.readFileSync(file, "utf8"))
        assert.strictEqual(skipped, 0, f)
        assert.isAbove(entries.length, 0)
      }
      // The newest lines are in the current file.
      const current = AuditLog.parse(Fs.readFileSync(path, "utf8")).entries
      assert.isTrue(current.some((e) => e.generation !== undefined && e.generation >= 110))
    }).pipe(Effect.scoped, Effect.provide(platform)))

  it.effect("a recovery's outcomes go in one append, in order, every line whole", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-audit-")
      const path = NodePathModule.join(dir, "audit.log")
      const log = yield* open(path)
      yield* log.record({ event: "login", provider: "p", sessionId: "p~0", outcome: "success" })
      yield* log.recordAll(Array.from({ length: 500 }, (_, i) => ({
        event: "recovery" as const,
        provider: "p",
        sessionId: `p~${i}`,
        outcome: "recovered",
        backend: "filesystem"
      })))
      const { entries, skipped } = yield* AuditLog.read(path)
      assert.strictEqual(skipped, 0)
      assert.strictEqual(entries.length, 501)
      assert.deepStrictEqual(entries.slice(1).map((e) => e.session), Array.from({ length: 500 }, (_, i) => TokenStore.fingerprint(namespace, `p~${i}`)))
      // The status page's recent events: the last ones, at most recentLimit.
      assert.strictEqual((yield* log.recent).length, AuditLog.recentLimit)
    }).pipe(Effect.scoped, Effect.provide(platform)))

  it.effect("a log moved away by another process or logrotate: lines follow the path, none lost, none torn", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("mts-audit-")
      const path = NodePathModule.join(dir, "audit.log")
      const log = yield* open(path)
      const line = (i: number) => log.record({ event: "refresh", provider: "p", sessionId: "p", outcome: "refreshed", generation: i })
      for (let i = 0; i < 10; i++) yield* line(i)
      Fs.renameSync(path, `${path}.moved`)
      for (let i = 10; i < 10 + AuditFile.reopenCheckEvery + 20; i++) yield* line(i)
      const moved = AuditLog.parse(Fs.readFileSync(`${path}.moved`, "utf8"))
      const current = AuditLog.parse(Fs.readFileSync(path, "utf8"))
      assert.strictEqual(moved.skipped + current.skipped, 0)
      const all = [...moved.entries, ...current.entries].map((e) => e.generation)
      assert.deepStrictEqual(all, Array.from({ length: 10 + AuditFile.reopenCheckEvery + 20 }, (_, i) => i))
      // The writer noticed and went back to the path: the last lines are there.
      assert.strictEqual(current.entries.at(-1)?.generation, 10 + AuditFile.reopenCheckEvery + 19)
      assert.strictEqual(Fs.statSync(path).mode & 0o777, 0o600)
    }).pipe(Effect.scoped, Effect.provide(platform)))

  it.effect("without a layer nothing is recorded and nothing fails", () =>
    Effect.gen(function*() {
      yield* AuditLog.record({ event: "login", outcome: "success" })
      assert.deepStrictEqual(yield* (yield* AuditLog.AuditLog).recent, [])
    }))
})
