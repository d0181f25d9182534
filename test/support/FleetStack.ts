/**
 * An instance of a fleet as a process composes it: the configuration file
 * (storage_backend: redis), the user context, the Redis store and the Redis
 * refresh lock chosen by `layers/StoreFromConfig`, the real OAuth client and
 * the Sessions service. Used by the fleet tests and their worker processes.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Fs from "node:fs"
import * as NodePathModule from "node:path"
import { Layer } from "effect"
import * as StoreFromConfig from "../../layers/StoreFromConfig.js"
import * as OAuthClient from "../../src/OAuthClient.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as Sessions from "../../src/Sessions.js"
import * as UserContext from "../../src/UserContext.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)

/** Sessions over the fleet store and lock the configuration selects, kept in step with the fleet by `FleetSync`. */
export const stack = <E>(config: Layer.Layer<SessionConfig.SessionConfig, E>) => {
  const base = Layer.mergeAll(config, platform)
  const withUser = Layer.merge(base, UserContext.layer.pipe(Layer.provide(base)))
  const storage = StoreFromConfig.layer.pipe(Layer.provideMerge(withUser))
  const lock = StoreFromConfig.lock.pipe(Layer.provide(storage))
  const oauth = OAuthClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
  return StoreFromConfig.fleetSync.pipe(
    Layer.provideMerge(Sessions.layer),
    Layer.provideMerge(Layer.mergeAll(storage, lock, oauth))
  )
}

/** Writes the YAML every instance loads: the Redis store at `redisUrl`, one provider. */
export const writeConfigFile = (dir: string, options: {
  readonly sessionDirectory: string
  readonly redisUrl: string
  readonly keyPrefix: string
  readonly lockLeaseSeconds: number
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
      "      storage_backend: redis",
      "      encryption_key_source: env",
      "    token_refresh:",
      "      retry_delay_base_seconds: 1",
      "    redis:",
      `      url: ${JSON.stringify(options.redisUrl)}`,
      `      key_prefix: ${JSON.stringify(options.keyPrefix)}`,
      `      lock_lease_seconds: ${options.lockLeaseSeconds}`,
      "      command_timeout_seconds: 2",
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

/** The configuration of a worker: the real loader, `MAGICTUNNEL_CONFIG_PATH`, the process env. */
export const processConfig = SessionConfig.layer().pipe(Layer.provide(NodeFileSystem.layer))

/** What the test process loads from the same file, with the key a worker gets through its env. */
export const fileConfig = (configPath: string, keyBase64: string) =>
  SessionConfig.layerFromEnv({ configPath, env: { [SessionConfig.encryptionKeyEnv]: keyBase64 } }).pipe(
    Layer.provide(NodeFileSystem.layer)
  )
