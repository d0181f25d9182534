/**
 * ConfigKeys: the table of every `auth.session_persistence` key, with its
 * environment variable, default and accepted values. The loader, `defaults()`,
 * `describeKeys()` (and so `config show`) and the documentation tests all walk
 * this one table, so a key cannot exist in one place and be missing from another.
 *
 * The table is nested exactly like {@link Settings}; `settingsOf` maps it to
 * typed values. `SessionConfig.ts` imports the loader, which imports this
 * file: values from `SessionConfig.ts` are therefore only read inside
 * functions, never while this module is being evaluated (import cycle).
 */
import {
  backends,
  type KeySourceSetting,
  keySources,
  type MetricsExporterSetting,
  metricsExporters,
  type Settings,
  type StorageBackendSetting
} from "../SessionConfig.js"
import { bool, choice, int, type Leaf, mode, optionalPath, path, text } from "./ConfigValues.js"

const envNameExpected = "the name of an environment variable (letters, digits and '_')"
const isEnvName = (s: string) => /^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(s)

/** A `redis://` or `rediss://` URL that carries no password (secrets never sit in the YAML). */
export const isRedisUrl = (s: string): boolean => {
  if (!/^rediss?:\/\//i.test(s)) return false
  try {
    const url = new URL(s)
    return url.hostname.length > 0 && url.password === ""
  } catch {
    return false
  }
}

/** Every key, nested like {@link Settings}. */
export const leaves = {
  enabled: bool("enabled", "MAGICTUNNEL_SESSION_PERSISTENCE_ENABLED", true),
  userContext: {
    enabled: bool("user_context.enabled", "MAGICTUNNEL_USER_CONTEXT_ENABLED", true),
    sessionDirectory: path("user_context.session_directory", "MAGICTUNNEL_CUSTOM_SESSION_DIR", "~/.magictunnel/sessions"),
    hostnameIsolation: bool("user_context.hostname_isolation", "MAGICTUNNEL_HOSTNAME_ISOLATION", true)
  },
  tokenStorage: {
    enabled: bool("token_storage.enabled", "MAGICTUNNEL_TOKEN_STORAGE_ENABLED", true),
    storageBackend: choice<StorageBackendSetting>(
      "token_storage.storage_backend",
      "MAGICTUNNEL_TOKEN_STORAGE_BACKEND",
      "auto",
      () => backends
    ),
    encryptionEnabled: bool("token_storage.encryption_enabled", "MAGICTUNNEL_TOKEN_ENCRYPTION_ENABLED", true),
    filePermissions: mode("token_storage.file_permissions", "MAGICTUNNEL_TOKEN_FILE_PERMISSIONS", 0o600),
    maxTokensPerProvider: int("token_storage.max_tokens_per_provider", "MAGICTUNNEL_MAX_TOKENS_PER_PROVIDER", 10, 1, 10_000),
    tokenCleanupIntervalHours: int(
      "token_storage.token_cleanup_interval_hours",
      "MAGICTUNNEL_TOKEN_CLEANUP_INTERVAL",
      24,
      1,
      168
    ),
    encryptionKeySource: choice<KeySourceSetting>(
      "token_storage.encryption_key_source",
      "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_SOURCE",
      "auto",
      () => keySources
    ),
    encryptionKeyFile: path(
      "token_storage.encryption_key_file",
      "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_FILE",
      "~/.magictunnel/encryption.key"
    ),
    keyringTimeoutSeconds: int("token_storage.keyring_timeout_seconds", "MAGICTUNNEL_KEYRING_TIMEOUT", 5, 1, 300)
  },
  sessionRecovery: {
    enabled: bool("session_recovery.enabled", "MAGICTUNNEL_SESSION_RECOVERY_ENABLED", true),
    autoRecoveryOnStartup: bool("session_recovery.auto_recovery_on_startup", "MAGICTUNNEL_SESSION_RECOVERY_STARTUP", true),
    validationIntervalMinutes: int(
      "session_recovery.validation_interval_minutes",
      "MAGICTUNNEL_SESSION_VALIDATION_INTERVAL",
      60,
      1,
      10_080
    ),
    maxRecoveryAttempts: int("session_recovery.max_recovery_attempts", "MAGICTUNNEL_MAX_RECOVERY_ATTEMPTS", 3, 1, 100),
    tokenValidationTimeoutSeconds: int(
      "session_recovery.token_validation_timeout_seconds",
      "MAGICTUNNEL_TOKEN_VALIDATION_TIMEOUT",
      30,
      1,
      600
    ),
    gracefulDegradation: bool("session_recovery.graceful_degradation", "MAGICTUNNEL_GRACEFUL_DEGRADATION", true),
    retryFailedProviders: bool("session_recovery.retry_failed_providers", "MAGICTUNNEL_RETRY_FAILED_PROVIDERS", true)
  },
  tokenRefresh: {
    enabled: bool("token_refresh.enabled", "MAGICTUNNEL_TOKEN_REFRESH_ENABLED", true),
    refreshThresholdMinutes: int(
      "token_refresh.refresh_threshold_minutes",
      "MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD",
      15,
      0,
      1_440
    ),
    backgroundRefreshEnabled: bool(
      "token_refresh.background_refresh_enabled",
      "MAGICTUNNEL_BACKGROUND_REFRESH_ENABLED",
      true
    ),
    maxRetryAttempts: int("token_refresh.max_retry_attempts", "MAGICTUNNEL_REFRESH_MAX_RETRY_ATTEMPTS", 3, 0, 100),
    retryDelayBaseSeconds: int(
      "token_refresh.retry_delay_base_seconds",
      "MAGICTUNNEL_REFRESH_RETRY_DELAY_BASE",
      5,
      1,
      3_600
    ),
    concurrentRefreshLimit: int(
      "token_refresh.concurrent_refresh_limit",
      "MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT",
      5,
      1,
      1_000
    ),
    refreshQueueSize: int("token_refresh.refresh_queue_size", "MAGICTUNNEL_REFRESH_QUEUE_SIZE", 100, 1, 1_000_000),
    enableRefreshTokenRotation: bool(
      "token_refresh.enable_refresh_token_rotation",
      "MAGICTUNNEL_REFRESH_TOKEN_ROTATION",
      true
    ),
    refreshTimeoutSeconds: int("token_refresh.refresh_timeout_seconds", "MAGICTUNNEL_REFRESH_TIMEOUT", 30, 1, 600),
    backgroundCheckIntervalMinutes: int(
      "token_refresh.background_check_interval_minutes",
      "MAGICTUNNEL_BACKGROUND_CHECK_INTERVAL",
      30,
      1,
      1_440
    ),
    maxRetryAgeHours: int("token_refresh.max_retry_age_hours", "MAGICTUNNEL_MAX_RETRY_AGE", 24, 1, 720)
  },
  redis: {
    url: text(
      "redis.url",
      "MAGICTUNNEL_REDIS_URL",
      "redis://127.0.0.1:6379",
      "a redis:// or rediss:// URL without a password (credentials come from password_env)",
      isRedisUrl
    ),
    keyPrefix: text(
      "redis.key_prefix",
      "MAGICTUNNEL_REDIS_KEY_PREFIX",
      "magictunnel:",
      "1 to 64 letters, digits and . _ : -",
      (s) => /^[A-Za-z0-9._:-]{1,64}$/.test(s)
    ),
    tls: bool("redis.tls", "MAGICTUNNEL_REDIS_TLS", false),
    usernameEnv: text("redis.username_env", "MAGICTUNNEL_REDIS_USERNAME_ENV", "MAGICTUNNEL_REDIS_USERNAME", envNameExpected, isEnvName),
    passwordEnv: text("redis.password_env", "MAGICTUNNEL_REDIS_PASSWORD_ENV", "MAGICTUNNEL_REDIS_PASSWORD", envNameExpected, isEnvName),
    lockLeaseSeconds: int("redis.lock_lease_seconds", "MAGICTUNNEL_REDIS_LOCK_LEASE", 15, 3, 600),
    commandTimeoutSeconds: int("redis.command_timeout_seconds", "MAGICTUNNEL_REDIS_COMMAND_TIMEOUT", 5, 1, 120)
  },
  observability: {
    tracingEnabled: bool("observability.tracing_enabled", "MAGICTUNNEL_TRACING_ENABLED", false),
    otlpEndpoint: text(
      "observability.otlp_endpoint",
      "MAGICTUNNEL_OTLP_ENDPOINT",
      "",
      "empty, or an http:// or https:// URL",
      (s) => s === "" || /^https?:\/\/\S+$/.test(s)
    ),
    serviceName: text(
      "observability.service_name",
      "MAGICTUNNEL_SERVICE_NAME",
      "mtsession",
      "1 to 128 printable characters",
      (s) => /^[\x21-\x7e][\x20-\x7e]{0,127}$/.test(s)
    ),
    metricsExporter: choice<MetricsExporterSetting>(
      "observability.metrics_exporter",
      "MAGICTUNNEL_METRICS_EXPORTER",
      "none",
      () => metricsExporters
    ),
    metricsExportIntervalSeconds: int(
      "observability.metrics_export_interval_seconds",
      "MAGICTUNNEL_METRICS_EXPORT_INTERVAL",
      60,
      1,
      3_600
    )
  },
  auditLog: {
    enabled: bool("audit_log.enabled", "MAGICTUNNEL_AUDIT_LOG_ENABLED", true),
    path: optionalPath("audit_log.path", "MAGICTUNNEL_AUDIT_LOG_PATH"),
    maxSizeMb: int("audit_log.max_size_mb", "MAGICTUNNEL_AUDIT_LOG_MAX_SIZE_MB", 10, 1, 1_024),
    maxFiles: int("audit_log.max_files", "MAGICTUNNEL_AUDIT_LOG_MAX_FILES", 5, 1, 100)
  }
} as const

type Leaves = typeof leaves

/** Any leaf, with its value type forgotten (for iteration). */
// A heterogeneous table: each leaf's type is checked where it is built and where `settingsOf` reads it.
export type AnyLeaf = Leaf<any>

/** Every leaf, in table order. */
export const allLeaves = (): ReadonlyArray<AnyLeaf> => {
  const out: Array<AnyLeaf> = []
  const walk = (node: object): void => {
    for (const child of Object.values(node)) {
      if (child._tag === "Leaf") out.push(child)
      else walk(child)
    }
  }
  walk(leaves)
  return out
}

/** The environment variable that holds the file store's data key (never YAML). */
export const encryptionKeyEnv = "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY"

/** The environment variable that names the config file. */
export const configPathEnv = "MAGICTUNNEL_CONFIG_PATH"

/** Every `MAGICTUNNEL_*` variable this package reads. */
export const knownEnvNames = (): ReadonlyArray<string> => [
  configPathEnv,
  encryptionKeyEnv,
  leaves.redis.usernameEnv.default,
  leaves.redis.passwordEnv.default,
  ...allLeaves().map((l) => l.env)
]

/**
 * Builds {@link Settings} by asking `valueOf` for every leaf. The nested
 * literals below mirror `leaves`; the compiler checks each against `Settings`.
 */
export const settingsOf = (valueOf: <A>(leaf: Leaf<A>) => A): Settings => {
  const L: Leaves = leaves
  return {
    enabled: valueOf(L.enabled),
    userContext: {
      enabled: valueOf(L.userContext.enabled),
      sessionDirectory: valueOf(L.userContext.sessionDirectory),
      hostnameIsolation: valueOf(L.userContext.hostnameIsolation)
    },
    tokenStorage: {
      enabled: valueOf(L.tokenStorage.enabled),
      storageBackend: valueOf(L.tokenStorage.storageBackend),
      encryptionEnabled: valueOf(L.tokenStorage.encryptionEnabled),
      filePermissions: valueOf(L.tokenStorage.filePermissions),
      maxTokensPerProvider: valueOf(L.tokenStorage.maxTokensPerProvider),
      tokenCleanupIntervalHours: valueOf(L.tokenStorage.tokenCleanupIntervalHours),
      encryptionKeySource: valueOf(L.tokenStorage.encryptionKeySource),
      encryptionKeyFile: valueOf(L.tokenStorage.encryptionKeyFile),
      keyringTimeoutSeconds: valueOf(L.tokenStorage.keyringTimeoutSeconds)
    },
    sessionRecovery: {
      enabled: valueOf(L.sessionRecovery.enabled),
      autoRecoveryOnStartup: valueOf(L.sessionRecovery.autoRecoveryOnStartup),
      validationIntervalMinutes: valueOf(L.sessionRecovery.validationIntervalMinutes),
      maxRecoveryAttempts: valueOf(L.sessionRecovery.maxRecoveryAttempts),
      tokenValidationTimeoutSeconds: valueOf(L.sessionRecovery.tokenValidationTimeoutSeconds),
      gracefulDegradation: valueOf(L.sessionRecovery.gracefulDegradation),
      retryFailedProviders: valueOf(L.sessionRecovery.retryFailedProviders)
    },
    tokenRefresh: {
      enabled: valueOf(L.tokenRefresh.enabled),
      refreshThresholdMinutes: valueOf(L.tokenRefresh.refreshThresholdMinutes),
      backgroundRefreshEnabled: valueOf(L.tokenRefresh.backgroundRefreshEnabled),
      maxRetryAttempts: valueOf(L.tokenRefresh.maxRetryAttempts),
      retryDelayBaseSeconds: valueOf(L.tokenRefresh.retryDelayBaseSeconds),
      concurrentRefreshLimit: valueOf(L.tokenRefresh.concurrentRefreshLimit),
      refreshQueueSize: valueOf(L.tokenRefresh.refreshQueueSize),
      enableRefreshTokenRotation: valueOf(L.tokenRefresh.enableRefreshTokenRotation),
      refreshTimeoutSeconds: valueOf(L.tokenRefresh.refreshTimeoutSeconds),
      backgroundCheckIntervalMinutes: valueOf(L.tokenRefresh.backgroundCheckIntervalMinutes),
      maxRetryAgeHours: valueOf(L.tokenRefresh.maxRetryAgeHours)
    },
    redis: {
      url: valueOf(L.redis.url),
      keyPrefix: valueOf(L.redis.keyPrefix),
      tls: valueOf(L.redis.tls),
      usernameEnv: valueOf(L.redis.usernameEnv),
      passwordEnv: valueOf(L.redis.passwordEnv),
      lockLeaseSeconds: valueOf(L.redis.lockLeaseSeconds),
      commandTimeoutSeconds: valueOf(L.redis.commandTimeoutSeconds)
    },
    observability: {
      tracingEnabled: valueOf(L.observability.tracingEnabled),
      otlpEndpoint: valueOf(L.observability.otlpEndpoint),
      serviceName: valueOf(L.observability.serviceName),
      metricsExporter: valueOf(L.observability.metricsExporter),
      metricsExportIntervalSeconds: valueOf(L.observability.metricsExportIntervalSeconds)
    },
    auditLog: {
      enabled: valueOf(L.auditLog.enabled),
      path: valueOf(L.auditLog.path),
      maxSizeMb: valueOf(L.auditLog.maxSizeMb),
      maxFiles: valueOf(L.auditLog.maxFiles)
    }
  }
}

/** The default settings. */
export const defaultSettings = (): Settings => settingsOf((l) => l.default)

/** The value of every leaf in `settings`, keyed by dotted key (the inverse of {@link settingsOf}). */
export const valuesOf = (settings: Settings): ReadonlyMap<string, string | number | boolean> => {
  const out = new Map<string, string | number | boolean>()
  const walk = (node: object, values: object): void => {
    for (const [name, child] of Object.entries(node)) {
      const value: unknown = Object.getOwnPropertyDescriptor(values, name)?.value
      if (child._tag === "Leaf") out.set(child.key, child.render(value))
      else if (typeof value === "object" && value !== null) walk(child, value)
    }
  }
  walk(leaves, settings)
  return out
}

/** The snake_case tree of `settings` as the YAML file would hold it. */
export const effectiveOf = (settings: Settings): Record<string, unknown> => {
  const tree: Record<string, unknown> = {}
  for (const [key, value] of valuesOf(settings)) {
    const parts = key.split(".")
    let node = tree
    for (const part of parts.slice(0, -1)) {
      const next = node[part]
      if (typeof next === "object" && next !== null && !Array.isArray(next)) {
        node = next as Record<string, unknown>
      } else {
        const created: Record<string, unknown> = {}
        node[part] = created
        node = created
      }
    }
    node[parts[parts.length - 1] ?? key] = value
  }
  return tree
}
