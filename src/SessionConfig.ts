/**
 * SessionConfig: the effective configuration of session persistence, after the
 * YAML file, the `MAGICTUNNEL_*` environment and the defaults have been merged
 * (env over file over default), with the origin of every value kept so that
 * errors and `mtsession config show` can say where a value came from.
 *
 * The YAML contract lives under `auth.session_persistence` (see
 * `config.yaml.template`); providers live under `auth.oauth.providers.<name>`.
 * Loading is in `internal/ConfigLoader.ts`; this module holds the typed shape,
 * the error and the service key.
 */
import * as Os from "node:os"
import { Context, Data, Effect, Layer } from "effect"
import type * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as ConfigKeys from "./internal/ConfigKeys.js"
import * as ConfigLoader from "./internal/ConfigLoader.js"

/** Storage backends a user can ask for. */
export const backends = [
  "auto",
  "keychain",
  "credential_manager",
  "secret_service",
  "filesystem",
  "memory",
  "redis"
] as const
export type StorageBackendSetting = typeof backends[number]

/** Where the encrypted file store gets its data key. */
export const keySources = ["auto", "env", "keyring", "file"] as const
export type KeySourceSetting = typeof keySources[number]

/** Where metrics go: nowhere, OTLP over HTTP, or `/metrics` of the status server (Prometheus). */
export const metricsExporters = ["none", "otlp", "prometheus"] as const
export type MetricsExporterSetting = typeof metricsExporters[number]

/** Where one effective value came from. `file` carries the path and line. */
export type ValueSource =
  | { readonly _tag: "default" }
  | { readonly _tag: "file"; readonly path: string; readonly line: number }
  | { readonly _tag: "env"; readonly name: string }

/** `auth.session_persistence`, decoded and camel-cased. */
export interface Settings {
  readonly enabled: boolean
  readonly userContext: {
    readonly enabled: boolean
    /** As configured (before `~` expansion); `UserContext` resolves it. */
    readonly sessionDirectory: string
    readonly hostnameIsolation: boolean
  }
  readonly tokenStorage: {
    readonly enabled: boolean
    readonly storageBackend: StorageBackendSetting
    readonly encryptionEnabled: boolean
    /** Octal mode for session files, e.g. 0o600. */
    readonly filePermissions: number
    readonly maxTokensPerProvider: number
    readonly tokenCleanupIntervalHours: number
    readonly encryptionKeySource: KeySourceSetting
    /** As configured (before `~` expansion). */
    readonly encryptionKeyFile: string
    readonly keyringTimeoutSeconds: number
  }
  readonly sessionRecovery: {
    readonly enabled: boolean
    readonly autoRecoveryOnStartup: boolean
    readonly validationIntervalMinutes: number
    readonly maxRecoveryAttempts: number
    readonly tokenValidationTimeoutSeconds: number
    readonly gracefulDegradation: boolean
    readonly retryFailedProviders: boolean
  }
  readonly tokenRefresh: {
    readonly enabled: boolean
    readonly refreshThresholdMinutes: number
    readonly backgroundRefreshEnabled: boolean
    readonly maxRetryAttempts: number
    readonly retryDelayBaseSeconds: number
    readonly concurrentRefreshLimit: number
    readonly refreshQueueSize: number
    readonly enableRefreshTokenRotation: boolean
    readonly refreshTimeoutSeconds: number
    readonly backgroundCheckIntervalMinutes: number
    readonly maxRetryAgeHours: number
  }
  /** The shared store of a fleet (`storage_backend: redis`); see docs/fleet.md. */
  readonly redis: {
    /** `redis://` or `rediss://`, never with a password in it. */
    readonly url: string
    /** Prepended to every key, so several deployments can share one Redis. */
    readonly keyPrefix: string
    /** Connect with TLS (also implied by `rediss://`). */
    readonly tls: boolean
    /** The environment variable holding the ACL user name. */
    readonly usernameEnv: string
    /** The environment variable holding the password. */
    readonly passwordEnv: string
    /** How long a refresh lock outlives a holder that stopped renewing it (a dead instance). */
    readonly lockLeaseSeconds: number
    /** Every Redis command gives up after this long. */
    readonly commandTimeoutSeconds: number
  }
  /** OpenTelemetry (see `Telemetry.ts`); the standard `OTEL_*` variables also switch it on. */
  readonly observability: {
    readonly tracingEnabled: boolean
    /** OTLP/HTTP base URL (e.g. `http://127.0.0.1:4318`); empty: `OTEL_EXPORTER_OTLP_*` or the SDK default. */
    readonly otlpEndpoint: string
    readonly serviceName: string
    readonly metricsExporter: MetricsExporterSetting
    readonly metricsExportIntervalSeconds: number
  }
  /** The audit log (see `AuditLog.ts`). */
  readonly auditLog: {
    readonly enabled: boolean
    /** As configured; empty: `audit.log` in the session directory. */
    readonly path: string
    readonly maxSizeMb: number
    readonly maxFiles: number
  }
}

