/**
 * A worker process of the 8-processes benchmark (`Processes.ts`, which
 * bundles it with esbuild), warm before it says "ready", as a process that
 * has been running for a while is: its refresh path has run and been
 * compiled, its connections and files are open.
 *
 *   ours <shared provider> <own provider> <warm-ups>
 *     composes the real stack from MAGICTUNNEL_CONFIG_PATH and
 *     MAGICTUNNEL_TOKEN_ENCRYPTION_KEY; warms up by taking its own session
 *     through the measured path <warm-ups> times (the stored access token made
 *     to look expired, the cached one dropped, then `getAccessToken`); prints
 *     "ready"; on "go", asks for the shared provider's token and prints
 *     {"token": ...} (or {"error": ...}).
 *   raw <issuer> <client id> <warm-ups>
 *     reads its own grant's refresh token from the first stdin line (never
 *     argv); discovers the issuer and refreshes that grant <warm-ups> times
 *     with plain oauth4webapi and the global fetch; prints "ready"; on "go",
 *     refreshes once more and prints {"token": ..., "next": <rotated refresh
 *     token>} so the next round can continue the chain.
 */
import * as Readline from "node:readline"
import { DateTime, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as oauth from "oauth4webapi"
import * as AuditLog from "../src/AuditLog.js"
import * as RefreshLock from "../src/RefreshLock.js"
import * as Sessions from "../src/Sessions.js"
import * as TokenStore from "../src/TokenStore.js"
import { processConfig, stack } from "../test/support/SessionsStack.js"

const say = (line: string) => process.stdout.write(`${line}\n`)

const lines = Readline.createInterface({ input: process.stdin })
const waiting: Array<(line: string) => void> = []
const buffered: Array<string> = []
lines.on("line", (line) => {
  const next = waiting.shift()
  if (next === undefined) buffered.push(line)
  else next(line)
})
const nextLine = () => {
  const line = buffered.shift()
  return line !== undefined ? Promise.resolve(line) : new Promise<string>((resolve) => waiting.push(resolve))
}
const go = async () => {
  while ((await nextLine()).trim() !== "go") {
    // Only "go" starts the measured request.
  }
}

// node:sqlite (the file lock) announces itself as experimental: not this benchmark's business.
const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) =>
  RefreshLock.isSqliteExperimentalWarning(warning, rest[0])
    ? undefined
    : (emitWarning as (...args: Array<unknown>) => void)(warning, ...rest)) as typeof process.emitWarning

const ours = async (shared: string, own: string, warmUps: number) => {
  // With the audit log file, as the default configuration has it.
  const runtime = ManagedRuntime.make(AuditLog.layer.pipe(Layer.provideMerge(stack(processConfig))))
  const ownId = TokenStore.sessionIdOf({ provider: own, resource: undefined })
  const warmUp = Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    const invalidation = yield* Sessions.CacheInvalidation
    const store = yield* TokenStore.TokenStore
    for (let i = 0; i < warmUps; i++) {
      const record = yield* store.get(ownId)
      yield* store.put(new TokenStore.SessionRecord({ ...record, expiresAt: DateTime.subtract(yield* DateTime.now, { seconds: 1 }) }))
      yield* invalidation.invalidate(ownId, Option.none())
      yield* sessions.getAccessToken(own)
    }
  })
  await runtime.runPromise(warmUp)
  say("ready")
  await go()
  const line = await runtime.runPromise(
    Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      return yield* sessions.getAccessToken(shared).pipe(
        Effect.map((token) => JSON.stringify({ token: Redacted.value(token) })),
        Effect.catch((e) => Effect.succeed(JSON.stringify({ error: e._tag, message: e.message })))
      )
    })
  )
  say(line)
  await runtime.dispose()
  return line.startsWith("{\"token\"")
}

const raw = async (issuerUrl: string, clientId: string, warmUps: number) => {
  let refreshToken = (await nextLine()).trim()
  const issuer = new URL(issuerUrl)
  const insecure = { [oauth.allowInsecureRequests]: true }
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
  const client: oauth.Client = { client_id: clientId }
  const refresh = async () => {
    const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, insecure)
    const body = await oauth.processRefreshTokenResponse(as, client, response)
    refreshToken = body.refresh_token!
    return body.access_token
  }
  for (let i = 0; i < warmUps; i++) await refresh()
  say("ready")
  await go()
  const token = await refresh()
  say(JSON.stringify({ token, next: refreshToken }))
  return true
}

const [mode, a, b, c] = process.argv.slice(2)
const warmUps = Number(c)
const main = mode === "ours" && a !== undefined && b !== undefined && Number.isInteger(warmUps)
  ? ours(a, b, warmUps)
  : mode === "raw" && a !== undefined && b !== undefined && Number.isInteger(warmUps)
  ? raw(a, b, warmUps)
  : undefined
if (main === undefined) {
  process.stderr.write("usage: processes-worker ours <shared provider> <own provider> <warm-ups> | raw <issuer> <client id> <warm-ups>\n")
  process.exit(2)
}
main.then(
  (ok) => process.exit(ok ? 0 : 1),
  (e: unknown) => {
    process.stderr.write(`processes-worker failed: ${String(e)}\n`)
    process.exit(1)
  }
)
