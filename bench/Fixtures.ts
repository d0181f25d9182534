/**
 * The Sessions stack as the benchmarks run it: the real composition of the
 * tests (`test/support/SessionsStack.ts`: encrypted file store, file lock,
 * OAuth client over undici, the OS user's context) plus the audit log file
 * the default configuration writes, in a temporary session directory, held by a `ManagedRuntime` the way an embedding application
 * would hold it. Plus stored records built without a server.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { DateTime, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as AuditLog from "../src/AuditLog.js"
import * as SessionConfig from "../src/SessionConfig.js"
import * as TokenStore from "../src/TokenStore.js"
import { configLayer, newKey, stack } from "../test/support/SessionsStack.js"

/** A provider that is never contacted: the benchmarks that use it never refresh. */
export const offlineProvider = (name: string): SessionConfig.ProviderSettings =>
  SessionConfig.providerSettings({
    name,
    issuer: Option.some(`https://${name}.bench.example`),
    clientId: "bench-client",
    scopes: ["openid", "email"]
  })

/** What the composed stack provides: Sessions and every service under it. */
export type Services = Layer.Success<ReturnType<typeof stack<never>>>

/** A Sessions stack in a fresh temporary directory; `close` disposes it and removes the directory. */
export interface Environment<R> {
  readonly directory: string
  readonly medium: Medium
  /** The data key of the file store (the raw baselines decrypt with it). */
  readonly key: Uint8Array
  readonly runtime: ManagedRuntime.ManagedRuntime<R, unknown>
  readonly close: () => Promise<void>
}

/** Where temporary directories go: the OS temp dir (a disk, where fsync costs what it costs users), or memory. */
export type Medium = "disk" | "memory"

/** `/dev/shm` when this is Linux and it is writable: a tmpfs, where fsync costs nothing. */
const memoryRoot = (): string | undefined => {
  try {
    Fs.accessSync("/dev/shm", Fs.constants.W_OK)
    return "/dev/shm"
  } catch {
    return undefined
  }
}

/** A new temporary directory on `medium` (falling back to the OS temp dir), and where it landed. */
export const tempDirectory = (prefix: string, medium: Medium = "disk"): { readonly path: string; readonly medium: Medium } => {
  const root = medium === "memory" ? memoryRoot() : undefined
  return root === undefined
    ? { path: Fs.mkdtempSync(NodePath.join(Os.tmpdir(), prefix)), medium: "disk" }
    : { path: Fs.mkdtempSync(NodePath.join(root, prefix)), medium: "memory" }
}

/**
 * Builds the stack over `providers` in a new temporary directory on `medium`;
 * `extend` may add layers on top (Recovery).
 */
export const environment = async <R = Services>(
  providers: ReadonlyArray<SessionConfig.ProviderSettings>,
  options?: {
    readonly extend?: (base: Layer.Layer<Services, unknown>) => Layer.Layer<R, unknown>
    readonly medium?: Medium
    /** A second stack over the directory and key of another (as a second process would open it); not removed on close. */
    readonly over?: Pick<Environment<unknown>, "directory" | "medium" | "key">
  }
): Promise<Environment<R>> => {
  const over = options?.over
  const { medium, path: directory } = over === undefined
    ? tempDirectory("mts-bench-", options?.medium)
    : { medium: over.medium, path: over.directory }
  const extend = options?.extend
  const key = over === undefined ? newKey().bytes : over.key
  // With the audit log as the default configuration has it (a file in the session directory):
  // every refresh and every recovered session writes its line, as it does for users.
  const base: Layer.Layer<Services, unknown> = AuditLog.layer.pipe(
    Layer.provideMerge(stack(configLayer({ sessionDirectory: NodePath.join(directory, "sessions"), key, providers })))
  )
  const layer = extend === undefined ? (base as unknown as Layer.Layer<R, unknown>) : extend(base)
  const runtime = ManagedRuntime.make(layer)
  await runtime.runPromise(Effect.void)
  return {
    directory,
    medium,
    key,
    runtime,
    close: async () => {
      await runtime.dispose()
      if (over === undefined) Fs.rmSync(directory, { recursive: true, force: true })
    }
  }
}

/** A random token-looking string (base64url) of `bytes` random bytes. */
const randomToken = (bytes: number) => Crypto.randomBytes(bytes).toString("base64url")

/**
 * A stored session of `provider`, bound to `resource` when given, whose
 * access token expires `expiresInSeconds` from now. Token sizes are those of
 * a real provider: a JWT-sized access token, an opaque refresh token, an ID token.
 */
export const record = (options: {
  readonly provider: string
  readonly resource?: string | undefined
  readonly expiresInSeconds: number
}) =>
  Effect.gen(function*() {
    const now = yield* DateTime.now
    return yield* TokenStore.newRecord({
      id: TokenStore.sessionIdOf({ provider: options.provider, resource: options.resource }),
      provider: options.provider,
      issuer: `https://${options.provider}.bench.example`,
      tokenEndpoint: `https://${options.provider}.bench.example/token`,
      clientId: "bench-client",
      scopes: ["openid", "email"],
      resource: options.resource,
      tokenType: "Bearer",
      accessToken: Redacted.make(randomToken(600)),
      refreshToken: Redacted.make(randomToken(32)),
      idToken: Redacted.make(randomToken(450)),
      expiresAt: DateTime.add(now, { seconds: options.expiresInSeconds }),
      subject: `user-${randomToken(6)}`
    })
  })
