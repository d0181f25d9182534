/**
 * A separate process for the multi-process tests of Sessions: it composes
 * the service as a real process would (the configuration file named by
 * `MAGICTUNNEL_CONFIG_PATH`, the data key from
 * `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY`, the encrypted file store and the file
 * lock in the configured session directory, the real OAuth client) and asks
 * for one access token.
 *
 *   token <provider> [--wait]
 *     prints "ready" once its services are up; with --wait, then waits for a
 *     "go" line on stdin (so that several workers ask at the same moment);
 *     prints one JSON line, {"token": ...} or {"error": <tag>, "message": ...},
 *     and exits 0 (token) or 1.
 *
 * test/integration/MultiProcess.test.ts bundles it with esbuild and runs the
 * bundle with node (a tenth of tsx's start-up, which matters for 8 processes
 * on 2 cores). By hand: `npx tsx test/support/sessions-worker.ts token test`.
 */
import { Effect, Redacted } from "effect"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as Sessions from "../../src/Sessions.js"
import { processConfig, stack } from "./SessionsStack.js"

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const go = Effect.callback<void>((resume) => {
  let buffered = ""
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString()
    if (buffered.includes("go")) resume(Effect.void)
  }
  process.stdin.on("data", onData)
  return Effect.sync(() => {
    process.stdin.off("data", onData)
    process.stdin.pause()
  })
})

const [mode, provider, ...flags] = process.argv.slice(2)
if (mode !== "token" || provider === undefined) {
  process.stderr.write("usage: sessions-worker token <provider> [--wait]\n")
  process.exit(2)
}

// node:sqlite (the file lock) announces itself as experimental: not this test's business.
const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) =>
  RefreshLock.isSqliteExperimentalWarning(warning, rest[0])
    ? undefined
    : (emitWarning as (...args: Array<unknown>) => void)(warning, ...rest)) as typeof process.emitWarning

const program = Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  yield* say("ready")
  if (flags.includes("--wait")) yield* go
  const line = yield* sessions.getAccessToken(provider).pipe(
    Effect.map((token) => JSON.stringify({ token: Redacted.value(token) })),
    Effect.catch((e) => Effect.succeed(JSON.stringify({ error: e._tag, message: e.message })))
  )
  yield* say(line)
  return line.startsWith("{\"token\"")
})

Effect.runPromise(program.pipe(Effect.provide(stack(processConfig)))).then(
  (ok) => process.exit(ok ? 0 : 1),
  (e: unknown) => {
    process.stderr.write(`sessions-worker failed: ${String(e)}\n`)
    process.exit(1)
  }
)
