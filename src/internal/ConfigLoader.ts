/**
 * ConfigLoader: finds the configuration file, reads `auth.session_persistence`
 * and `auth.oauth.providers` from it, lays the `MAGICTUNNEL_*` environment over
 * it (env over file over default) and returns {@link Loaded} with the origin of
 * every value. Every problem is collected and reported at once, each naming
 * the key, `file:line` or `env:NAME`, and what was expected.
 *
 * Only the two sections above are checked strictly; the rest of MagicTunnel's
 * file is not this package's business and is ignored.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type { Node } from "yaml"
import {
  ConfigError,
  type ConfigProblem,
  type Loaded,
  type ProviderSettings,
  type ValueSource
} from "../SessionConfig.js"
import * as ConfigFile from "./ConfigFile.js"
import * as Keys from "./ConfigKeys.js"
import * as Suggest from "./ConfigSuggest.js"
import type * as Values from "./ConfigValues.js"
import * as Providers from "./ConfigProviders.js"
import * as Yaml from "./ConfigYaml.js"

/** What the loader reads: explicit, so tests pass their own environment and directories. */
export type Options = ConfigFile.Options

/** The files tried, in order, when neither `--config` nor `MAGICTUNNEL_CONFIG_PATH` names one. */
export const searchPath = ConfigFile.searchPath

const prefix = "auth.session_persistence"

const nonEmpty = ConfigFile.nonEmpty

/** A refused Redis URL is not echoed: it may carry a password. */
const unshownUrl = "a value not shown (a URL may carry a password)"

/** Loads the configuration: locate, read, decode. */
export const load = Effect.fn("SessionConfig.load")(function*(options: Options) {
  const located = yield* ConfigFile.locate(options)
  if (Option.isNone(located)) return yield* Effect.fromResult(decode({ env: options.env }))
  const text = yield* ConfigFile.read(located.value)
  yield* Effect.annotateCurrentSpan("config.path", located.value.path)
  return yield* Effect.fromResult(decode({ env: options.env, file: { ...located.value, text } }))
})

/** Decodes file text and environment into {@link Loaded}, or every problem found. */
export const decode = (input: {
  readonly env: Readonly<Record<string, string | undefined>>
  readonly file?: ConfigFile.Located & { readonly text: string }
}): Result.Result<Loaded, ConfigError> => {
  const { env, file } = input
  const problems: Array<ConfigProblem> = []
  const warnings: Array<string> = []
  const at = (line: number) => `${file?.display ?? "config"}:${line}`
  const sink: Providers.Sink = { problem: (p) => problems.push(p), at }

  let sessionNode: { readonly node: Node | null; readonly line: number } | undefined
  let providersNode: Node | null = null
  let parsed: Yaml.Parsed | undefined
  if (file !== undefined) {
    parsed = Yaml.parse(file.text)
    for (const e of parsed.errors) {
      problems.push({ key: "yaml", source: at(e.line), expected: `valid YAML (${e.message})` })
    }
    for (const w of parsed.warnings) warnings.push(`${at(w.line)}: ${w.message}`)
    if (parsed.errors.length === 0) {
      const sections = locateSections(parsed, sink, warnings)
      sessionNode = sections.session
      providersNode = sections.providers
    }
  }

  const fileEntries = new Map<string, Yaml.Entry>()
  if (parsed !== undefined && sessionNode !== undefined) {
    walkSession(parsed, sessionNode.node, sessionNode.line, fileEntries, sink)
  }

  const sources = new Map<string, ValueSource>()
  const valueOf = <A>(leaf: Values.Leaf<A>): A => {
    const key = `${prefix}.${leaf.key}`
    let fromFile: Option.Option<A> = Option.none()
    const entry = fileEntries.get(leaf.key)
    if (entry !== undefined) {
      const scalar = Yaml.scalar(entry.value)
      const decoded = scalar === undefined ? Result.fail(leaf.accepts()) : leaf.fromYaml(scalar)
      if (Result.isSuccess(decoded)) fromFile = Option.some(decoded.success)
      else {
        problems.push({
          key,
          source: at(entry.line),
          expected: decoded.failure,
          actual: leaf.key === Keys.leaves.redis.url.key ? unshownUrl : Yaml.describe(entry.value)
        })
      }
    }
    const raw = env[leaf.env]
    if (nonEmpty(raw)) {
      const decoded = leaf.fromEnv(raw)
      if (Result.isSuccess(decoded)) {
        sources.set(leaf.key, { _tag: "env", name: leaf.env })
        return decoded.success
      }
      problems.push({
        key,
        source: `env:${leaf.env}`,
        expected: decoded.failure,
        actual: leaf.key === Keys.leaves.redis.url.key ? unshownUrl : Yaml.describeValue(raw)
      })
    }
    if (Option.isSome(fromFile) && entry !== undefined && file !== undefined) {
      sources.set(leaf.key, { _tag: "file", path: file.path, line: entry.line })
      return fromFile.value
    }
    sources.set(leaf.key, { _tag: "default" })
    return leaf.default
  }
  const settings = Keys.settingsOf(valueOf)

  const encryptionKey = decodeEncryptionKey(env[Keys.encryptionKeyEnv], sink)
  const ts = settings.tokenStorage
  const fileStoreMayRun = settings.enabled && ts.enabled && ts.encryptionEnabled &&
    (ts.storageBackend === "auto" || ts.storageBackend === "filesystem" || ts.storageBackend === "redis")
  if (ts.encryptionKeySource === "env" && Option.isNone(encryptionKey) && fileStoreMayRun) {
    const source = sources.get(Keys.leaves.tokenStorage.encryptionKeySource.key)
    problems.push({
      key: `${prefix}.${Keys.leaves.tokenStorage.encryptionKeySource.key}`,
      source: source?._tag === "file" ? at(source.line) : source?._tag === "env" ? `env:${source.name}` : "default",
      expected: `${Keys.encryptionKeyEnv} to be set when the key source is env (base64 of 32 bytes)`,
      actual: "nothing"
    })
  }
  // Every instance of a fleet must open every record: a key created per machine by `auto` would not.
  if (
    settings.enabled && ts.enabled && ts.encryptionEnabled && ts.storageBackend === "redis" &&
    ts.encryptionKeySource === "auto" && Option.isNone(encryptionKey)
  ) {
    problems.push({
      key: `${prefix}.${Keys.leaves.tokenStorage.encryptionKeySource.key}`,
      source: "default",
      expected:
        `${Keys.encryptionKeyEnv} to be set (every instance needs the same key) when storage_backend is redis, or encryption_key_source keyring or file set explicitly`,
      actual: "nothing"
    })
  }
  warnings.push(...advisories(settings, env))

  const providers: ReadonlyMap<string, ProviderSettings> = parsed !== undefined && providersNode !== null
    ? Providers.decode(parsed, providersNode, env, sink)
    : new Map()

  if (problems.length > 0) return Result.fail(new ConfigError({ problems: ordered(problems, `${file?.display ?? "config"}:`) }))
  return Result.succeed({
    settings,
    providers,
    path: Option.fromUndefinedOr(file?.path),
    sources,
    effective: Keys.effectiveOf(settings),
    encryptionKey,
    warnings,
    redisCredentials: {
      username: Option.filter(Option.fromUndefinedOr(env[settings.redis.usernameEnv]), nonEmpty),
      password: Option.map(
        Option.filter(Option.fromUndefinedOr(env[settings.redis.passwordEnv]), nonEmpty),
        (p) => Redacted.make(p, { label: settings.redis.passwordEnv })
      )
    }
  })
}

