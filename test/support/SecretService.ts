/**
 * A real Secret Service for tests: a private D-Bus session bus and an unlocked
 * gnome-keyring in a temporary HOME, torn down afterwards. Nothing of the
 * developer's own session (bus, keyrings) is touched.
 *
 * The bus runs from a generated config with no activatable services, so
 * nothing starts behind the test's back: `startBus` alone is "a D-Bus session
 * with no Secret Service". `start` adds `gnome-keyring-daemon --foreground
 * --unlock --components=secrets` (password on stdin) and waits, bounded, until
 * the daemon owns `org.freedesktop.secrets` and its default collection exists
 * unlocked. Failing to start is an error, never a skip: the suite then fails
 * and says what is missing (Debian: `gnome-keyring dbus libsecret-tools`).
 *
 * libdbus reads DBUS_SESSION_BUS_ADDRESS once per process, so a test file
 * points the process at its bus before the first keyring call
 * (`useSecretService`), and checks other buses from a child process.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll } from "@effect/vitest"
import { Cause, Data, Effect, Exit, Option, Schedule, Scope } from "effect"

/** The harness could not do what it was asked; the message says why. */
export class HarnessError extends Data.TaggedError("HarnessError")<{ readonly message: string }> {}

/** A private session bus. */
export interface Bus {
  readonly address: string
  readonly directory: string
  /** HOME, XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS and PATH for processes on this bus. */
  readonly env: Readonly<Record<string, string>>
}

/** A running, unlocked Secret Service on a private bus. */
export interface SecretService extends Bus {
  readonly daemonPid: number
  /** Locks the default collection: later reads of stored items and all writes need an unlock prompt. */
  readonly lock: Effect.Effect<void, HarnessError>
  /** Stops the daemon (SIGSTOP) until the scope closes: a Secret Service that does not answer. */
  readonly pause: Effect.Effect<void, never, Scope.Scope>
  /** `secret-tool lookup`: the secret stored under these attributes, through the daemon. */
  readonly lookup: (attributes: Readonly<Record<string, string>>) => Effect.Effect<Option.Option<string>, HarnessError>
}

const installHint = "install the Debian packages gnome-keyring, dbus and libsecret-tools (see .ci/run)"

interface Output {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion, bounded. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly env: Readonly<Record<string, string>>; readonly timeoutMs?: number; readonly input?: string }
): Effect.Effect<Output, HarnessError> =>
  Effect.callback<Output, HarnessError>((resume) => {
    const child = ChildProcess.spawn(command, args, { env: { ...options.env }, stdio: ["pipe", "pipe", "pipe"] })
    // A child that exits before reading its stdin makes the write fail with EPIPE: expected, not a test error.
    child.stdin.on("error", () => {})
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 10_000)
    child.on("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(new HarnessError({ message: `cannot run ${command}: ${e.message}; ${installHint}` })))
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, stdout, stderr }))
    })
    child.stdin.end(options.input ?? "")
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const busConfig = (socketDir: string) => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=${socketDir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

/** Spawns a long-running process, killed (SIGCONT, SIGTERM, then SIGKILL) when the scope closes. */
const daemon = (command: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>>, input?: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(command, args, { env: { ...env }, stdio: ["pipe", "pipe", "pipe"] })
      const log = { stdout: "", stderr: "", exited: false, spawnError: undefined as string | undefined }
      child.stdout.on("data", (d) => (log.stdout += d))
      child.stderr.on("data", (d) => (log.stderr += d))
      child.on("error", (e) => (log.spawnError = e.message))
      child.on("exit", () => (log.exited = true))
      child.stdin.on("error", () => {})
      child.stdin.end(input ?? "")
      return { child, log }
    }),
    ({ child, log }) =>
      Effect.callback<void>((resume) => {
        if (log.exited || child.pid === undefined) return resume(Effect.void)
        const timer = setTimeout(() => child.kill("SIGKILL"), 2_000)
        child.once("exit", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        child.kill("SIGCONT")
        child.kill("SIGTERM")
      })
  )

