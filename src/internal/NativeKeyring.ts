/**
 * The glue to the native keyring binding (`@napi-rs/keyring`, keyring-rs
 * underneath): loading it lazily, bounding every call in time, and turning its
 * error strings into the platform-independent {@link Keyring.Reason}s.
 *
 * Facts this code is built around (measured against gnome-keyring 42 with the
 * binding 2.1.2, see `test/integration/SecretService.test.ts`):
 * - `AsyncEntry`'s get/set/delete run on the libuv thread pool, so they never
 *   block the event loop; an `AbortSignal` only stops a call that has not
 *   started, so the timeout here abandons a stuck call rather than cancel it.
 * - Its constructor does not: on Linux, with the store pinned to the Secret
 *   Service, it opens a D-Bus connection and a Secret Service session on the
 *   JS thread. It fails fast when no bus or no Secret Service answers, but a
 *   bus or daemon that is wedged (stopped, swapping) would block the whole
 *   process. So before constructing an entry on Linux a readiness check runs
 *   off the thread (`findCredentialsAsync` for a service that holds nothing)
 *   under the same timeout, at most one at a time; and constructed entries are
 *   cached per account, so the constructor runs once per account and process.
 * - libdbus reads `DBUS_SESSION_BUS_ADDRESS` once per process: changing it
 *   after the first keyring call has no effect.
 * - Secrets go through `setSecret`/`getSecret` as UTF-8 bytes, so the size
 *   limit is in bytes (`setPassword` would store UTF-16 on Windows and halve
 *   the 2560-byte limit).
 */
import { Effect, Option, Ref, SynchronizedRef } from "effect"
import type * as Keyring from "../Keyring.js"
import { KeyringError } from "../Keyring.js"

/** One credential of the native binding (the subset of `AsyncEntry` used here). */
export interface NativeEntry {
  readonly setSecret: (secret: Uint8Array, signal?: AbortSignal | null) => Promise<unknown>
  readonly getSecret: (signal?: AbortSignal | null) => Promise<ArrayLike<number> | null | undefined>
  readonly deleteCredential: (signal?: AbortSignal | null) => Promise<boolean>
}

/** The subset of the `@napi-rs/keyring` module used here; tests substitute their own. */
export interface NativeModule {
  readonly AsyncEntry: new(
    service: string,
    account: string,
    options?: { readonly linux?: { readonly store?: "secret-service" | "keyutils" } }
  ) => NativeEntry
  /** Used on Linux only, as an off-thread readiness check before an entry is constructed. */
  readonly findCredentialsAsync?: (
    service: string,
    target?: string | null,
    signal?: AbortSignal | null
  ) => Promise<ReadonlyArray<unknown>>
}

/** Loads the real binding. Never called at module load: only when a keyring is first used. */
export const load = (): Promise<NativeModule> => import("@napi-rs/keyring")

/** Options of the native keyring. */
export interface Options {
  /** Bound on every call, readiness check and entry construction included. */
  readonly timeoutMs: number
  readonly load: () => Promise<NativeModule>
  /** The OS, `process.platform` unless a test says otherwise. */
  readonly os: NodeJS.Platform
}

/** The keyring platform of an OS (Linux and the BSDs speak the Secret Service). */
export const platformOf = (os: NodeJS.Platform): Keyring.Platform =>
  os === "darwin" ? "keychain" : os === "win32" ? "credential_manager" : "secret_service"

/** Largest secret per platform, in bytes: Windows' CRED_MAX_CREDENTIAL_BLOB_SIZE; a sane bound elsewhere. */
export const maxSecretBytesOf = (platform: Keyring.Platform): number =>
  platform === "credential_manager" ? 2560 : 64 * 1024

/** A service name nothing is stored under: searching it proves the Secret Service answers. */
const readinessService = "magictunnel-readiness-check"

const firstLine = (u: unknown): string => {
  const text = u instanceof Error ? u.message : typeof u === "string" ? u : String(u)
  const line = text.split("\n", 1)[0] ?? ""
  return line.length > 300 ? `${line.slice(0, 300)}…` : line
}

/**
 * Maps a binding error to a reason. `secret`, when given, is scrubbed from the
 * text (the binding does not echo secrets, but nothing here relies on that).
 */
export const classify = (u: unknown, secret?: string): Keyring.Reason => {
  let detail = firstLine(u)
  if (secret !== undefined && secret.length > 0) detail = detail.split(secret).join("[redacted]")
  const m = detail.toLowerCase()
  if (m.includes("prompt was dismissed") || m.includes("is locked") || m.includes("user interaction is not allowed")) {
    return { _tag: "AccessDenied", detail: `the keyring is locked and could not be unlocked here (${detail})` }
  }
  if (
    m.includes("user canceled") || m.includes("user cancelled") || m.includes("access is denied") ||
    m.includes("access denied") || m.includes("not permitted") || m.includes("authorization")
  ) {
    return { _tag: "AccessDenied", detail }
  }
  if (m.includes("no result found")) {
    // The Secret Service answered but has no unlocked default collection to write to.
    return {
      _tag: "Unavailable",
      detail:
        `the Secret Service has no unlocked default collection (${detail}); unlock the login keyring, or start gnome-keyring-daemon with --unlock`
    }
  }
  if (m.includes("did not receive a reply") || m.includes("timed out") || m.includes("timeout")) {
    return { _tag: "Unavailable", detail: `the keyring did not answer (${detail})` }
  }
  if (
    m.includes("dbus") || m.includes("d-bus") || m.includes("failed to connect") || m.includes(".service files") ||
    m.includes("serviceunknown") || m.includes("autolaunch") || m.includes("platform failure") ||
    m.includes("couldn't access platform storage") || m.includes("no such file")
  ) {
    return { _tag: "Unavailable", detail }
  }
  return { _tag: "Other", detail }
}