/** Redis credentials, read from the variables named by `redis.username_env` and `redis.password_env`. */
export interface RedisCredentials {
  readonly username: Option.Option<string>
  readonly password: Option.Option<Redacted.Redacted<string>>
}

/** One OAuth provider under `auth.oauth.providers.<name>`. */
export interface ProviderSettings {
  readonly name: string
  readonly issuer: Option.Option<string>
  readonly authorizationEndpoint: Option.Option<string>
  readonly tokenEndpoint: Option.Option<string>
  readonly deviceAuthorizationEndpoint: Option.Option<string>
  readonly revocationEndpoint: Option.Option<string>
  readonly introspectionEndpoint: Option.Option<string>
  readonly userinfoEndpoint: Option.Option<string>
  readonly clientId: string
  /** Read from the env variable named by `client_secret_env`; never from YAML. */
  readonly clientSecret: Option.Option<Redacted.Redacted<string>>
  readonly scopes: ReadonlyArray<string>
  readonly resource: Option.Option<string>
  readonly redirectPort: number
}

/**
 * A provider's settings from what is known of it: every endpoint, the secret
 * and the resource not given are none (endpoints are then discovered from the
 * issuer), no scopes, any redirect port. For providers that are not read
 * from a configuration file (a stored session's own client, an MCP server).
 */
export const providerSettings = (
  fields: Pick<ProviderSettings, "name" | "clientId"> & Partial<ProviderSettings>
): ProviderSettings => ({
  issuer: Option.none(),
  authorizationEndpoint: Option.none(),
  tokenEndpoint: Option.none(),
  deviceAuthorizationEndpoint: Option.none(),
  revocationEndpoint: Option.none(),
  introspectionEndpoint: Option.none(),
  userinfoEndpoint: Option.none(),
  clientSecret: Option.none(),
  scopes: [],
  resource: Option.none(),
  redirectPort: 0,
  ...fields
})

/** The loaded configuration: typed values plus provenance. */
export interface Loaded {
  readonly settings: Settings
  readonly providers: ReadonlyMap<string, ProviderSettings>
  /** Path of the YAML file that was read, if any. */
  readonly path: Option.Option<string>
  /** Dotted key (e.g. `token_storage.storage_backend`) to where its value came from. */
  readonly sources: ReadonlyMap<string, ValueSource>
  /** The effective `auth.session_persistence` tree, snake_case as in YAML, secrets redacted. */
  readonly effective: Readonly<Record<string, unknown>>
  /**
   * The file store's data key from `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY` (base64 of 32 bytes),
   * validated by the loader; never read from YAML.
   */
  readonly encryptionKey: Option.Option<Redacted.Redacted<Uint8Array>>
  /** Warnings that do not stop start-up (e.g. deprecated keys). */
  readonly warnings: ReadonlyArray<string>
  /** Redis credentials from the environment; absent means none. */
  readonly redisCredentials?: RedisCredentials | undefined
}

/** Bad configuration: names the key, where the value came from and what was expected. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly problems: ReadonlyArray<ConfigProblem>
}> {
  override get message(): string {
    return this.problems.map(formatProblem).join("\n")
  }
}

/** One problem with one key. */
export interface ConfigProblem {
  /** Dotted key, e.g. `auth.session_persistence.token_storage.storage_backend`. */
  readonly key: string
  /** `file:line`, `env:NAME`, `--config` ... */
  readonly source: string
  readonly expected: string
  /** A short, secret-free rendering of the offending value, when safe to show. */
  readonly actual?: string
}

/** Renders one problem as a single line. */
export const formatProblem = (p: ConfigProblem): string =>
  `${p.key} (${p.source}): expected ${p.expected}${p.actual === undefined ? "" : `, got ${p.actual}`}`