/** Finds `auth.session_persistence` and `auth.oauth.providers`, checking only that the parents are mappings. */
const locateSections = (parsed: Yaml.Parsed, sink: Providers.Sink, warnings: Array<string>) => {
  const out: { session?: { readonly node: Node | null; readonly line: number }; providers: Node | null } = {
    providers: null
  }
  const mapping = (key: string, node: Node | null, line: number): boolean => {
    if (Yaml.isEmpty(node)) return false
    if (Yaml.isMapping(node)) return true
    sink.problem({ key, source: sink.at(line), expected: "a mapping", actual: Yaml.describe(node) })
    return false
  }
  if (!mapping("(top level)", parsed.root, parsed.lineOf(parsed.root, 1))) return out
  const top = Yaml.entries(parsed, parsed.root, 1)
  const misplaced = top.find((e) => e.name === "session_persistence")
  if (misplaced !== undefined) {
    warnings.push(`${sink.at(misplaced.keyLine)}: a top-level session_persistence is ignored; it belongs under auth:`)
  }
  const auth = top.find((e) => e.name === "auth")
  if (auth === undefined || !mapping("auth", auth.value, auth.line)) return out
  const authEntries = Yaml.entries(parsed, auth.value, auth.line)
  const session = authEntries.find((e) => e.name === "session_persistence")
  if (session !== undefined) out.session = { node: session.value, line: session.line }
  const oauth = authEntries.find((e) => e.name === "oauth")
  if (oauth !== undefined && mapping("auth.oauth", oauth.value, oauth.line)) {
    const providers = Yaml.entries(parsed, oauth.value, oauth.line).find((e) => e.name === "providers")
    if (providers !== undefined && mapping("auth.oauth.providers", providers.value, providers.line)) {
      out.providers = providers.value
    }
  }
  return out
}

const keyMaterialExpected =
  `no key material in the file: set ${Keys.encryptionKeyEnv} in the environment, or use token_storage.encryption_key_source keyring or file`

