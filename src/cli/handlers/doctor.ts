/**
 * The body of `mtsession doctor` (`commands/doctor.ts`): every check, each
 * problem with its fix, and the exit code of the worst finding.
 */
import { Console, Effect, Layer, Option } from "effect"
import * as Main from "../../../layers/Main.js"
import * as StoreFromConfig from "../../../layers/StoreFromConfig.js"
import * as EncryptionKey from "../../EncryptionKey.js"
import * as Keyring from "../../Keyring.js"
import { SessionConfig } from "../../SessionConfig.js"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import * as EncryptedFile from "../../TokenStore/EncryptedFile.js"
import * as UserContext from "../../UserContext.js"
import { CommandExit } from "../Errors.js"
import * as ExitCode from "../ExitCode.js"
import * as Output from "../Output.js"

/** One backend as probed. */
interface BackendReport {
  readonly name: TokenStore.Backend
  readonly available: boolean
  readonly detail: string
  readonly latency_ms: number | null
}

/** One problem and what to do about it. */
interface Problem {
  readonly area: "config" | "directory" | "storage" | "key" | "sessions"
  readonly message: string
  readonly fix: string
}

const splitFix = (message: string): { message: string; fix: string } => {
  const i = message.lastIndexOf("; fix: ")
  return i < 0 ? { message, fix: "" } : { message: message.slice(0, i), fix: message.slice(i + 7) }
}

const nativeBackends: ReadonlyArray<TokenStore.Backend> = ["keychain", "credential_manager", "secret_service"]
const platformOf: Record<string, string> = {
  keychain: "macOS",
  credential_manager: "Windows",
  secret_service: "Linux and BSD"
}

