/**
 * UserContext: who the sessions belong to and where they live.
 *
 * The identity is the OS user (name, uid, home, host), read without spawning a
 * process; an embedding application may instead name one principal of its own
 * (a multi-tenant gateway serving many end users). The namespace derived from
 * it (`user@host:uid`, or `user:uid` without hostname isolation, plus
 * `/principal:<id>` for an embedded principal) is bound into every stored
 * record, so sessions of different namespaces never see each other.
 *
 * The session directory is created 0700; like ssh, a directory that is
 * group/world-writable or owned by someone else is refused rather than used.
 */
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import { Context, Data, Effect, FileSystem, Layer, Option, Path } from "effect"
import { SessionConfig } from "./SessionConfig.js"

/** The resolved identity and locations of this process's sessions. */
export interface Shape {
  readonly username: string
  /** -1 where the platform has no uids (Windows). */
  readonly uid: number
  readonly home: string
  readonly hostname: string
  /** The embedding application's principal, when one was supplied. */
  readonly principal: Option.Option<string>
  /** Bound into every record's AAD and index entry. */
  readonly namespace: string
  /** The configured session directory, `~` expanded, absolute. */
  readonly sessionDirectory: string
  /** Where this namespace's records and index live: `<sessionDirectory>/ns-<hash>`. */
  readonly storageDirectory: string
}

/** Why a user context could not be established. */
export type Reason =
  | { readonly _tag: "InsecureDirectory"; readonly path: string; readonly mode: number }
  | { readonly _tag: "ForeignOwner"; readonly path: string; readonly owner: number; readonly uid: number }
  | { readonly _tag: "NotADirectory"; readonly path: string }
  | { readonly _tag: "CannotCreate"; readonly path: string; readonly detail: string }
  | { readonly _tag: "InvalidPrincipal"; readonly principal: string }

/** A user context that cannot be used safely; `message` names the fix. */
export class UserContextError extends Data.TaggedError("UserContextError")<{
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    switch (r._tag) {
      case "InsecureDirectory":
        return `session directory ${r.path} is writable by group or others (mode ${
          (r.mode & 0o777).toString(8).padStart(4, "0")
        }); fix: chmod 700 ${r.path}`
      case "ForeignOwner":
        return `session directory ${r.path} is owned by uid ${r.owner}, not by this user (uid ${r.uid}); fix: use a directory of your own (user_context.session_directory) or chown it`
      case "NotADirectory":
        return `session directory ${r.path} exists and is not a directory; fix: move it away or configure user_context.session_directory`
      case "CannotCreate":
        return `cannot create session directory ${r.path}: ${r.detail}`
      case "InvalidPrincipal":
        return `invalid principal ${JSON.stringify(r.principal.slice(0, 64))}: expected 1 to 256 printable characters`
    }
  }
}

/** The user context of this process. */
export class UserContext extends Context.Service<UserContext, Shape>()("magictunnel-session/UserContext") {}

/** The OS identity, read without spawning a process. */
export interface OsIdentity {
  readonly username: string
  readonly uid: number
  readonly home: string
  readonly hostname: string
}

/** Reads the OS identity (`os.userInfo`, `os.hostname`); tolerates a uid with no passwd entry. */
export const osIdentity = (): OsIdentity => {
  const uid = typeof process.getuid === "function" ? process.getuid() : -1
  let username: string
  try {
    username = Os.userInfo().username
  } catch {
    // Containers often run as a uid without a passwd entry: userInfo() throws there.
    username = `uid-${uid}`
  }
  // os.homedir() honours $HOME (as gh, git and npm do); userInfo().homedir would ignore it.
  return { username, uid, home: Os.homedir(), hostname: Os.hostname() }
}