/** Collects the leaves written in the file and reports every unknown key (at any depth) under session_persistence. */
const walkSession = (
  parsed: Yaml.Parsed,
  node: Node | null,
  line: number,
  found: Map<string, Yaml.Entry>,
  sink: Providers.Sink
): void => {
  const leaves = new Map(Keys.allLeaves().map((l) => [l.key, l]))
  const children = new Map<string, Set<string>>()
  for (const key of leaves.keys()) {
    const parts = key.split(".")
    for (let i = 0; i < parts.length; i++) {
      const parent = parts.slice(0, i).join(".")
      const set = children.get(parent) ?? new Set<string>()
      set.add(parts[i] ?? "")
      children.set(parent, set)
    }
  }
  const walk = (section: string, value: Node | null, valueLine: number): void => {
    const full = section === "" ? prefix : `${prefix}.${section}`
    if (Yaml.isEmpty(value)) return
    if (!Yaml.isMapping(value)) {
      sink.problem({ key: full, source: sink.at(valueLine), expected: "a mapping", actual: Yaml.describe(value) })
      return
    }
    const siblings = [...(children.get(section) ?? [])]
    for (const entry of Yaml.entries(parsed, value, valueLine)) {
      const dotted = section === "" ? entry.name : `${section}.${entry.name}`
      if (leaves.has(dotted)) {
        found.set(dotted, entry)
      } else if (children.has(dotted)) {
        walk(dotted, entry.value, entry.line)
      } else {
        // Leaves of other sections, by their last segment: `storage_backend` written in the wrong section.
        const elsewhere = new Map<string, string>()
        for (const key of leaves.keys()) {
          const cut = key.lastIndexOf(".")
          if (key.slice(0, Math.max(cut, 0)) !== section) elsewhere.set(key.slice(cut + 1), key)
        }
        sink.problem({
          key: `${prefix}.${dotted}`,
          source: sink.at(entry.keyLine),
          expected: /(^|_)(key|secret|password|passphrase)$/i.test(entry.name)
            ? keyMaterialExpected
            : Suggest.unknownKeyExpected(entry.name, siblings, elsewhere)
        })
      }
    }
  }
  walk("", node, line)
}

const base64 = /^[A-Za-z0-9+/_-]+={0,2}$/

/** Decodes `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY`; the value itself is never shown. */
const decodeEncryptionKey = (
  raw: string | undefined,
  sink: Providers.Sink
): Option.Option<Redacted.Redacted<Uint8Array>> => {
  if (!nonEmpty(raw)) return Option.none()
  const text = raw.trim()
  const problem = (actual: string) => {
    sink.problem({
      key: `${prefix}.token_storage.encryption_key`,
      source: `env:${Keys.encryptionKeyEnv}`,
      expected: "base64 of exactly 32 bytes (generate one with: openssl rand -base64 32)",
      actual
    })
    return Option.none()
  }
  if (!base64.test(text)) return problem("a value that is not base64 (not shown)")
  const buffer = Buffer.from(text, /[-_]/.test(text) ? "base64url" : "base64")
  // A copy of our own: small Buffers share a pooled slab with unrelated data.
  const key = new Uint8Array(buffer)
  buffer.fill(0)
  if (key.length !== 32) {
    key.fill(0)
    return problem(`base64 of ${key.length} bytes (not shown)`)
  }
  return Option.some(Redacted.make(key, { label: Keys.encryptionKeyEnv }))
}

/** Warnings for settings that work but deserve a word. */
const advisories = (settings: Loaded["settings"], env: Readonly<Record<string, string | undefined>>) => {
  const out: Array<string> = []
  const ts = settings.tokenStorage
  if (ts.enabled && !ts.encryptionEnabled && (ts.storageBackend === "auto" || ts.storageBackend === "filesystem")) {
    out.push(
      "token_storage.encryption_enabled is false: session files are stored in plaintext, protected only by their permissions"
    )
  }
  if (ts.enabled && ts.storageBackend === "memory") {
    out.push("token_storage.storage_backend is memory: sessions are lost when the process exits")
  }
  if (nonEmpty(env[Keys.encryptionKeyEnv]) && (ts.encryptionKeySource === "keyring" || ts.encryptionKeySource === "file")) {
    out.push(`${Keys.encryptionKeyEnv} is set but ignored: token_storage.encryption_key_source is ${ts.encryptionKeySource}`)
  }
  const known = Keys.knownEnvNames()
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith("MAGICTUNNEL_") || known.includes(name)) continue
    const near = Suggest.nearest(name, known, 2)
    if (Option.isSome(near)) out.push(`${name} is not a variable this package reads; did you mean ${near.value}?`)
  }
  return out
}

/** File problems by line, then environment problems, then the rest; stable otherwise. */
const ordered = (problems: ReadonlyArray<ConfigProblem>, filePrefix: string): ReadonlyArray<ConfigProblem> => {
  const rank = (p: ConfigProblem): number =>
    p.source.startsWith(filePrefix) ? Number(p.source.slice(filePrefix.length)) : p.source.startsWith("env:") ? 1e12 : 2e12
  return problems.map((p, i) => ({ p, i })).sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i).map(({ p }) => p)
}
