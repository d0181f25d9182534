/**
 * Keyring: the OS secret store underneath the keychain, credential manager and
 * Secret Service token stores (and the keyring key source of the file store).
 *
 * A tiny contract after keyring-rs: get, set and delete one secret addressed by
 * service and account. The native binding (`@napi-rs/keyring`) is loaded
 * lazily so the core works where it failed to install; every call runs off the
 * event loop with a timeout. On Linux the Secret Service store is pinned: the
 * binding would otherwise fall back silently to kernel keyutils, which loses
 * everything at reboot.
 *
 * Layers: `layerNative` (the OS keyring of this platform), `layerFake` (in
 * memory, after keyring-rs' mock store: it can inject the next error, for
 * unit tests of the keychain and credential manager paths that cannot run
 * here). `probe` is the bounded set/get/delete round trip that `auto`
 * backend selection, `doctor` and the keyring stores' health use.
 */
import * as Crypto from "node:crypto"
import { Clock, Context, Data, Effect, Layer, Option, Ref } from "effect"
import * as NativeKeyring from "./internal/NativeKeyring.js"

/** The OS stores behind this contract. */
export type Platform = "keychain" | "credential_manager" | "secret_service"

/** Why a keyring call failed. */
export type Reason =
  /** No keyring service answers (no D-Bus session, no Secret Service, binding missing). */
  | { readonly _tag: "Unavailable"; readonly detail: string }
  /** The keyring is locked or the user refused access. */
  | { readonly _tag: "AccessDenied"; readonly detail: string }
  | { readonly _tag: "Timeout"; readonly afterMs: number }
  /** The secret is larger than the platform allows (Windows: 2560 bytes). */
  | { readonly _tag: "TooLarge"; readonly bytes: number; readonly limit: number }
  | { readonly _tag: "Other"; readonly detail: string }

/** A failed keyring call; never carries the secret. */
export class KeyringError extends Data.TaggedError("KeyringError")<{
  readonly platform: Platform
  readonly operation: "get" | "set" | "delete" | "load"
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    const what = `${this.platform} ${this.operation}`
    switch (r._tag) {
      case "Timeout":
        return `${what}: timed out after ${r.afterMs} ms`
      case "TooLarge":
        return `${what}: secret of ${r.bytes} bytes exceeds the platform limit of ${r.limit}`
      default:
        return `${what}: ${r._tag}: ${r.detail}`
    }
  }
}

/** One OS keyring. */
export interface Shape {
  readonly platform: Platform
  /** Largest secret, in bytes of UTF-8, that `set` accepts. */
  readonly maxSecretBytes: number
  readonly get: (service: string, account: string) => Effect.Effect<Option.Option<string>, KeyringError>
  readonly set: (service: string, account: string, secret: string) => Effect.Effect<void, KeyringError>
  /** True when something was deleted. */
  readonly remove: (service: string, account: string) => Effect.Effect<boolean, KeyringError>
}

/** The keyring service name used for everything this product stores. */
export const serviceName = "magictunnel"

/** The OS keyring of this platform. */
export class Keyring extends Context.Service<Keyring, Shape>()("magictunnel-session/Keyring") {}

/** Per-call bound when none is configured (`token_storage.keyring_timeout_seconds` defaults to the same). */
export const defaultTimeoutMs = 5_000

/** Largest secret per platform, in bytes of UTF-8 (Windows: 2560; elsewhere a sane bound). */
export const maxSecretBytesOf: (platform: Platform) => number = NativeKeyring.maxSecretBytesOf

/** The keyring of an OS: keychain on macOS, credential manager on Windows, Secret Service elsewhere. */
export const platformOf: (os: NodeJS.Platform) => Platform = NativeKeyring.platformOf

/**
 * The OS keyring through `@napi-rs/keyring`, loaded on first use (so the core
 * works where the optional module failed to install). Every call is bounded by
 * `timeoutMs` and runs off the event loop.
 */
export const layerNative = (options: { readonly timeoutMs: number }): Layer.Layer<Keyring> =>
  layerNativeWith({ timeoutMs: options.timeoutMs })

