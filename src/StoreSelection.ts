/**
 * StoreSelection: which backend holds this user's sessions, and why.
 *
 * An explicitly configured backend is used or refused, never silently
 * downgraded. `auto` picks the platform keyring (macOS Keychain, Windows
 * Credential Manager, or the Linux Secret Service when a bounded set/get/delete
 * probe succeeds) and otherwise the encrypted file store; the choice is written
 * to `<sessionDirectory>/backend.json` and honoured by later runs, so a
 * keyring that is briefly unavailable never splits sessions across backends.
 */
import { Context, Data, DateTime, Effect, FileSystem, Option, Path, Schema } from "effect"
import * as AuditLog from "./AuditLog.js"
import * as AtomicFile from "./internal/AtomicFile.js"
import type { StorageBackendSetting } from "./SessionConfig.js"
import type { Backend } from "./TokenStore.js"

/** The outcome of a keyring probe. */
export interface Probe {
  readonly available: boolean
  readonly detail: string
  readonly latencyMs: number
}

/** The selected backend and the sentence that explains it (shown by doctor and status, logged once). */
export interface Choice {
  readonly backend: Backend
  readonly configured: StorageBackendSetting
  readonly reason: string
  /** True when an earlier run's `auto` choice was reused. */
  readonly remembered: boolean
}

/** The selection of this process. */
export class StoreSelection extends Context.Service<StoreSelection, Choice>()("magictunnel-session/StoreSelection") {}

/** A backend that cannot be used as configured. */
export class StoreSelectionError extends Data.TaggedError("StoreSelectionError")<{
  readonly backend: Backend
  readonly detail: string
  readonly fix: string
}> {
  override get message(): string {
    return `storage backend ${this.backend} is unavailable: ${this.detail}; fix: ${this.fix}`
  }
}

/** The keyring backend native to a platform, if any. */
export const nativeBackendOf = (platform: NodeJS.Platform): Option.Option<Backend> =>
  platform === "darwin"
    ? Option.some("keychain")
    : platform === "win32"
    ? Option.some("credential_manager")
    : platform === "linux" || platform === "freebsd"
    ? Option.some("secret_service")
    : Option.none()

const isKeyringBackend = (b: Backend): boolean =>
  b === "keychain" || b === "credential_manager" || b === "secret_service"

/** The file remembering `auto`'s choice. */
export class Remembered extends Schema.Class<Remembered>("magictunnel-session/RememberedBackend")({
  version: Schema.Literal(1),
  backend: Schema.Literals(["filesystem", "keychain", "credential_manager", "secret_service"]),
  chosenAt: Schema.DateTimeUtcFromMillis,
  reason: Schema.String
}) {}
const RememberedJson = Schema.fromJsonString(Schema.toCodecJson(Remembered))

/** Path of the remembered choice in a session directory. */
export const rememberedPath = (path: Path.Path, sessionDirectory: string) => path.join(sessionDirectory, "backend.json")

/** Reads the remembered `auto` choice, if any (an unreadable file counts as none, and is overwritten). */
export const readRemembered = Effect.fnUntraced(function*(sessionDirectory: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const text = yield* fs.readFileString(rememberedPath(path, sessionDirectory)).pipe(Effect.option)
  if (Option.isNone(text)) return Option.none<Remembered>()
  return yield* Schema.decodeUnknownEffect(RememberedJson)(text.value).pipe(Effect.option)
})

/**
 * Decides the backend. `probe` is run only when a keyring must be checked, and
 * is expected to be bounded in time.
 */
export const choose = Effect.fnUntraced(function*(options: {
  readonly configured: StorageBackendSetting
  readonly platform: NodeJS.Platform
  readonly sessionDirectory: string
  readonly fileMode: number
  readonly probe: Effect.Effect<Probe>
  /** Decide without remembering (for `doctor`, which must not change state). */
  readonly dryRun?: boolean | undefined
}) {
  const { configured, platform, probe } = options
  const native = nativeBackendOf(platform)
  if (configured !== "auto") {
    // A shared store is chosen explicitly only; its reachability is the store's health, not a keyring probe.
    if (configured === "memory" || configured === "filesystem" || configured === "redis") {
      return { backend: configured, configured, reason: "configured explicitly", remembered: false } satisfies Choice
    }
    if (Option.getOrUndefined(native) !== configured) {
      return yield* new StoreSelectionError({
        backend: configured,
        detail: `not available on ${platform}`,
        fix: `set token_storage.storage_backend to auto or filesystem`
      })
    }
    const p = yield* probe
    if (!p.available) {
      return yield* new StoreSelectionError({ backend: configured, detail: p.detail, fix: fixFor(configured) })
    }
    return { backend: configured, configured, reason: `configured explicitly; probe ok in ${p.latencyMs} ms`, remembered: false } satisfies Choice
  }

  const remembered = yield* readRemembered(options.sessionDirectory)
  if (Option.isSome(remembered)) {
    const r = remembered.value
    const when = DateTime.formatIso(r.chosenAt)
    if (isKeyringBackend(r.backend)) {
      const p = yield* probe
      if (!p.available) {
        return yield* new StoreSelectionError({
          backend: r.backend,
          detail: `${p.detail} (auto chose it on ${when}, and the sessions are there)`,
          fix: `${fixFor(r.backend)}; to move to the file store instead, set storage_backend: filesystem and log in again`
        })
      }
    }
    return { backend: r.backend, configured, reason: `auto, remembered from ${when}: ${r.reason}`, remembered: true } satisfies Choice
  }

  let backend: Backend = "filesystem"
  let reason = `no platform keyring on ${platform}`
  if (Option.isSome(native)) {
    const p = yield* probe
    if (p.available) {
      backend = native.value
      reason = `${native.value} answered a probe in ${p.latencyMs} ms`
    } else {
      reason = `${native.value} unavailable (${p.detail}); using the encrypted file store`
    }
  }
  if (options.dryRun === true) return { backend, configured, reason: `auto: ${reason}`, remembered: false } satisfies Choice
  const chosenAt = yield* DateTime.now
  const text = yield* Schema.encodeEffect(RememberedJson)(
    new Remembered({ version: 1, backend: backend as Remembered["backend"], chosenAt, reason })
  ).pipe(Effect.orDie)
  const path = yield* Path.Path
  yield* AtomicFile.write(rememberedPath(path, options.sessionDirectory), new TextEncoder().encode(text), options.fileMode)
    .pipe(Effect.mapError((e) =>
      new StoreSelectionError({ backend, detail: `cannot remember the choice: ${e.message}`, fix: "check the session directory's permissions" })
    ))
  yield* Effect.logInfo(`storage backend: ${backend} (${reason})`)
  yield* AuditLog.record({ event: "backend_chosen", outcome: backend, reason, backend })
  return { backend, configured, reason: `auto: ${reason}`, remembered: false } satisfies Choice
})

const fixFor = (b: Backend): string =>
  b === "secret_service"
    ? "start and unlock a Secret Service (gnome-keyring or KeePassXC) in this D-Bus session, or set storage_backend: filesystem"
    : b === "keychain"
    ? "unlock the login keychain (security unlock-keychain), or set storage_backend: filesystem"
    : b === "credential_manager"
    ? "check that Windows Credential Manager is reachable for this user, or set storage_backend: filesystem"
    : "set storage_backend: filesystem"
