/**
 * `mtsession`: the command line of magictunnel-session. The only place that
 * runs an Effect: it parses argv, runs the command, prints a failure as one
 * secret-free sentence on stderr (JSON with `--json`), and sets the exit code
 * scripts rely on (see ExitCode.ts). The command tree is all that is
 * evaluated at start; each command's body is imported when it runs
 * (Handler.ts).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Logger } from "effect"
import { Command } from "effect/cli"
import { config } from "./commands/config.js"
import { doctor } from "./commands/doctor.js"
import { importCommand } from "./commands/import.js"
import { list } from "./commands/list.js"
import { login, logout } from "./commands/login.js"
import { mcp } from "./commands/mcp.js"
import { migrate } from "./commands/migrate.js"
import { refresh } from "./commands/refresh.js"
import { run } from "./commands/run.js"
import { recover, status } from "./commands/status.js"
import { token } from "./commands/token.js"
import * as RefreshLock from "../RefreshLock.js"
import * as Environment from "./Environment.js"
import * as ExitCode from "./ExitCode.js"
import * as Output from "./Output.js"

/** The package version, stamped by the bundler. */
declare const __MTSESSION_VERSION__: string
const version = typeof __MTSESSION_VERSION__ === "string" ? __MTSESSION_VERSION__ : "0.0.0-dev"

export const root = Command.make("mtsession").pipe(
  Command.withDescription(
    "OAuth 2.1 session persistence: log in once, stay logged in. Sessions are kept in the OS keyring or an encrypted file store."
  ),
  Command.withSubcommands([login, logout, token, refresh, status, recover, run, list, importCommand, migrate, doctor, config, mcp]),
  Command.withGlobalFlags([Output.ConfigPath, Output.Json])
)

/**
 * Logs go to stderr as one plain line each, so stdout stays the command's
 * output (a JSON document with `--json`).
 */
const stderrLogger = Logger.make<unknown, void>(({ logLevel, message }) => {
  const text = (Array.isArray(message) ? message : [message]).map((m) => typeof m === "string" ? m : String(m)).join(" ")
  const level = logLevel === "Info" ? "" : logLevel === "Warn" ? "warning: " : `${logLevel.toLowerCase()}: `
  process.stderr.write(`mtsession: ${level}${text}\n`)
})

// node:sqlite (the refresh lock) announces itself as experimental on Node 22;
// that line would reach every user's terminal, so it alone is hidden.
const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) =>
  RefreshLock.isSqliteExperimentalWarning(warning, rest[0]) ? undefined : emitWarning(warning, ...(rest as []))) as typeof process.emitWarning

// A reader that stops early (`mtsession list | head -1`) closes the pipe. Output then has nowhere
// to go: the command ends as Unix tools killed by SIGPIPE do (status 128 + 13), not with a stack
// trace. Logs whose reader went away are dropped; the command goes on.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e
  process.exit(ExitCode.brokenPipe)
})
process.stderr.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e
})

const argv = process.argv.slice(2)
const jsonErrors = argv.includes("--json")

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : "unexpected failure"

const report = (cause: Cause.Cause<unknown>): Effect.Effect<number> =>
  Effect.sync(() => {
    if (Cause.hasInterruptsOnly(cause)) return 130
    const failure = cause.reasons.find((r) => r._tag === "Fail")
    if (failure?._tag !== "Fail") {
      const die = cause.reasons.find((r) => r._tag === "Die")
      const defect = die?._tag === "Die" ? die.defect : undefined
      process.stderr.write(`mtsession: internal error: ${messageOf(defect)}\n`)
      return ExitCode.failure
    }
    const error = failure.error
    const code = ExitCode.of(error)
    // The parser has already printed the usage problem with the help text;
    // CommandExit without detail means the command printed its own report.
    const silent = (typeof error === "object" && error !== null && "_tag" in error && error._tag === "ShowHelp") ||
      messageOf(error) === ""
    if (!silent) {
      const message = messageOf(error)
      process.stderr.write(jsonErrors ? JSON.stringify({ error: { code, message } }) + "\n" : `mtsession: ${message}\n`)
    }
    return code
  })

Command.runWith(root, { version })(argv).pipe(
  Effect.exit,
  Effect.flatMap((exit) => Exit.isSuccess(exit) ? Effect.succeed(ExitCode.ok) : report(exit.cause)),
  Effect.provide(Logger.layer([stderrLogger])),
  Effect.provide(Environment.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // `run` is stopped by SIGINT/SIGTERM: that is its clean end (exit 0, as
    // service managers expect); any other command interrupted exits 130.
    teardown: (exit, onExit) =>
      onExit(
        Exit.isSuccess(exit) && typeof exit.value === "number"
          ? exit.value
          : Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
          ? (argv.find((a) => !a.startsWith("-")) === "run" ? ExitCode.ok : 130)
          : ExitCode.failure
      )
  })
)
