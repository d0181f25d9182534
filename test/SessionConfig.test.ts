import { assert, describe, it, layer } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { Effect, FileSystem, Layer, Option, Redacted, Result } from "effect"
import * as SessionConfig from "../src/SessionConfig.js"

const repo = NodePath.resolve(import.meta.dirname, "..")
const fixture = (name: string) => Fs.readFileSync(NodePath.join(repo, "test/fixtures/config", name), "utf8")
const repoFile = (name: string) => Fs.readFileSync(NodePath.join(repo, name), "utf8")

type Env = Readonly<Record<string, string | undefined>>

/** A scratch working directory and home directory, with files written relative to the working directory. */
const scratch = Effect.fnUntraced(function*(files: Readonly<Record<string, string>> = {}) {
  const fs = yield* FileSystem.FileSystem
  const root = yield* fs.makeTempDirectoryScoped({ prefix: "mt-config-" })
  const cwd = NodePath.join(root, "work")
  const home = NodePath.join(root, "home")
  yield* fs.makeDirectory(cwd, { recursive: true })
  yield* fs.makeDirectory(home, { recursive: true })
  for (const [name, content] of Object.entries(files)) {
    const target = name.startsWith("~/") ? NodePath.join(home, name.slice(2)) : NodePath.resolve(cwd, name)
    yield* fs.makeDirectory(NodePath.dirname(target), { recursive: true })
    yield* fs.writeFileString(target, content)
  }
  return { root, cwd, home }
})

/** Loads with `files` in a scratch directory; the result, success or every problem. */
const loadWith = Effect.fnUntraced(function*(options: {
  readonly files?: Readonly<Record<string, string>>
  readonly env?: Env
  readonly configPath?: string
}) {
  const dirs = yield* scratch(options.files)
  const result = yield* SessionConfig.load({
    configPath: options.configPath,
    env: options.env ?? {},
    cwd: dirs.cwd,
    home: dirs.home
  }).pipe(Effect.result)
  return { result, ...dirs }
})

const loaded = (r: Result.Result<SessionConfig.Loaded, SessionConfig.ConfigError>): SessionConfig.Loaded => {
  if (Result.isFailure(r)) assert.fail(`expected the configuration to load, got:\n${r.failure.message}`)
  return r.success
}

const failure = (r: Result.Result<SessionConfig.Loaded, SessionConfig.ConfigError>): SessionConfig.ConfigError => {
  if (Result.isSuccess(r)) assert.fail("expected a ConfigError, the configuration loaded")
  return r.failure
}

/** The value at a dotted key of the effective tree. */
const effectiveAt = (l: SessionConfig.Loaded, key: string): unknown =>
  key.split(".").reduce<unknown>(
    (node, part) => typeof node === "object" && node !== null ? Object.getOwnPropertyDescriptor(node, part)?.value : undefined,
    l.effective
  )

/** One valid, non-default value per variable, and how the effective tree then shows it. */
const envCases: Record<string, readonly [raw: string, effective: unknown]> = {
  MAGICTUNNEL_SESSION_PERSISTENCE_ENABLED: ["false", false],
  MAGICTUNNEL_USER_CONTEXT_ENABLED: ["0", false],
  MAGICTUNNEL_CUSTOM_SESSION_DIR: ["/srv/mt/sessions", "/srv/mt/sessions"],
  MAGICTUNNEL_HOSTNAME_ISOLATION: ["No", false],
  MAGICTUNNEL_TOKEN_STORAGE_ENABLED: ["OFF", false],
  MAGICTUNNEL_TOKEN_STORAGE_BACKEND: ["filesystem", "filesystem"],
  MAGICTUNNEL_TOKEN_ENCRYPTION_ENABLED: [" false ", false],
  MAGICTUNNEL_TOKEN_FILE_PERMISSIONS: ["0o700", "0700"],
  MAGICTUNNEL_MAX_TOKENS_PER_PROVIDER: ["20", 20],
  MAGICTUNNEL_TOKEN_CLEANUP_INTERVAL: ["12", 12],
  MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_SOURCE: ["keyring", "keyring"],
  MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_FILE: ["/run/secrets/mt.key", "/run/secrets/mt.key"],
  MAGICTUNNEL_KEYRING_TIMEOUT: ["2", 2],
  MAGICTUNNEL_SESSION_RECOVERY_ENABLED: ["false", false],
  MAGICTUNNEL_SESSION_RECOVERY_STARTUP: ["no", false],
  MAGICTUNNEL_SESSION_VALIDATION_INTERVAL: ["90", 90],
  MAGICTUNNEL_MAX_RECOVERY_ATTEMPTS: ["7", 7],
  MAGICTUNNEL_TOKEN_VALIDATION_TIMEOUT: ["45", 45],
  MAGICTUNNEL_GRACEFUL_DEGRADATION: ["off", false],
  MAGICTUNNEL_RETRY_FAILED_PROVIDERS: ["0", false],
  MAGICTUNNEL_TOKEN_REFRESH_ENABLED: ["FALSE", false],
  MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD: ["0", 0],
  MAGICTUNNEL_BACKGROUND_REFRESH_ENABLED: ["false", false],
  MAGICTUNNEL_REFRESH_MAX_RETRY_ATTEMPTS: ["0", 0],
  MAGICTUNNEL_REFRESH_RETRY_DELAY_BASE: ["10", 10],
  MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT: ["1000", 1000],
  MAGICTUNNEL_REFRESH_QUEUE_SIZE: ["1000000", 1_000_000],
  MAGICTUNNEL_REFRESH_TOKEN_ROTATION: ["false", false],
  MAGICTUNNEL_REFRESH_TIMEOUT: ["10", 10],
  MAGICTUNNEL_BACKGROUND_CHECK_INTERVAL: ["5", 5],
  MAGICTUNNEL_MAX_RETRY_AGE: ["48", 48],
  MAGICTUNNEL_REDIS_URL: ["rediss://redis.internal:6380/2", "rediss://redis.internal:6380/2"],
  MAGICTUNNEL_REDIS_KEY_PREFIX: ["gw:", "gw:"],
  MAGICTUNNEL_REDIS_TLS: ["on", true],
  MAGICTUNNEL_REDIS_USERNAME_ENV: ["GW_REDIS_USER", "GW_REDIS_USER"],
  MAGICTUNNEL_REDIS_PASSWORD_ENV: ["GW_REDIS_PASS", "GW_REDIS_PASS"],
  MAGICTUNNEL_REDIS_LOCK_LEASE: ["30", 30],
  MAGICTUNNEL_REDIS_COMMAND_TIMEOUT: ["2", 2],
  MAGICTUNNEL_TRACING_ENABLED: ["yes", true],
  MAGICTUNNEL_OTLP_ENDPOINT: ["http://collector:4318", "http://collector:4318"],
  MAGICTUNNEL_SERVICE_NAME: ["gateway", "gateway"],
  MAGICTUNNEL_METRICS_EXPORTER: ["prometheus", "prometheus"],
  MAGICTUNNEL_METRICS_EXPORT_INTERVAL: ["15", 15],
  MAGICTUNNEL_AUDIT_LOG_ENABLED: ["off", false],
  MAGICTUNNEL_AUDIT_LOG_PATH: ["/var/log/mt/audit.log", "/var/log/mt/audit.log"],
  MAGICTUNNEL_AUDIT_LOG_MAX_SIZE_MB: ["50", 50],
  MAGICTUNNEL_AUDIT_LOG_MAX_FILES: ["2", 2]
}