/** `user@host:uid`, or `user:uid` when hostname isolation is off. */
export const namespaceOf = (
  id: OsIdentity,
  options: { readonly hostnameIsolation: boolean; readonly enabled: boolean; readonly principal?: string | undefined }
): string => {
  const base = !options.enabled ? "shared" : options.hostnameIsolation
    ? `${id.username}@${id.hostname}:${id.uid}`
    : `${id.username}:${id.uid}`
  return options.principal === undefined ? base : `${base}/principal:${options.principal}`
}

/** Expands a leading `~` and resolves against the working directory. */
export const expandHome = (path: Path.Path, home: string, p: string): string =>
  path.resolve(p === "~" ? home : p.startsWith("~/") ? path.join(home, p.slice(2)) : p)

const validPrincipal = /^[\x21-\x7e][\x20-\x7e]{0,255}$/

/**
 * Creates `dir` 0700 when missing; refuses it when it is not a directory, is
 * group/world-writable, or belongs to another user.
 */
export const ensurePrivateDirectory = Effect.fnUntraced(function*(dir: string, uid: number) {
  const fs = yield* FileSystem.FileSystem
  const cannotCreate = (e: { readonly message: string }) =>
    new UserContextError({ reason: { _tag: "CannotCreate", path: dir, detail: e.message } })
  const existed = yield* fs.exists(dir).pipe(Effect.mapError(cannotCreate))
  if (!existed) {
    yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 }).pipe(Effect.mapError(cannotCreate))
  }
  const info = yield* fs.stat(dir).pipe(Effect.mapError(cannotCreate))
  if (info.type !== "Directory") {
    return yield* new UserContextError({ reason: { _tag: "NotADirectory", path: dir } })
  }
  const owner = Option.getOrElse(info.uid, () => uid)
  if (uid >= 0 && owner !== uid) {
    return yield* new UserContextError({ reason: { _tag: "ForeignOwner", path: dir, owner, uid } })
  }
  if (uid >= 0 && (info.mode & 0o022) !== 0) {
    return yield* new UserContextError({ reason: { _tag: "InsecureDirectory", path: dir, mode: info.mode } })
  }
  // mkdir's mode is filtered by the umask; a directory we own and just made is tightened to exactly 0700.
  if (!existed && uid >= 0 && (info.mode & 0o077) !== 0) {
    yield* fs.chmod(dir, 0o700).pipe(Effect.ignore)
  }
})

const namespaceDirName = (namespace: string): string =>
  `ns-${Crypto.createHash("sha256").update(namespace).digest("hex").slice(0, 16)}`

/**
 * Builds the context for the OS user, or for `principal` inside it, and makes
 * sure its directories exist with safe permissions.
 */
export const make = Effect.fnUntraced(function*(options?: {
  readonly principal?: string | undefined
  readonly identity?: OsIdentity | undefined
}) {
  const config = yield* SessionConfig
  const path = yield* Path.Path
  const id = options?.identity ?? osIdentity()
  const principal = options?.principal
  if (principal !== undefined && !validPrincipal.test(principal)) {
    return yield* new UserContextError({ reason: { _tag: "InvalidPrincipal", principal } })
  }
  const uc = config.settings.userContext
  const namespace = namespaceOf(id, { ...uc, principal })
  const sessionDirectory = expandHome(path, id.home, uc.sessionDirectory)
  const storageDirectory = path.join(sessionDirectory, namespaceDirName(namespace))
  yield* ensurePrivateDirectory(sessionDirectory, id.uid)
  yield* ensurePrivateDirectory(storageDirectory, id.uid)
  return UserContext.of({
    username: id.username,
    uid: id.uid,
    home: id.home,
    hostname: id.hostname,
    principal: Option.fromUndefinedOr(principal),
    namespace,
    sessionDirectory,
    storageDirectory
  })
})

/** The OS user's context. */
export const layer = Layer.effect(UserContext, make())

/** The context of one principal of an embedding application (multi-tenant gateways). */
export const layerPrincipal = (principal: string) => Layer.effect(UserContext, make({ principal }))
