/**
 * Embedding magictunnel-session in an Effect program: a tiny "gateway" that
 * calls an upstream API with a bearer token from the Sessions layer.
 *
 * The user logs in once (`mtsession login github`); from then on this
 * program, any number of its instances, and every other process of the same
 * user get a valid token: from memory when it is valid, refreshed once per
 * grant when it is not, recovered from the OS keyring or the encrypted file
 * store after a restart. The refresh supervisor keeps sessions fresh in the
 * background while the program runs.
 *
 *   npx tsx examples/gateway.ts github https://api.github.com/user
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Duration, Effect, Layer, Redacted } from "effect"
import * as Main from "../layers/Main.js"
import * as Recovery from "../src/Recovery.js"
import * as RefreshSupervisor from "../src/RefreshSupervisor.js"
import * as Sessions from "../src/Sessions.js"

const [provider = "github", url = "https://api.github.com/user"] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  // A token that stays valid for at least the duration of this request.
  const token = yield* sessions.getAccessToken(provider, { minTtl: Duration.seconds(30) })
  // Redacted until the one place that must see it: the Authorization header.
  const response = yield* Effect.tryPromise(() =>
    fetch(url, { headers: { authorization: `Bearer ${Redacted.value(token)}` } })
  )
  yield* Console.log(`${url}: HTTP ${response.status}`)
}).pipe(
  // ReauthRequired carries the sentence to show the user; nothing to retry.
  Effect.catchTag("ReauthRequired", (e) => Console.error(e.message))
)

// Configuration (file + MAGICTUNNEL_* env), user context, store, lock, OAuth
// client and Sessions; then startup recovery and the background supervisor.
const AppLayer = RefreshSupervisor.layer.pipe(
  Layer.provideMerge(Recovery.layerStartup()),
  Layer.provideMerge(Main.layerSessions({}))
)

program.pipe(Effect.provide(AppLayer), NodeRuntime.runMain)