/** Polls `check` every 50 ms for up to 10 s; fails with `what` and the last reason. */
const waitUntil = <A>(what: string, check: Effect.Effect<A, HarnessError>) =>
  check.pipe(
    Effect.retry(Schedule.spaced(50).pipe(Schedule.upTo({ times: 200 }))),
    Effect.mapError((e) => new HarnessError({ message: `${what}: ${e.message}` }))
  )

const tempDirectory = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mts-ss-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A private session bus with no Secret Service (and nothing activatable). */
export const startBus: Effect.Effect<Bus, HarnessError, Scope.Scope> = Effect.gen(function*() {
  const directory = yield* tempDirectory
  const home = Path.join(directory, "home")
  const runtime = Path.join(directory, "run")
  const sockets = Path.join(directory, "bus")
  for (const d of [home, runtime, sockets]) Fs.mkdirSync(d, { mode: 0o700 })
  const config = Path.join(directory, "bus.conf")
  Fs.writeFileSync(config, busConfig(sockets))
  const base = { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: process.env["PATH"] ?? "/usr/bin:/bin" }
  const bus = yield* daemon("dbus-daemon", ["--config-file", config, "--nofork", "--print-address=1"], base)
  const address = yield* waitUntil(
    "the D-Bus daemon did not print its address",
    Effect.suspend(() => {
      if (bus.log.spawnError !== undefined) {
        return Effect.die(new HarnessError({ message: `cannot start dbus-daemon: ${bus.log.spawnError}; ${installHint}` }))
      }
      if (bus.log.exited) {
        return Effect.die(new HarnessError({ message: `dbus-daemon exited: ${bus.log.stderr.trim()}` }))
      }
      const line = bus.log.stdout.split("\n")[0] ?? ""
      return bus.log.stdout.includes("\n") && line.startsWith("unix:")
        ? Effect.succeed(line.trim())
        : Effect.fail(new HarnessError({ message: "no address yet" }))
    })
  )
  return { address, directory, env: { ...base, DBUS_SESSION_BUS_ADDRESS: address } }
}).pipe(Effect.catchDefect((d) => Effect.fail(d instanceof HarnessError ? d : new HarnessError({ message: String(d) }))))

const dbusSend = (bus: Bus, dest: string, objectPath: string, method: string, ...args: Array<string>) =>
  run("dbus-send", [`--bus=${bus.address}`, "--print-reply", `--dest=${dest}`, objectPath, method, ...args], { env: bus.env })

