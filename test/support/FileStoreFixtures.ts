/**
 * Fixtures for the encrypted file store and its data key: a temporary home
 * directory, the configuration and user context pointing into it, and an
 * in-memory OS keyring that can be switched off.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePathModule from "node:path"
import { Effect, Layer, Option, Redacted } from "effect"
import * as Keyring from "../../src/Keyring.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as UserContext from "../../src/UserContext.js"

/** A temporary directory removed when the scope closes. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(NodePathModule.join(Os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

/** What a test environment is configured with. */
export interface Options {
  readonly home: string
  readonly source?: SessionConfig.KeySourceSetting
  readonly keyFile?: string
  readonly envKey?: Uint8Array
  readonly encryption?: boolean
  readonly keyring?: FakeKeyring
  /** The OS user name (the namespace derives from it); `tester` by default. */
  readonly username?: string
}

/** The session directory of a test home. */
export const sessionDirectoryOf = (home: string) => NodePathModule.join(home, ".magictunnel", "sessions")

/** Configuration, user context and platform for a test home; plus the keyring when one is given. */
export const environment = (o: Options) => {
  const config = SessionConfig.layerWith((s) => ({
    ...s,
    userContext: { ...s.userContext, sessionDirectory: sessionDirectoryOf(o.home) },
    tokenStorage: {
      ...s.tokenStorage,
      encryptionEnabled: o.encryption ?? true,
      encryptionKeySource: o.source ?? "auto",
      encryptionKeyFile: o.keyFile ?? s.tokenStorage.encryptionKeyFile
    }
  }), { encryptionKey: o.envKey === undefined ? Option.none() : Option.some(Redacted.make(o.envKey)) })
  const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)
  const identity: UserContext.OsIdentity = {
    username: o.username ?? "tester",
    uid: typeof process.getuid === "function" ? process.getuid() : -1,
    home: o.home,
    hostname: "testhost"
  }
  const user = Layer.effect(UserContext.UserContext, UserContext.make({ identity })).pipe(
    Layer.provide(Layer.merge(config, platform))
  )
  const base = Layer.mergeAll(config, platform, user)
  return o.keyring === undefined ? base : Layer.merge(base, Layer.succeed(Keyring.Keyring, o.keyring.service))
}

/** An in-memory keyring; `available: false` makes every call fail as when no Secret Service answers. */
export interface FakeKeyring {
  readonly entries: Map<string, string>
  available: boolean
  readonly service: Keyring.Shape
}

/** A fresh in-memory keyring. */
export const fakeKeyring = (): FakeKeyring => {
  const entries = new Map<string, string>()
  const fake: FakeKeyring = {
    entries,
    available: true,
    service: Keyring.Keyring.of({
      platform: "secret_service",
      maxSecretBytes: 4096,
      get: (service, account) => guard("get", () => Option.fromUndefinedOr(entries.get(`${service}/${account}`))),
      set: (service, account, secret) => guard("set", () => void entries.set(`${service}/${account}`, secret)),
      remove: (service, account) => guard("delete", () => entries.delete(`${service}/${account}`))
    })
  }
  const guard = <A>(operation: "get" | "set" | "delete", f: () => A) =>
    Effect.suspend(() =>
      fake.available
        ? Effect.sync(f)
        : Effect.fail(
          new Keyring.KeyringError({
            platform: "secret_service",
            operation,
            reason: { _tag: "Unavailable", detail: "no Secret Service on the session bus" }
          })
        )
    )
  return fake
}