/** Renders a value source the way `config show` prints it. */
export const formatSource = (s: ValueSource): string =>
  s._tag === "default" ? "default" : s._tag === "env" ? `env:${s.name}` : "file"

/** The effective configuration of this process. */
export class SessionConfig extends Context.Service<SessionConfig, Loaded>()(
  "magictunnel-session/SessionConfig"
) {}

/** What {@link load} reads: the `--config` value, an environment, the working and home directories. */
export type LoadOptions = ConfigLoader.Options

/**
 * Loads the configuration: the file from `configPath`, else
 * `MAGICTUNNEL_CONFIG_PATH`, else the first of {@link searchPath} that exists;
 * then `env` over the file over the defaults. Fails with every problem found.
 */
export const load: (options: LoadOptions) => Effect.Effect<Loaded, ConfigError, FileSystem.FileSystem> =
  ConfigLoader.load

/** The files tried, in order, when no path is given. */
export const searchPath: (options: Omit<LoadOptions, "configPath">) => ReadonlyArray<string> = ConfigLoader.searchPath

/** One documented key: dotted name under `auth.session_persistence`, env variable, default and accepted values. */
export interface KeyDescription {
  readonly key: string
  readonly env: string
  /** As the YAML file would hold it. */
  readonly default: string | number | boolean
  readonly accepts: string
}

/** Every key of `auth.session_persistence`, in documentation order. */
export const describeKeys = (): ReadonlyArray<KeyDescription> =>
  ConfigKeys.allLeaves().map((leaf) => ({
    key: leaf.key,
    env: leaf.env,
    default: leaf.render(leaf.default),
    accepts: leaf.accepts()
  }))

/** The environment variable that carries the file store's data key (base64 of 32 bytes). */
export const encryptionKeyEnv = ConfigKeys.encryptionKeyEnv

/** The environment variable that names the configuration file. */
export const configPathEnv = ConfigKeys.configPathEnv

/** The configuration with nothing configured: every default, no file, no provider. */
export const defaults = (): Loaded => fromSettings(ConfigKeys.defaultSettings())

const fromSettings = (settings: Settings, extra?: Partial<Omit<Loaded, "settings" | "effective">>): Loaded => ({
  settings,
  providers: new Map(),
  path: Option.none(),
  sources: new Map(ConfigKeys.allLeaves().map((leaf) => [leaf.key, { _tag: "default" } as const])),
  effective: ConfigKeys.effectiveOf(settings),
  encryptionKey: Option.none(),
  warnings: [],
  ...extra
})

/**
 * The process configuration: reads `process.env` (the one place in this
 * package that does), the working directory and the home directory.
 */
export const layer = (options?: {
  readonly configPath?: string | undefined
}): Layer.Layer<SessionConfig, ConfigError, FileSystem.FileSystem> =>
  Layer.effect(
    SessionConfig,
    Effect.suspend(() =>
      ConfigLoader.load({ configPath: options?.configPath, env: process.env, cwd: process.cwd(), home: Os.homedir() })
    )
  )

/** The configuration for an explicit environment (tests, embedders with their own settings source). */
export const layerFromEnv = (options: {
  readonly configPath?: string | undefined
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd?: string | undefined
  readonly home?: string | undefined
}): Layer.Layer<SessionConfig, ConfigError, FileSystem.FileSystem> =>
  Layer.effect(
    SessionConfig,
    Effect.suspend(() =>
      ConfigLoader.load({
        configPath: options.configPath,
        env: options.env,
        cwd: options.cwd ?? process.cwd(),
        home: options.home ?? Os.homedir()
      })
    )
  )

/** Every default, nothing read (tests). */
export const layerDefaults: Layer.Layer<SessionConfig> = Layer.sync(SessionConfig, defaults)

/**
 * The defaults with `overrides` applied (tests, e.g. a temporary
 * `session_directory`); `extra` supplies providers or an encryption key.
 */
export const layerWith = (
  overrides: (settings: Settings) => Settings,
  extra?: Partial<Pick<Loaded, "providers" | "encryptionKey" | "warnings" | "redisCredentials">>
): Layer.Layer<SessionConfig> =>
  Layer.sync(SessionConfig, () => fromSettings(overrides(ConfigKeys.defaultSettings()), extra))