/** A Secret Service (gnome-keyring, default collection unlocked) on a private bus of its own. */
export const start: Effect.Effect<SecretService, HarnessError, Scope.Scope> = Effect.gen(function*() {
  const bus = yield* startBus
  const password = Crypto.randomBytes(12).toString("hex")
  const keyring = yield* daemon(
    "gnome-keyring-daemon",
    ["--foreground", "--unlock", "--components=secrets"],
    bus.env,
    password
  )
  const alive = Effect.suspend(() =>
    keyring.log.spawnError !== undefined
      ? Effect.die(new HarnessError({ message: `cannot start gnome-keyring-daemon: ${keyring.log.spawnError}; ${installHint}` }))
      : keyring.log.exited
      ? Effect.die(new HarnessError({ message: `gnome-keyring-daemon exited: ${keyring.log.stderr.trim()}` }))
      : Effect.void
  )
  const owned = alive.pipe(
    Effect.andThen(dbusSend(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.secrets")),
    Effect.flatMap((o) =>
      o.stdout.includes("boolean true") ? Effect.void : Effect.fail(new HarnessError({ message: "org.freedesktop.secrets has no owner yet" }))
    )
  )
  const defaultCollection = alive.pipe(
    Effect.andThen(dbusSend(bus, "org.freedesktop.secrets", "/org/freedesktop/secrets", "org.freedesktop.Secret.Service.ReadAlias", "string:default")),
    Effect.flatMap((o) => {
      const m = /object path "([^"]+)"/.exec(o.stdout)
      return m !== null && m[1] !== "/" ? Effect.succeed(m[1]!) : Effect.fail(new HarnessError({ message: "no default collection yet" }))
    })
  )
  const unlocked = (collection: string) =>
    dbusSend(bus, "org.freedesktop.secrets", collection, "org.freedesktop.DBus.Properties.Get", "string:org.freedesktop.Secret.Collection", "string:Locked").pipe(
      Effect.flatMap((o) =>
        o.stdout.includes("boolean false") ? Effect.void : Effect.fail(new HarnessError({ message: `default collection ${collection} is locked` }))
      )
    )
  yield* waitUntil("gnome-keyring never owned org.freedesktop.secrets on the private bus", owned)
  const collection = yield* waitUntil("gnome-keyring has no default collection", defaultCollection)
  yield* waitUntil("the default collection did not unlock", unlocked(collection))

  const pid = keyring.child.pid
  if (pid === undefined) return yield* new HarnessError({ message: "gnome-keyring-daemon has no pid" })
  return {
    ...bus,
    daemonPid: pid,
    lock: dbusSend(bus, "org.freedesktop.secrets", "/org/freedesktop/secrets", "org.freedesktop.Secret.Service.Lock", `array:objpath:${collection}`).pipe(
      Effect.flatMap((o) =>
        o.code === 0 ? Effect.void : Effect.fail(new HarnessError({ message: `Lock failed: ${o.stderr.trim()}` }))
      )
    ),
    pause: Effect.acquireRelease(
      Effect.sync(() => void keyring.child.kill("SIGSTOP")),
      () => Effect.sync(() => void keyring.child.kill("SIGCONT"))
    ),
    lookup: (attributes) =>
      run("secret-tool", ["lookup", ...Object.entries(attributes).flat()], { env: bus.env }).pipe(
        Effect.map((o) => (o.code === 0 ? Option.some(o.stdout) : Option.none()))
      )
  } satisfies SecretService
}).pipe(Effect.catchDefect((d) => Effect.fail(d instanceof HarnessError ? d : new HarnessError({ message: String(d) }))))

/** Where the process is pointed when the harness did not start: every keyring call then fails, saying so. */
export const deadBusAddress = "unix:path=/nonexistent/the-test-secret-service-did-not-start"

/**
 * Starts a Secret Service before the tests of the calling file and points this
 * process at it (before any keyring call: libdbus reads the address once);
 * stops it after them. If it cannot start, the process is pointed at a dead
 * bus (never at the developer's own keyring), every keyring test fails, and
 * the accessor throws the cause.
 */
export const useSecretService = (): (() => SecretService) => {
  let current: { readonly service: SecretService; readonly scope: Scope.Closeable } | undefined
  let failure = "not started yet"
  const previous = process.env["DBUS_SESSION_BUS_ADDRESS"]
  beforeAll(async () => {
    process.env["DBUS_SESSION_BUS_ADDRESS"] = deadBusAddress
    const scope = Effect.runSync(Scope.make())
    const exit = await Effect.runPromiseExit(Scope.provide(start, scope))
    if (Exit.isFailure(exit)) {
      await Effect.runPromise(Scope.close(scope, exit))
      failure = `cannot start the Secret Service for the tests: ${Cause.pretty(exit.cause)}`
      return
    }
    current = { service: exit.value, scope }
    process.env["DBUS_SESSION_BUS_ADDRESS"] = exit.value.address
  })
  afterAll(async () => {
    if (previous === undefined) delete process.env["DBUS_SESSION_BUS_ADDRESS"]
    else process.env["DBUS_SESSION_BUS_ADDRESS"] = previous
    if (current !== undefined) await Effect.runPromise(Scope.close(current.scope, Exit.void))
  })
  return () => {
    if (current === undefined) throw new Error(failure)
    return current.service
  }
}