/** One refused value per variable. */
const badEnv: Record<string, string> = {
  MAGICTUNNEL_SESSION_PERSISTENCE_ENABLED: "maybe",
  MAGICTUNNEL_USER_CONTEXT_ENABLED: "2",
  MAGICTUNNEL_CUSTOM_SESSION_DIR: "~alice/sessions",
  MAGICTUNNEL_HOSTNAME_ISOLATION: "enabled",
  MAGICTUNNEL_TOKEN_STORAGE_ENABLED: "y",
  MAGICTUNNEL_TOKEN_STORAGE_BACKEND: "Keychain",
  MAGICTUNNEL_TOKEN_ENCRYPTION_ENABLED: "truth",
  MAGICTUNNEL_TOKEN_FILE_PERMISSIONS: "0644",
  MAGICTUNNEL_MAX_TOKENS_PER_PROVIDER: "0",
  MAGICTUNNEL_TOKEN_CLEANUP_INTERVAL: "1.5",
  MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_SOURCE: "vault",
  MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_FILE: "~bob/key",
  MAGICTUNNEL_KEYRING_TIMEOUT: "0",
  MAGICTUNNEL_SESSION_RECOVERY_ENABLED: "nope",
  MAGICTUNNEL_SESSION_RECOVERY_STARTUP: "10",
  MAGICTUNNEL_SESSION_VALIDATION_INTERVAL: "-5",
  MAGICTUNNEL_MAX_RECOVERY_ATTEMPTS: "many",
  MAGICTUNNEL_TOKEN_VALIDATION_TIMEOUT: "30s",
  MAGICTUNNEL_GRACEFUL_DEGRADATION: "t",
  MAGICTUNNEL_RETRY_FAILED_PROVIDERS: "enable",
  MAGICTUNNEL_TOKEN_REFRESH_ENABLED: "ja",
  MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD: "-1",
  MAGICTUNNEL_BACKGROUND_REFRESH_ENABLED: "11",
  MAGICTUNNEL_REFRESH_MAX_RETRY_ATTEMPTS: "101",
  MAGICTUNNEL_REFRESH_RETRY_DELAY_BASE: "0",
  MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT: "abc",
  MAGICTUNNEL_REFRESH_QUEUE_SIZE: "1000001",
  MAGICTUNNEL_REFRESH_TOKEN_ROTATION: "rotate",
  MAGICTUNNEL_REFRESH_TIMEOUT: "999999",
  MAGICTUNNEL_BACKGROUND_CHECK_INTERVAL: "0x10",
  MAGICTUNNEL_MAX_RETRY_AGE: "1e3",
  MAGICTUNNEL_REDIS_URL: "redis://user:hunter2@redis:6379", // refused, and never echoed
  MAGICTUNNEL_REDIS_KEY_PREFIX: "has space",
  MAGICTUNNEL_REDIS_TLS: "tls",
  MAGICTUNNEL_REDIS_USERNAME_ENV: "not-a-name",
  MAGICTUNNEL_REDIS_PASSWORD_ENV: "1PASS",
  MAGICTUNNEL_REDIS_LOCK_LEASE: "1",
  MAGICTUNNEL_REDIS_COMMAND_TIMEOUT: "0",
  MAGICTUNNEL_TRACING_ENABLED: "sometimes",
  MAGICTUNNEL_OTLP_ENDPOINT: "collector:4318",
  MAGICTUNNEL_SERVICE_NAME: "name\u0007",
  MAGICTUNNEL_METRICS_EXPORTER: "statsd",
  MAGICTUNNEL_METRICS_EXPORT_INTERVAL: "0",
  MAGICTUNNEL_AUDIT_LOG_ENABLED: "perhaps",
  MAGICTUNNEL_AUDIT_LOG_PATH: "~bob/audit.log",
  MAGICTUNNEL_AUDIT_LOG_MAX_SIZE_MB: "2048",
  MAGICTUNNEL_AUDIT_LOG_MAX_FILES: "-1"
}