/** `layerNative` with the loader and OS replaceable: tests simulate a missing or hanging binding. */
export const layerNativeWith = (options: {
  readonly timeoutMs: number
  readonly load?: (() => Promise<NativeKeyring.NativeModule>) | undefined
  readonly os?: NodeJS.Platform | undefined
}): Layer.Layer<Keyring> =>
  Layer.effect(
    Keyring,
    Effect.map(
      NativeKeyring.make({
        timeoutMs: options.timeoutMs,
        load: options.load ?? NativeKeyring.load,
        os: options.os ?? process.platform
      }),
      Keyring.of
    )
  )

/** The module shape a test loader returns (the subset of `@napi-rs/keyring` in use). */
export type NativeModule = NativeKeyring.NativeModule

// ---------------------------------------------------------------------------
// Fake keyring
// ---------------------------------------------------------------------------

/** One stored secret of the fake keyring. */
export interface FakeEntry {
  readonly service: string
  readonly account: string
  readonly secret: string
}

/** Steers the fake keyring from a test: inject errors, inspect and tamper with entries. */
export interface FakeControl {
  /**
   * Fails the next `times` (default 1) calls of `operation` (default: any)
   * with `reason`, without touching the entries.
   */
  readonly failNext: (
    reason: Reason,
    options?: { readonly operation?: "get" | "set" | "delete"; readonly times?: number }
  ) => Effect.Effect<void>
  /**
   * Makes the next call of `operation` (default: any) never return, after
   * doing its work when `afterApplying`: with an interrupt, a process that
   * died in the middle of a call.
   */
  readonly stallNext: (
    options?: { readonly operation?: "get" | "set" | "delete"; readonly afterApplying?: boolean }
  ) => Effect.Effect<void>
  /** How many calls are stalled right now. */
  readonly stalled: Effect.Effect<number>
  /** Drops injected failures and stalls that have not fired yet. */
  readonly clearFailures: Effect.Effect<void>
  /** Everything stored, in insertion order. */
  readonly entries: Effect.Effect<ReadonlyArray<FakeEntry>>
  /** Writes a secret behind the keyring's back (a damaged or foreign entry). */
  readonly setRaw: (service: string, account: string, secret: string) => Effect.Effect<void>
}

/** The control of the fake keyring in a test's context. */
export class FakeKeyringControl extends Context.Service<FakeKeyringControl, FakeControl>()(
  "magictunnel-session/FakeKeyringControl"
) {}

type Operation = "get" | "set" | "delete"

interface Injected {
  readonly effect: { readonly _tag: "Fail"; readonly reason: Reason } | { readonly _tag: "Stall"; readonly after: boolean }
  readonly operation: Operation | undefined
  readonly remaining: number
}