interface Readiness {
  readonly promise: Promise<unknown>
  settled: boolean
}

const utf8 = new TextEncoder()
// Not fatal: bytes that are not UTF-8 come back as a string the caller fails to decode, and quarantines.
const fromUtf8 = new TextDecoder("utf-8")

/** Builds the native keyring. Nothing is loaded until the first call. */
export const make = Effect.fnUntraced(function*(options: Options) {
  const platform = platformOf(options.os)
  const maxSecretBytes = maxSecretBytesOf(platform)
  const { timeoutMs } = options
  const pinned = platform === "secret_service"
  // The default Linux store silently falls back to kernel keyutils, which forgets everything at reboot.
  const entryOptions = pinned ? { linux: { store: "secret-service" as const } } : undefined
  const fail = (operation: KeyringError["operation"], reason: Keyring.Reason) =>
    new KeyringError({ platform, operation, reason })

  const module = yield* Effect.cached(
    Effect.tryPromise({
      try: () => options.load(),
      catch: (e) => fail("load", { _tag: "Unavailable", detail: `native keyring module not installed: ${firstLine(e)}` })
    }).pipe(
      Effect.filterOrFail(
        (m) => typeof m?.AsyncEntry === "function",
        () => fail("load", { _tag: "Unavailable", detail: "native keyring module not installed: no AsyncEntry export" })
      )
    )
  )
  const entries = yield* Ref.make(new Map<string, NativeEntry>())
  const readiness = yield* SynchronizedRef.make(Option.none<Readiness>())

  // One check in flight at most: a wedged bus then holds one pool thread, not one per caller.
  const ready = (m: NativeModule, operation: KeyringError["operation"]) => {
    const find = m.findCredentialsAsync
    if (!pinned || find === undefined) return Effect.void
    return SynchronizedRef.modifyEffect(readiness, (current) =>
      Option.isSome(current) && !current.value.settled
        ? Effect.succeed([current.value, current] as const)
        : Effect.sync(() => {
          const r: Readiness = { promise: find(readinessService, null), settled: false }
          r.promise.then(() => (r.settled = true), () => (r.settled = true))
          return [r, Option.some(r)] as const
        })).pipe(
        Effect.flatMap((r) => Effect.tryPromise({ try: () => r.promise, catch: (e) => fail(operation, classify(e)) })),
        Effect.asVoid
      )
  }

  const keyOf = (service: string, account: string) => `${service}\u0000${account}`

  const entryFor = (m: NativeModule, operation: KeyringError["operation"], service: string, account: string) =>
    Effect.gen(function*() {
      const key = keyOf(service, account)
      const cached = (yield* Ref.get(entries)).get(key)
      if (cached !== undefined) return cached
      yield* ready(m, operation)
      const entry = yield* Effect.try({
        try: () => new m.AsyncEntry(service, account, entryOptions),
        catch: (e) => fail(operation, classify(e))
      })
      yield* Ref.update(entries, (map) => new Map(map).set(key, entry))
      return entry
    })

  const call = <A>(
    operation: "get" | "set" | "delete",
    service: string,
    account: string,
    run: (entry: NativeEntry, signal: AbortSignal) => Promise<A>,
    secret?: string
  ): Effect.Effect<A, KeyringError> =>
    Effect.gen(function*() {
      const m = yield* module
      const entry = yield* entryFor(m, operation, service, account)
      return yield* Effect.tryPromise({
        try: (signal) => run(entry, signal),
        catch: (e) => fail(operation, classify(e, secret))
      }).pipe(
        // A failed entry may hold a dead connection (the daemon restarted): build it afresh next time.
        Effect.tapError(() =>
          Ref.update(entries, (map) => {
            const next = new Map(map)
            next.delete(keyOf(service, account))
            return next
          })
        )
      )
    }).pipe(
      Effect.timeoutOrElse({
        duration: timeoutMs,
        orElse: () => Effect.fail(fail(operation, { _tag: "Timeout", afterMs: timeoutMs }))
      })
    )

  const shape: Keyring.Shape = {
    platform,
    maxSecretBytes,
    get: (service, account) =>
      call("get", service, account, (e, signal) => e.getSecret(signal)).pipe(
        Effect.map((bytes) =>
          bytes === null || bytes === undefined ? Option.none() : Option.some(fromUtf8.decode(Uint8Array.from(bytes)))
        )
      ),
    set: (service, account, secret) => {
      const bytes = utf8.encode(secret)
      return bytes.length > maxSecretBytes
        ? Effect.fail(fail("set", { _tag: "TooLarge", bytes: bytes.length, limit: maxSecretBytes }))
        : call("set", service, account, (e, signal) => e.setSecret(bytes, signal), secret).pipe(Effect.asVoid)
    },
    remove: (service, account) => call("delete", service, account, (e, signal) => e.deleteCredential(signal))
  }
  return shape
})
