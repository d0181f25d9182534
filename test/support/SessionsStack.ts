/**
 * The Sessions service as a process really composes it: the encrypted file
 * store and the file lock in a session directory, the real OAuth client
 * over undici, the OS user's context; only the configuration differs
 * between the tests (explicit settings) and their worker processes (a YAML
 * file and the environment, through the real loader).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Layer, Option, Redacted } from "effect"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as EncryptedFile from "../../src/TokenStore/EncryptedFile.js"
import * as UserContext from "../../src/UserContext.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)

/** Sessions and everything under it, over the given configuration. */
export const stack = <E>(config: Layer.Layer<SessionConfig.SessionConfig, E>) => {
  const base = Layer.mergeAll(config, platform)
  const withUser = Layer.merge(base, UserContext.layer.pipe(Layer.provide(base)))
  const store = EncryptedFile.layerConfig.pipe(Layer.provide(withUser))
  const lock = RefreshLock.layerFile.pipe(Layer.provide(withUser))
  const oauth = OAuthClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
  return Sessions.layer.pipe(Layer.provideMerge(Layer.mergeAll(store, lock, oauth, withUser)))
}

/** A fresh data key for the file store, and its base64 form for `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY`. */
export const newKey = () => {
  const bytes = new Uint8Array(Crypto.randomBytes(32))
  return { bytes, base64: Buffer.from(bytes).toString("base64") }
}

/**
 * Explicit settings for in-process tests: the file store in `sessionDirectory`
 * with the key from "the environment", the given providers, and token refresh
 * settings (fractional seconds allowed, unlike in a config file).
 */
export const configLayer = (options: {
  readonly sessionDirectory: string
  readonly key: Uint8Array
  readonly providers: ReadonlyArray<SessionConfig.ProviderSettings>
  readonly refresh?: Partial<SessionConfig.Settings["tokenRefresh"]>
}) =>
  SessionConfig.layerWith((s) => ({
    ...s,
    userContext: { ...s.userContext, sessionDirectory: options.sessionDirectory },
    tokenStorage: { ...s.tokenStorage, storageBackend: "filesystem", encryptionKeySource: "env" },
    tokenRefresh: { ...s.tokenRefresh, ...options.refresh }
  }), {
    providers: new Map(options.providers.map((p) => [p.name, p])),
    encryptionKey: Option.some(Redacted.make(options.key))
  })

/** Writes the YAML a worker process loads: the file store in `sessionDirectory`, one provider. */
export const writeConfigFile = (dir: string, options: {
  readonly sessionDirectory: string
  readonly provider: string
  readonly issuer: string
  readonly clientId: string
  readonly scopes: ReadonlyArray<string>
}): string => {
  const file = NodePathModule.join(dir, "config.yaml")
  Fs.writeFileSync(
    file,
    [
      "auth:",
      "  session_persistence:",
      "    user_context:",
      `      session_directory: ${JSON.stringify(options.sessionDirectory)}`,
      "    token_storage:",
      "      storage_backend: filesystem",
      "      encryption_key_source: env",
      "  oauth:",
      "    providers:",
      `      ${options.provider}:`,
      `        issuer: ${JSON.stringify(options.issuer)}`,
      `        client_id: ${JSON.stringify(options.clientId)}`,
      `        scopes: ${JSON.stringify(options.scopes)}`,
      ""
    ].join("\n"),
    { mode: 0o600 }
  )
  return file
}

/** The configuration of a worker: the real loader, the file named by `MAGICTUNNEL_CONFIG_PATH`, the process env. */
export const processConfig = SessionConfig.layer().pipe(Layer.provide(NodeFileSystem.layer))

/** What the test process loads from the same file, with the key a worker gets through its env. */
export const fileConfig = (configPath: string, keyBase64: string) =>
  SessionConfig.layerFromEnv({
    configPath,
    env: { [SessionConfig.encryptionKeyEnv]: keyBase64 }
  }).pipe(Layer.provide(NodeFileSystem.layer))