/** An in-memory keyring and its control. */
export const makeFake = Effect.fnUntraced(function*(options?: {
  readonly platform?: Platform | undefined
  readonly maxSecretBytes?: number | undefined
}) {
  const platform = options?.platform ?? "keychain"
  const maxSecretBytes = options?.maxSecretBytes ?? maxSecretBytesOf(platform)
  const store = yield* Ref.make(new Map<string, FakeEntry>())
  const injected = yield* Ref.make<ReadonlyArray<Injected>>([])
  const stalled = yield* Ref.make(0)
  const keyOf = (service: string, account: string) => `${service}\u0000${account}`

  const injectedFor = (operation: Operation) =>
    Ref.modify(injected, (list): readonly [Option.Option<Injected["effect"]>, ReadonlyArray<Injected>] => {
      const i = list.findIndex((x) => x.operation === undefined || x.operation === operation)
      const hit = list[i]
      if (hit === undefined) return [Option.none(), list]
      const rest = hit.remaining > 1
        ? list.map((x, j) => (j === i ? { ...x, remaining: x.remaining - 1 } : x))
        : list.filter((_, j) => j !== i)
      return [Option.some(hit.effect), rest]
    })
  const stall = Effect.andThen(
    Ref.update(stalled, (n) => n + 1),
    Effect.onInterrupt(Effect.never, () => Ref.update(stalled, (n) => n - 1))
  )
  /** Runs `work` as the injected behaviour of the next call of `operation` says. */
  const guarded = <A>(operation: Operation, work: Effect.Effect<A>): Effect.Effect<A, KeyringError> =>
    Effect.flatMap(injectedFor(operation), (o) => {
      if (Option.isNone(o)) return work
      const e = o.value
      return e._tag === "Fail"
        ? Effect.fail(new KeyringError({ platform, operation, reason: e.reason }))
        : e.after
        ? Effect.andThen(work, stall)
        : stall
    })

  const keyring = Keyring.of({
    platform,
    maxSecretBytes,
    get: (service, account) =>
      guarded(
        "get",
        Effect.map(Ref.get(store), (m) => Option.map(Option.fromUndefinedOr(m.get(keyOf(service, account))), (e) => e.secret))
      ),
    set: (service, account, secret) => {
      const bytes = new TextEncoder().encode(secret).length
      return bytes > maxSecretBytes
        ? Effect.fail(
          new KeyringError({ platform, operation: "set", reason: { _tag: "TooLarge", bytes, limit: maxSecretBytes } })
        )
        : guarded(
          "set",
          Ref.update(store, (m) => new Map(m).set(keyOf(service, account), { service, account, secret }))
        )
    },
    remove: (service, account) =>
      guarded(
        "delete",
        Ref.modify(store, (m) => {
          const next = new Map(m)
          return [next.delete(keyOf(service, account)), next] as const
        })
      )
  })
  const control = FakeKeyringControl.of({
    failNext: (reason, o) =>
      Ref.update(injected, (list) => [...list, {
        effect: { _tag: "Fail" as const, reason },
        operation: o?.operation,
        remaining: o?.times ?? 1
      }]),
    stallNext: (o) =>
      Ref.update(injected, (list) => [...list, {
        effect: { _tag: "Stall" as const, after: o?.afterApplying ?? false },
        operation: o?.operation,
        remaining: 1
      }]),
    stalled: Ref.get(stalled),
    clearFailures: Ref.set(injected, []),
    entries: Effect.map(Ref.get(store), (m) => Array.from(m.values())),
    setRaw: (service, account, secret) =>
      Ref.update(store, (m) => new Map(m).set(keyOf(service, account), { service, account, secret }))
  })
  return { keyring, control }
})

/** An in-memory keyring (default: a keychain) plus its {@link FakeKeyringControl}. */
export const layerFake = (options?: {
  readonly platform?: Platform | undefined
  readonly maxSecretBytes?: number | undefined
}): Layer.Layer<Keyring | FakeKeyringControl> =>
  Layer.effectContext(
    Effect.map(makeFake(options), ({ control, keyring }) =>
      Context.make(Keyring, keyring).pipe(Context.add(FakeKeyringControl, control)))
  )

// ---------------------------------------------------------------------------
// Probe
// ---------------------------------------------------------------------------

/** What a probe found. */
export interface ProbeResult {
  readonly available: boolean
  readonly detail: string
  readonly latencyMs: number
}

/** The account prefix of probe entries; each probe uses a fresh random suffix and deletes it. */
export const probeAccountPrefix = "probe:"

/**
 * A bounded set/get/delete round trip of a throwaway entry. Never fails: an
 * unavailable, locked or slow keyring is reported. Bounded by the keyring's
 * own per-call timeout (three calls at most).
 */
export const probeWith = (keyring: Shape): Effect.Effect<ProbeResult> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const account = `${probeAccountPrefix}${Crypto.randomBytes(8).toString("hex")}`
    const value = Crypto.randomBytes(16).toString("hex")
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => Math.max(0, now - start))
    const outcome = yield* Effect.result(
      // Cleanup only after a write that landed: a keyring that timed out would only time out again.
      keyring.set(serviceName, account, value).pipe(
        Effect.andThen(keyring.get(serviceName, account).pipe(
          Effect.ensuring(keyring.remove(serviceName, account).pipe(Effect.ignore))
        ))
      )
    )
    const latencyMs = yield* elapsed
    if (outcome._tag === "Failure") return { available: false, detail: outcome.failure.message, latencyMs }
    if (Option.getOrUndefined(outcome.success) !== value) {
      return {
        available: false,
        detail: `${keyring.platform}: a secret written was not read back (another store answered, or it dropped the write)`,
        latencyMs
      }
    }
    return { available: true, detail: `${keyring.platform}: set, get and delete answered in ${latencyMs} ms`, latencyMs }
  })

/** {@link probeWith} on the keyring in context. */
export const probe: Effect.Effect<ProbeResult, never, Keyring> = Effect.gen(function*() {
  return yield* probeWith(yield* Keyring)
})
