/**
 * The encrypted file store as a process opens it, for the hardening tests and
 * their workers: over a test home (FileStoreFixtures.environment), with its
 * data key, and the checks made after every crash (every record opens, the
 * index is whole and never ahead of its records).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import * as EncryptionKey from "../../../src/EncryptionKey.js"
import * as Keyset from "../../../src/internal/Keyset.js"
import * as MetadataIndex from "../../../src/internal/MetadataIndex.js"
import * as RecordCodec from "../../../src/internal/RecordCodec.js"
import * as RedisClient from "../../../src/internal/RedisClient.js"
import * as EncryptedFile from "../../../src/TokenStore/EncryptedFile.js"
import * as Redis from "../../../src/TokenStore/Redis.js"
import { UserContext } from "../../../src/UserContext.js"
import { environment } from "../FileStoreFixtures.js"

/** The encrypted file store, its key, config and user context over a test environment. */
export const storeLayer = (env: ReturnType<typeof environment>) => {
  const key = EncryptionKey.layer.pipe(Layer.provide(env))
  return EncryptedFile.layer.pipe(Layer.provideMerge(Layer.merge(env, key)))
}

/** The env-key store of a test home. */
export const envStore = (home: string, key: Uint8Array) => storeLayer(environment({ home, source: "env", envKey: key }))

/** The file-key store of a test home. */
export const fileStore = (home: string) => storeLayer(environment({ home, source: "file" }))

/** What the index says, read on its own (no repair). */
export const indexListing = Effect.gen(function*() {
  const user = yield* UserContext
  return yield* MetadataIndex.make(user.storageDirectory, 0o600).pipe(
    Effect.flatMap((index) => index.list),
    Effect.provide(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer))
  )
})

/** Every path under `root`, with its type and permission bits. */
export const walk = (root: string): ReadonlyArray<{ readonly path: string; readonly dir: boolean; readonly mode: number; readonly uid: number }> => {
  const out: Array<{ path: string; dir: boolean; mode: number; uid: number }> = []
  const visit = (p: string) => {
    const st = Fs.lstatSync(p)
    out.push({ path: p, dir: st.isDirectory(), mode: st.mode & 0o777, uid: st.uid })
    if (st.isDirectory()) for (const name of Fs.readdirSync(p)) visit(NodePathModule.join(p, name))
  }
  visit(root)
  return out
}

/** Temp files of writers (`.<name>.tmp-<random>`) under `root`. */
export const tempFiles = (root: string) =>
  walk(root).filter((e) => !e.dir && NodePathModule.basename(e.path).startsWith(".") && e.path.includes(".tmp-"))

/** A data key held the way `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY` provides it (for stores built by hand). */
export const envKeyOf = (bytes: Uint8Array): EncryptionKey.Shape => {
  const keyset: EncryptionKey.Keyset = Keyset.single(Redacted.make(bytes))
  return EncryptionKey.EncryptionKey.of({
    source: "env",
    description: "test key",
    keyset: Effect.succeed(keyset),
    reload: Effect.succeed(keyset),
    rotate: Effect.die("no rotation in tests"),
    retire: () => Effect.succeed(keyset)
  })
}

/** The Redis store of one namespace on a test `redis-server` (scoped: its connection). */
export const redisStore = (url: string, key: Uint8Array, namespace: string) =>
  Effect.gen(function*() {
    const client = yield* RedisClient.make({
      url,
      tls: false,
      username: Option.none(),
      password: Option.none(),
      commandTimeout: Duration.seconds(5)
    })
    return yield* Redis.makeWith({ client, codec: RecordCodec.sealed(envKeyOf(key), namespace), namespace, keyPrefix: "mts-hardening:" })
  })