const key32 = Buffer.alloc(32, 7).toString("base64")

const templateProvidersUncommented = (template: string): string => {
  const start = template.indexOf("  # oauth:\n")
  const end = template.indexOf("\n# ====", start)
  const block = template.slice(start, end).split("\n").map((line) => line.replace(/^ {2}# ?/, "  ")).join("\n")
  return template.slice(0, start) + block + template.slice(end)
}

layer(NodeFileSystem.layer)("SessionConfig", (it) => {
  describe("defaults and the environment", () => {
    it.effect("with no file and no environment, every key has its default and says so", () =>
      Effect.gen(function*() {
        const { result } = yield* loadWith({})
        const l = loaded(result)
        assert.deepStrictEqual(l.settings, SessionConfig.defaults().settings)
        assert.isTrue(Option.isNone(l.path))
        assert.isTrue(Option.isNone(l.encryptionKey))
        assert.strictEqual(l.providers.size, 0)
        assert.strictEqual(l.sources.size, SessionConfig.describeKeys().length)
        for (const [, source] of l.sources) assert.deepStrictEqual(source, { _tag: "default" })
        assert.strictEqual(effectiveAt(l, "token_storage.file_permissions"), "0600")
        assert.strictEqual(effectiveAt(l, "token_storage.storage_backend"), "auto")
        assert.strictEqual(l.settings.tokenStorage.filePermissions, 0o600)
      }))

    it.effect("every MAGICTUNNEL_* variable changes its key and is recorded as its source", () =>
      Effect.gen(function*() {
        const keys = SessionConfig.describeKeys()
        assert.deepStrictEqual(Object.keys(envCases).sort(), keys.map((k) => k.env).sort())
        for (const k of keys) {
          const [raw, expected] = envCases[k.env] ?? ["", undefined]
          const { result } = yield* loadWith({ env: { [k.env]: raw } })
          const l = loaded(result)
          assert.deepStrictEqual(effectiveAt(l, k.key), expected, k.env)
          assert.notDeepEqual(effectiveAt(l, k.key), k.default, `${k.env} must change ${k.key}`)
          assert.deepStrictEqual(l.sources.get(k.key), { _tag: "env", name: k.env })
          assert.strictEqual(SessionConfig.formatSource({ _tag: "env", name: k.env }), `env:${k.env}`)
        }
      }))

    it.effect("a bad value of any variable is refused, naming the variable and what it expects", () =>
      Effect.gen(function*() {
        for (const k of SessionConfig.describeKeys()) {
          const raw = badEnv[k.env]
          assert.isDefined(raw, k.env)
          const { result } = yield* loadWith({ env: { [k.env]: raw } })
          const error = failure(result)
          assert.strictEqual(error.problems.length, 1, error.message)
          const [problem] = error.problems
          assert.strictEqual(problem?.source, `env:${k.env}`)
          assert.strictEqual(problem?.key, `auth.session_persistence.${k.key}`)
          assert.include(error.message, `(env:${k.env}): expected `)
          assert.notInclude(error.message, "hunter2", "a password in a refused Redis URL is never echoed")
        }
      }))

    it.effect("all bad variables at once are reported together, one line each", () =>
      Effect.gen(function*() {
        const { result } = yield* loadWith({ env: badEnv })
        const error = failure(result)
        assert.strictEqual(error.problems.length, Object.keys(badEnv).length)
        assert.strictEqual(error.message.split("\n").length, Object.keys(badEnv).length)
        assert.include(
          error.message,
          "auth.session_persistence.token_refresh.concurrent_refresh_limit (env:MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT): expected an integer between 1 and 1000, got \"abc\""
        )
      }))

    it.effect("an empty variable counts as unset", () =>
      Effect.gen(function*() {
        const { result } = yield* loadWith({ env: { MAGICTUNNEL_TOKEN_STORAGE_BACKEND: "" } })
        assert.deepStrictEqual(loaded(result).sources.get("token_storage.storage_backend"), { _tag: "default" })
      }))

    it.effect("the environment overrides the file, which overrides the default", () =>
      Effect.gen(function*() {
        const yaml = "auth:\n  session_persistence:\n    token_refresh:\n      refresh_threshold_minutes: 20\n      refresh_timeout_seconds: 40\n"
        const { result, cwd } = yield* loadWith({
          files: { "config.yaml": yaml },
          env: { MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD: "25" }
        })
        const l = loaded(result)
        assert.strictEqual(l.settings.tokenRefresh.refreshThresholdMinutes, 25)
        assert.strictEqual(l.settings.tokenRefresh.refreshTimeoutSeconds, 40)
        assert.strictEqual(l.settings.tokenRefresh.concurrentRefreshLimit, 5)
        assert.deepStrictEqual(l.sources.get("token_refresh.refresh_threshold_minutes"), {
          _tag: "env",
          name: "MAGICTUNNEL_TOKEN_REFRESH_THRESHOLD"
        })
        assert.deepStrictEqual(l.sources.get("token_refresh.refresh_timeout_seconds"), {
          _tag: "file",
          path: NodePath.join(cwd, "config.yaml"),
          line: 5
        })
        assert.deepStrictEqual(l.sources.get("token_refresh.concurrent_refresh_limit"), { _tag: "default" })
      }))

    it.effect("the seed's environment example loads, every variable in it taking effect", () =>
      Effect.gen(function*() {
        const env: Record<string, string> = {}
        for (const m of fixture("seed-environment.sh").matchAll(/^export (\w+)="([^"]*)"$/gm)) env[m[1] ?? ""] = m[2] ?? ""
        assert.isAtLeast(Object.keys(env).length, 13)
        const l = loaded((yield* loadWith({ env })).result)
        const byEnv = new Map(SessionConfig.describeKeys().map((k) => [k.env, k.key]))
        for (const name of Object.keys(env)) {
          assert.deepStrictEqual(l.sources.get(byEnv.get(name) ?? name), { _tag: "env", name })
        }
        assert.strictEqual(l.settings.userContext.sessionDirectory, "./data/sessions")
      }))
  })

  describe("the encryption key", () => {
    it.effect("MAGICTUNNEL_TOKEN_ENCRYPTION_KEY holds base64 of 32 bytes and stays redacted", () =>
      Effect.gen(function*() {
        const l = loaded((yield* loadWith({ env: { MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: key32 } })).result)
        assert.isTrue(Option.isSome(l.encryptionKey))
        if (Option.isSome(l.encryptionKey)) {
          assert.deepStrictEqual(Redacted.value(l.encryptionKey.value), new Uint8Array(Buffer.alloc(32, 7)))
          assert.notInclude(String(l.encryptionKey.value), key32)
        }
        assert.notInclude(JSON.stringify(l.effective), key32)
        const url = loaded((yield* loadWith({ env: { MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: Buffer.alloc(32, 255).toString("base64url") } })).result)
        assert.isTrue(Option.isSome(url.encryptionKey))
      }))

    it.effect("a malformed key is refused by name, and the value is never shown", () =>
      Effect.gen(function*() {
        for (const bad of [Buffer.alloc(16, 9).toString("base64"), "not base64 at all!", `${key32}AAAA`]) {
          const error = failure((yield* loadWith({ env: { MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: bad } })).result)
          assert.include(error.message, "env:MAGICTUNNEL_TOKEN_ENCRYPTION_KEY")
          assert.include(error.message, "32 bytes")
          assert.notInclude(error.message, bad)
        }
      }))

    it.effect("key material in the YAML file is refused without echoing it", () =>
      Effect.gen(function*() {
        const yaml = `auth:\n  session_persistence:\n    token_storage:\n      encryption_key: "${key32}"\n`
        const error = failure((yield* loadWith({ files: { "config.yaml": yaml } })).result)
        assert.include(error.message, "auth.session_persistence.token_storage.encryption_key (config.yaml:4)")
        assert.include(error.message, "MAGICTUNNEL_TOKEN_ENCRYPTION_KEY")
        assert.notInclude(error.message, key32)
      }))

    it.effect("encryption_key_source env without the key is refused when the file store may run", () =>
      Effect.gen(function*() {
        const error = failure(
          (yield* loadWith({ env: { MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_SOURCE: "env" } })).result
        )
        assert.include(error.message, "(env:MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_SOURCE): expected MAGICTUNNEL_TOKEN_ENCRYPTION_KEY")
        const keychain = yield* loadWith({
          env: { MAGICTUNNEL_TOKEN_ENCRYPTION_KEY_SOURCE: "env", MAGICTUNNEL_TOKEN_STORAGE_BACKEND: "keychain" }
        })
        loaded(keychain.result)
      }))
  })

  describe("the YAML file", () => {
    it.effect("every YAML example of the seed loads unchanged", () =>
      Effect.gen(function*() {
        const dev = loaded((yield* loadWith({ files: { "config.yaml": fixture("seed-basic-development.yaml") } })).result)
        assert.strictEqual(dev.settings.tokenStorage.storageBackend, "filesystem")
        assert.strictEqual(dev.settings.userContext.sessionDirectory, "./data/sessions")
        assert.strictEqual(dev.sources.get("token_storage.storage_backend")?._tag, "file")
        assert.deepStrictEqual(dev.warnings, [])
        const prod = loaded((yield* loadWith({ files: { "config.yaml": fixture("seed-production.yaml") } })).result)
        assert.strictEqual(prod.settings.tokenStorage.storageBackend, "auto")
        assert.isTrue(prod.settings.tokenRefresh.enableRefreshTokenRotation)
        const line = prod.sources.get("token_storage.storage_backend")
        assert.isTrue(line?._tag === "file" && line.line === 10)
      }))

    it.effect("config.yaml.template loads as-is, sets every key to its default and names every variable", () =>
      Effect.gen(function*() {
        const template = repoFile("config.yaml.template")
        const l = loaded((yield* loadWith({ files: { "config.yaml": template } })).result)
        assert.deepStrictEqual(l.settings, SessionConfig.defaults().settings)
        assert.deepStrictEqual(l.warnings, [])
        for (const k of SessionConfig.describeKeys()) {
          assert.strictEqual(l.sources.get(k.key)?._tag, "file", `${k.key} is documented in the template`)
          assert.include(template, k.env)
        }
        assert.include(template, SessionConfig.encryptionKeyEnv)
        assert.include(template, SessionConfig.configPathEnv)
      }))

    it.effect("the template's provider examples are valid once uncommented", () =>
      Effect.gen(function*() {
        const text = templateProvidersUncommented(repoFile("config.yaml.template"))
        const { result } = yield* loadWith({
          files: { "config.yaml": text },
          env: { GOOGLE_CLIENT_SECRET: "GOCSPX-example-secret" }
        })
        const l = loaded(result)
        assert.deepStrictEqual([...l.providers.keys()].sort(), ["corp-sso", "entra", "github", "google", "local-dev"])
        assert.deepStrictEqual(l.providers.get("entra")?.scopes, [
          "openid",
          "profile",
          "offline_access",
          "api://magictunnel/.default"
        ])
      }))

    it.effect("magictunnel-config.yaml loads and validates, with its providers", () =>
      Effect.gen(function*() {
        const l = loaded((yield* loadWith({ files: { "magictunnel-config.yaml": repoFile("magictunnel-config.yaml") } })).result)
        assert.isAtLeast(l.providers.size, 1)
        const github = l.providers.get("github")
        assert.deepStrictEqual(github?.tokenEndpoint, Option.some("https://github.com/login/oauth/access_token"))
        assert.deepStrictEqual(github?.scopes, ["read:user"])
      }))

    it.effect("MagicTunnel's other sections, and other keys under auth.oauth, are ignored", () =>
      Effect.gen(function*() {
        const yaml = [
          "server:",
          "  host: 0.0.0.0",
          "  unknown_thing: [1, 2]",
          "auth:",
          "  enabled: true",
          "  type: oauth",
          "  oauth:",
          "    provider: github",
          "    client_secret: \"legacy secret, not ours\"",
          "  session_persistence:",
          "    enabled: false"
        ].join("\n")
        const l = loaded((yield* loadWith({ files: { "config.yaml": yaml } })).result)
        assert.isFalse(l.settings.enabled)
      }))

    it.effect("a typo is reported with file:line and the nearest known key", () =>
      Effect.gen(function*() {
        const yaml = [
          "auth:",
          "  session_persistence:",
          "    token_storage:",
          "      storage_backnd: filesystem",
          "    user_context:",
          "      storage_backend: memory",
          "    token_refesh:",
          "      enabled: true"
        ].join("\n")
        const error = failure((yield* loadWith({ files: { "config.yaml": yaml } })).result)
        const lines = error.message.split("\n")
        assert.deepStrictEqual(lines, [
          "auth.session_persistence.token_storage.storage_backnd (config.yaml:4): expected a known key (did you mean storage_backend?)",
          "auth.session_persistence.user_context.storage_backend (config.yaml:6): expected a known key (did you mean token_storage.storage_backend?)",
          "auth.session_persistence.token_refesh (config.yaml:7): expected a known key (did you mean token_refresh?)"
        ])
      }))

    it.effect("wrong types are reported with file:line and the value found", () =>
      Effect.gen(function*() {
        const yaml = [
          "auth:",
          "  session_persistence:",
          "    enabled: \"yes\"",
          "    user_context: true",
          "    token_storage:",
          "      storage_backend: vault",
          "      max_tokens_per_provider: 2.5",
          "    token_refresh:",
          "      concurrent_refresh_limit: \"abc\"",
          "      refresh_queue_size: [1]"
        ].join("\n")
        const { result } = yield* loadWith({ files: { "config.yaml": yaml }, env: { MAGICTUNNEL_KEYRING_TIMEOUT: "forever" } })
        const error = failure(result)
        assert.deepStrictEqual(error.message.split("\n"), [
          "auth.session_persistence.enabled (config.yaml:3): expected true or false, got \"yes\"",
          "auth.session_persistence.user_context (config.yaml:4): expected a mapping, got true",
          "auth.session_persistence.token_storage.storage_backend (config.yaml:6): expected one of auto, keychain, credential_manager, secret_service, filesystem, memory, redis, got \"vault\"",
          "auth.session_persistence.token_storage.max_tokens_per_provider (config.yaml:7): expected an integer between 1 and 10000, got 2.5",
          "auth.session_persistence.token_refresh.concurrent_refresh_limit (config.yaml:9): expected an integer between 1 and 1000, got \"abc\"",
          "auth.session_persistence.token_refresh.refresh_queue_size (config.yaml:10): expected an integer between 1 and 1000000, got a list",
          "auth.session_persistence.token_storage.keyring_timeout_seconds (env:MAGICTUNNEL_KEYRING_TIMEOUT): expected an integer between 1 and 300, got \"forever\""
        ])
      }))

    it.effect("file_permissions accepts octal modes in every usual spelling and refuses unsafe ones", () =>
      Effect.gen(function*() {
        const yamlWith = (v: string) => `auth:\n  session_persistence:\n    token_storage:\n      file_permissions: ${v}\n`
        for (const [v, mode] of [["\"0600\"", 0o600], ["\"600\"", 0o600], ["600", 0o600], ["0o600", 0o600], ["\"0o700\"", 0o700], ["0600", 0o600]] as const) {
          const l = loaded((yield* loadWith({ files: { "config.yaml": yamlWith(v) } })).result)
          assert.strictEqual(l.settings.tokenStorage.filePermissions, mode, v)
        }
        for (const v of ["\"0644\"", "640", "\"0400\"", "\"1600\"", "\"rw-------\"", "true", "0o666"]) {
          const error = failure((yield* loadWith({ files: { "config.yaml": yamlWith(v) } })).result)
          assert.include(error.message, "auth.session_persistence.token_storage.file_permissions (config.yaml:4): expected an octal file mode", v)
        }
      }))

    it.effect("invalid YAML is reported with file and line", () =>
      Effect.gen(function*() {
        const yaml = "auth:\n  session_persistence:\n    enabled: true\n    enabled: false\n  oauth: \"unterminated\n"
        const error = failure((yield* loadWith({ files: { "config.yaml": yaml } })).result)
        assert.match(error.message, /^yaml \(config\.yaml:4\): expected valid YAML \(Map keys must be unique\)$/m)
        assert.match(error.message, /\(config\.yaml:\d+\): expected valid YAML \(Missing closing "quote\)/)
      }))

    it.effect("a top-level document that is not a mapping is refused; an empty file is no configuration", () =>
      Effect.gen(function*() {
        const error = failure((yield* loadWith({ files: { "config.yaml": "- a\n- b\n" } })).result)
        assert.include(error.message, "(top level) (config.yaml:1): expected a mapping, got a list")
        const empty = loaded((yield* loadWith({ files: { "config.yaml": "# nothing yet\n" } })).result)
        assert.deepStrictEqual(empty.settings, SessionConfig.defaults().settings)
      }))

    it.effect("a misspelt MAGICTUNNEL_* variable and a misplaced section are warned about", () =>
      Effect.gen(function*() {
        const l = loaded((yield* loadWith({
          files: { "config.yaml": "session_persistence:\n  enabled: false\n" },
          env: { MAGICTUNNEL_TOKEN_STORAGE_BACKEN: "memory", MAGICTUNNEL_LOG_LEVEL: "debug" }
        })).result)
        assert.deepStrictEqual(l.warnings, [
          "config.yaml:1: a top-level session_persistence is ignored; it belongs under auth:",
          "MAGICTUNNEL_TOKEN_STORAGE_BACKEN is not a variable this package reads; did you mean MAGICTUNNEL_TOKEN_STORAGE_BACKEND?"
        ])
        assert.isTrue(l.settings.enabled)
      }))
  })

  describe("finding the file", () => {
    const marker = (n: number) => `auth:\n  session_persistence:\n    token_refresh:\n      concurrent_refresh_limit: ${n}\n`
    const limitOf = (r: Result.Result<SessionConfig.Loaded, SessionConfig.ConfigError>) =>
      loaded(r).settings.tokenRefresh.concurrentRefreshLimit

    it.effect("search order: ./magictunnel-config.yaml, ./config.yaml, XDG, ~/.magictunnel", () =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const { cwd, home, root } = yield* scratch({
          "magictunnel-config.yaml": marker(1),
          "config.yaml": marker(2),
          "~/.config/magictunnel/config.yaml": marker(3),
          "~/.magictunnel/config.yaml": marker(4)
        })
        const env: Env = {}
        const load = (e: Env = env) => SessionConfig.load({ env: e, cwd, home }).pipe(Effect.result)
        const first = yield* load()
        assert.strictEqual(limitOf(first), 1)
        assert.deepStrictEqual(loaded(first).path, Option.some(NodePath.join(cwd, "magictunnel-config.yaml")))
        yield* fs.remove(NodePath.join(cwd, "magictunnel-config.yaml"))
        assert.strictEqual(limitOf(yield* load()), 2)
        yield* fs.remove(NodePath.join(cwd, "config.yaml"))
        assert.strictEqual(limitOf(yield* load()), 3)
        // XDG_CONFIG_HOME replaces ~/.config when it is absolute.
        const xdg = NodePath.join(root, "xdg")
        yield* fs.makeDirectory(NodePath.join(xdg, "magictunnel"), { recursive: true })
        yield* fs.writeFileString(NodePath.join(xdg, "magictunnel", "config.yaml"), marker(5))
        assert.strictEqual(limitOf(yield* load({ XDG_CONFIG_HOME: xdg })), 5)
        assert.strictEqual(limitOf(yield* load({ XDG_CONFIG_HOME: "relative/xdg" })), 3)
        yield* fs.remove(NodePath.join(home, ".config"), { recursive: true })
        assert.strictEqual(limitOf(yield* load()), 4)
        yield* fs.remove(NodePath.join(home, ".magictunnel"), { recursive: true })
        const none = loaded(yield* load())
        assert.isTrue(Option.isNone(none.path))
        assert.deepStrictEqual(SessionConfig.searchPath({ env, cwd, home }), [
          NodePath.join(cwd, "magictunnel-config.yaml"),
          NodePath.join(cwd, "config.yaml"),
          NodePath.join(home, ".config", "magictunnel", "config.yaml"),
          NodePath.join(home, ".magictunnel", "config.yaml")
        ])
      }))

    it.effect("--config wins over MAGICTUNNEL_CONFIG_PATH, which wins over the search", () =>
      Effect.gen(function*() {
        const files = { "config.yaml": marker(1), "from-env.yaml": marker(2), "~/flag.yaml": marker(3) }
        const viaEnv = yield* loadWith({ files, env: { MAGICTUNNEL_CONFIG_PATH: "from-env.yaml" } })
        assert.strictEqual(limitOf(viaEnv.result), 2)
        const viaFlag = yield* loadWith({ files, env: { MAGICTUNNEL_CONFIG_PATH: "from-env.yaml" }, configPath: "~/flag.yaml" })
        assert.strictEqual(limitOf(viaFlag.result), 3)
        assert.deepStrictEqual(loaded(viaFlag.result).path, Option.some(NodePath.join(viaFlag.home, "flag.yaml")))
      }))

    it.effect("an explicit path that does not exist is an error naming where it came from", () =>
      Effect.gen(function*() {
        const files = { "config.yaml": marker(1) }
        const flag = failure((yield* loadWith({ files, configPath: "missing.yaml" })).result)
        assert.match(flag.message, /^config file \(--config\): expected a readable YAML file at .*missing\.yaml \(it does not exist\)$/)
        const env = failure((yield* loadWith({ files, env: { MAGICTUNNEL_CONFIG_PATH: "/nonexistent/mt.yaml" } })).result)
        assert.strictEqual(
          env.message,
          "config file (env:MAGICTUNNEL_CONFIG_PATH): expected a readable YAML file at /nonexistent/mt.yaml (it does not exist)"
        )
        const dir = failure((yield* loadWith({ files, configPath: "." })).result)
        assert.include(dir.message, "(it is a directory, not a file)")
      }))
  })

  describe("providers", () => {
    const secret = "s3cr3t-client-secret-value"
    const providerYaml = (body: ReadonlyArray<string>) =>
      ["auth:", "  oauth:", "    providers:", ...body.map((l) => `      ${l}`)].join("\n")

    it.effect("a provider is decoded; its secret comes from the named variable and stays redacted", () =>
      Effect.gen(function*() {
        const yaml = providerYaml([
          "google:",
          "  issuer: https://accounts.google.com",
          "  client_id: 1234.apps.googleusercontent.com",
          "  client_secret_env: GOOGLE_SECRET",
          "  scopes: openid email  profile",
          "local:",
          "  token_endpoint: http://127.0.0.1:9000/token",
          "  revocation_endpoint: http://localhost:9000/revoke",
          "  introspection_endpoint: http://[::1]:9000/introspect",
          "  client_id: 42",
          "  scopes: [a, b, a]",
          "  resource: https://mcp.example.com/api",
          "  redirect_port: 8765"
        ])
        const l = loaded((yield* loadWith({ files: { "config.yaml": yaml }, env: { GOOGLE_SECRET: secret } })).result)
        const google = l.providers.get("google")
        assert.isDefined(google)
        assert.deepStrictEqual(google?.issuer, Option.some("https://accounts.google.com"))
        assert.deepStrictEqual(google?.scopes, ["openid", "email", "profile"])
        assert.strictEqual(google?.redirectPort, 0)
        const value = google !== undefined && Option.isSome(google.clientSecret) ? Redacted.value(google.clientSecret.value) : undefined
        assert.strictEqual(value, secret)
        assert.notInclude(String(google?.clientSecret), secret)
        assert.notInclude(JSON.stringify(l.effective), secret)
        const local = l.providers.get("local")
        assert.strictEqual(local?.clientId, "42")
        assert.deepStrictEqual(local?.scopes, ["a", "b"])
        assert.deepStrictEqual(local?.resource, Option.some("https://mcp.example.com/api"))
        assert.strictEqual(local?.redirectPort, 8765)
        assert.isTrue(Option.isNone(local?.issuer ?? Option.some("")))
      }))

    it.effect("a missing secret variable, a literal client_secret and other mistakes are all reported; no secret is shown", () =>
      Effect.gen(function*() {
        const yaml = providerYaml([
          "github:",
          "  token_endpoint: https://github.com/login/oauth/access_token",
          "  client_id: abc",
          "  client_secret_env: GITHUB_SECRET",
          "corp:",
          "  issuer: http://sso.example.com",
          "  client_id: corp",
          `  client_secret: ${secret}`,
          "  scope: openid",
          "bad name!:",
          "  issuer: https://example.com",
          "  client_id: x",
          "noendpoint:",
          "  client_id: x",
          "  redirect_port: 70000",
          "nocid:",
          "  issuer: https://user:pw@example.com/"
        ])
        const { result } = yield* loadWith({
          files: { "config.yaml": yaml },
          env: { OTHER: secret, MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT: "x" }
        })
        const error = failure(result)
        assert.notInclude(error.message, secret)
        assert.notInclude(error.message, "user:pw")
        const lines = error.message.split("\n")
        const expected = [
          "auth.oauth.providers.github.client_secret_env (config.yaml:7): expected the environment variable GITHUB_SECRET to hold the client secret, got nothing (GITHUB_SECRET is not set)",
          "auth.oauth.providers.corp.issuer (config.yaml:9): expected an absolute https:// URL (http:// only for loopback hosts: 127.0.0.0/8, [::1], localhost), got \"http://sso.example.com\"",
          "auth.oauth.providers.corp.client_secret (config.yaml:11): expected no client secret in the file: put it in an environment variable and name that variable with client_secret_env",
          "auth.oauth.providers.corp.scope (config.yaml:12): expected a known key (did you mean scopes?)",
          "auth.oauth.providers.bad name! (config.yaml:13): expected a provider name of letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)",
          "auth.oauth.providers.noendpoint.redirect_port (config.yaml:18): expected an integer between 0 and 65535 (0: any free port), got 70000",
          "auth.oauth.providers.noendpoint (config.yaml:16): expected an issuer (for discovery, RFC 8414) or a token_endpoint",
          "auth.oauth.providers.nocid.issuer (config.yaml:20): expected a URL without user:password@ in it",
          "auth.oauth.providers.nocid.client_id (config.yaml:19): expected a client_id (required), got nothing",
          "auth.session_persistence.token_refresh.concurrent_refresh_limit (env:MAGICTUNNEL_CONCURRENT_REFRESH_LIMIT): expected an integer between 1 and 1000, got \"x\""
        ]
        for (const line of expected) assert.include(lines, line)
        assert.strictEqual(lines.length, expected.length, error.message)
      }))

    it.effect("http:// is refused for any non-loopback host, whatever the endpoint", () =>
      Effect.gen(function*() {
        for (const url of ["http://example.com", "http://10.0.0.1/token", "http://localhost.evil.com/", "http://[::2]/", "ftp://127.0.0.1/"]) {
          const yaml = providerYaml(["p:", `  token_endpoint: ${url}`, "  client_id: c"])
          const error = failure((yield* loadWith({ files: { "config.yaml": yaml } })).result)
          assert.include(error.message, "auth.oauth.providers.p.token_endpoint (config.yaml:5): expected an absolute https:// URL", url)
        }
        for (const url of ["http://127.0.0.2:8080/token", "http://LOCALHOST/token", "https://example.com/token"]) {
          const yaml = providerYaml(["p:", `  token_endpoint: ${url}`, "  client_id: c"])
          loaded((yield* loadWith({ files: { "config.yaml": yaml } })).result)
        }
      }))
  })

  describe("test layers", () => {
    it.effect("layerWith overrides settings and keeps the effective tree in step", () =>
      Effect.gen(function*() {
        const l = yield* SessionConfig.SessionConfig
        assert.strictEqual(l.settings.userContext.sessionDirectory, "/tmp/elsewhere")
        assert.strictEqual(effectiveAt(l, "user_context.session_directory"), "/tmp/elsewhere")
        assert.strictEqual(effectiveAt(l, "token_storage.storage_backend"), "memory")
      }).pipe(Effect.provide(SessionConfig.layerWith((s) => ({
        ...s,
        userContext: { ...s.userContext, sessionDirectory: "/tmp/elsewhere" },
        tokenStorage: { ...s.tokenStorage, storageBackend: "memory" }
      })))))

    it.effect("layerFromEnv reads the given environment, not the process's", () =>
      Effect.gen(function*() {
        const { cwd, home } = yield* scratch()
        const l = yield* SessionConfig.SessionConfig.pipe(
          Effect.provide(
            SessionConfig.layerFromEnv({ env: { MAGICTUNNEL_TOKEN_STORAGE_BACKEND: "memory" }, cwd, home }).pipe(
              Layer.provide(NodeFileSystem.layer)
            )
          )
        )
        assert.strictEqual(l.settings.tokenStorage.storageBackend, "memory")
        const d = yield* SessionConfig.SessionConfig.pipe(Effect.provide(SessionConfig.layerDefaults))
        assert.deepStrictEqual(d.settings, SessionConfig.defaults().settings)
      }))
  })
})

describe("SessionConfig.describeKeys", () => {
  it("docs/configuration.md lists every key with its default and variable", () => {
    const rows = [...repoFile("docs/configuration.md").matchAll(/^\| `([a-z_.]+)` \| `([^`]+)` \| `(MAGICTUNNEL_\w+)` \|/gm)]
    assert.deepStrictEqual(
      rows.map((m) => [m[1], m[2], m[3]]),
      SessionConfig.describeKeys().map((k) => [k.key, JSON.stringify(k.default), k.env])
    )
  })

  it("covers the reference table and the product's keys, each with its own variable", () => {
    const keys = SessionConfig.describeKeys()
    assert.strictEqual(keys.length, 47)
    assert.strictEqual(new Set(keys.map((k) => k.env)).size, keys.length)
    assert.isTrue(keys.every((k) => k.env.startsWith("MAGICTUNNEL_")))
  })
})