const diagnose = Effect.gen(function*() {
  const configPath = Option.getOrUndefined(yield* Output.ConfigPath)
  const problems: Array<Problem> = []
  const backends: Array<BackendReport> = []
  const facts: Array<[string, string]> = []
  let selected: TokenStore.Backend | null = null
  let exitCode = ExitCode.ok

  yield* Output.progress("checking configuration…")
  const configLayer = Main.layerConfig({ configPath })
  const config = yield* Effect.result(Effect.provide(SessionConfig, configLayer))
  if (config._tag === "Failure") {
    for (const p of config.failure.problems) {
      problems.push({ area: "config", message: `${p.key} (${p.source}): expected ${p.expected}${p.actual === undefined ? "" : `, got ${p.actual}`}`, fix: "correct the value, or see `mtsession config show` and docs/configuration.md" })
    }
    return { selected, backends, problems, facts, exitCode: ExitCode.usage }
  }
  const loaded = config.success
  facts.push(["configuration", Option.getOrElse(loaded.path, () => "no file (defaults and environment)")])
  for (const w of loaded.warnings) problems.push({ area: "config", message: w, fix: "see docs/configuration.md" })

  yield* Output.progress("checking the session directory…")
  const base = Layer.mergeAll(configLayer, Main.platform)
  const userLayer = UserContext.layer.pipe(Layer.provideMerge(base))
  const user = yield* Effect.result(Effect.provide(UserContext.UserContext, userLayer))
  if (user._tag === "Failure") {
    problems.push({ area: "directory", ...splitFix(user.failure.message) })
    return { selected, backends, problems, facts, exitCode: ExitCode.storageUnavailable }
  }
  facts.push(["user namespace", user.success.namespace])
  facts.push(["session directory", `${user.success.sessionDirectory} (0700, owned by this user)`])

  const keyringLayer = StoreFromConfig.keyring.pipe(Layer.provide(base))
  const services = Layer.mergeAll(userLayer, keyringLayer)

  yield* Output.progress("probing storage backends…")
  backends.push({ name: "memory", available: true, detail: "process memory: nothing survives the process", latency_ms: 0 })
  const native = StoreSelection.nativeBackendOf(process.platform)
  const probe = yield* Effect.provide(Keyring.probe, services)
  for (const name of nativeBackends) {
    if (Option.getOrUndefined(native) === name) {
      backends.push({ name, available: probe.available, detail: probe.detail, latency_ms: probe.latencyMs })
    } else {
      backends.push({ name, available: false, detail: `only on ${platformOf[name]}`, latency_ms: null })
    }
  }

  const storage = loaded.settings.tokenStorage
  const fileHealth = yield* Effect.gen(function*() {
    const key = yield* EncryptionKey.EncryptionKey
    const store = yield* EncryptedFile.make
    const health = yield* store.health
    return { health, key: storage.encryptionEnabled ? key.description : "none: encryption_enabled is false" }
  }).pipe(
    Effect.scoped,
    Effect.provide(EncryptionKey.layer.pipe(Layer.provideMerge(services))),
    Effect.provide(services),
    Effect.result
  )
  if (fileHealth._tag === "Success") {
    const { health, key } = fileHealth.success
    backends.push({ name: "filesystem", available: health.available, detail: health.detail, latency_ms: health.latencyMs })
    facts.push(["file store key", key])
  } else {
    backends.push({ name: "filesystem", available: false, detail: fileHealth.failure.message, latency_ms: null })
    problems.push({ area: "key", ...splitFix(fileHealth.failure.message) })
  }
  if (!storage.encryptionEnabled) {
    problems.push({
      area: "storage",
      message: "the file store keeps tokens in plaintext (encryption_enabled: false): anyone who can read the files has the tokens",
      fix: "set token_storage.encryption_enabled: true (or MAGICTUNNEL_TOKEN_ENCRYPTION_ENABLED=true) and log in again"
    })
  }

  const choice = yield* StoreSelection.choose({
    configured: loaded.settings.enabled && storage.enabled ? storage.storageBackend : "memory",
    platform: process.platform,
    sessionDirectory: user.success.sessionDirectory,
    fileMode: storage.filePermissions,
    probe: Effect.succeed(probe),
    dryRun: true
  }).pipe(Effect.provide(services), Effect.result)
  if (choice._tag === "Failure") {
    problems.push({ area: "storage", ...splitFix(choice.failure.message) })
    return { selected, backends, problems, facts, exitCode: ExitCode.storageUnavailable }
  }
  selected = choice.success.backend
  facts.push(["selected backend", `${selected} (${choice.success.reason})`])
  if (selected === "memory") {
    problems.push({ area: "storage", message: "sessions are kept in memory only and are lost when the process exits", fix: "set token_storage.storage_backend: auto" })
  }
  const selectedReport = backends.find((b) => b.name === selected)
  if (selectedReport !== undefined && !selectedReport.available) exitCode = ExitCode.storageUnavailable

  yield* Output.progress("reading sessions…")
  const sessions = yield* Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    return (yield* store.list).filter(TokenStore.isSession)
  }).pipe(Effect.provide(Main.layer({ configPath })), Effect.result)
  if (sessions._tag === "Success") {
    const corrupted = sessions.success.filter((m) => m.state === "corrupted")
    const reauth = sessions.success.filter((m) => m.state === "needs_reauth")
    facts.push(["sessions", `${sessions.success.length} (${corrupted.length} corrupted, ${reauth.length} needing re-authentication)`])
    for (const m of corrupted) {
      problems.push({ area: "sessions", message: `session ${m.id} (${m.provider}) is corrupted and was set aside`, fix: `log in again (mtsession login ${m.provider}); the damaged record is kept next to the others as *.corrupt-<time>` })
    }
    for (const m of reauth) {
      problems.push({ area: "sessions", message: `session ${m.id} (${m.provider}) needs re-authentication${Option.match(m.lastError, { onNone: () => "", onSome: (e) => `: ${e}` })}`, fix: `mtsession login ${m.provider}` })
    }
  } else {
    problems.push({ area: "storage", ...splitFix(sessions.failure.message) })
    exitCode = ExitCode.storageUnavailable
  }
  if (exitCode === ExitCode.ok && problems.length > 0) exitCode = ExitCode.failure
  return { selected, backends, problems, facts, exitCode }
})

export const doctor = () =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const report = yield* diagnose
    if (json) {
      yield* Output.printJson({ selected: report.selected, backends: report.backends, problems: report.problems })
    } else {
      const c = Output.paint(yield* Output.colorful)
      yield* Console.log(Output.table(["check", "result"], report.facts))
      yield* Console.log("")
      yield* Console.log(Output.table(
        ["backend", "available", "latency", "detail"],
        report.backends.map((b) => [
          b.name === report.selected ? `${b.name} *` : b.name,
          b.available ? c.green("yes") : c.red("no"),
          b.latency_ms === null ? "-" : `${b.latency_ms} ms`,
          b.detail
        ])
      ))
      yield* Console.log("")
      if (report.problems.length === 0) yield* Console.log(c.green("No problems found."))
      for (const p of report.problems) {
        yield* Console.log(`${c.red("problem")} [${p.area}] ${p.message}`)
        if (p.fix !== "") yield* Console.log(`  fix: ${p.fix}`)
      }
    }
    if (report.exitCode !== ExitCode.ok) return yield* new CommandExit({ code: report.exitCode })
  })
