/**
 * The body of `mtsession run` (`commands/run.ts`): recovery, the refresh
 * supervisor (with the fleet's sync and claims on the Redis store), the
 * periodic revalidation, and the status server when `--status-port` asks.
 */
import { Config, DateTime, Effect, Layer, Option } from "effect"
import * as StoreFromConfig from "../../../layers/StoreFromConfig.js"
import * as Recovery from "../../Recovery.js"
import * as RefreshSupervisor from "../../RefreshSupervisor.js"
import * as StatusServer from "../../StatusServer.js"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import { type Args, statusTokenEnv } from "../commands/run.js"
import * as Services from "../Services.js"
import { verifiedList } from "./list.js"
import { statusElement } from "./status.js"

// The help text names the variable without loading this module: both must be the same.
const sameTokenEnv: typeof StatusServer.tokenEnv = statusTokenEnv

/** The `status --json` document, as the status server serves it. */
const statusDocument = Effect.gen(function*() {
  const store = yield* TokenStore.TokenStore
  const choice = yield* StoreSelection.StoreSelection
  const sessions = yield* verifiedList
  const now = yield* DateTime.now
  return {
    backend: store.backend,
    backend_reason: choice.reason,
    insecure: store.insecure,
    sessions: sessions.map((m) => statusElement(m, now))
      .sort((a, b) => a.provider.localeCompare(b.provider) || a.id.localeCompare(b.id))
  }
})

export const run = ({ statusHost, statusPort }: Args) =>
  Effect.gen(function*() {
    yield* Recovery.onStartup()
    const supervisor = yield* RefreshSupervisor.RefreshSupervisor
    if (Option.isSome(statusPort)) {
      const token = yield* Config.option(Config.Redacted(sameTokenEnv)).pipe(
        Effect.catch(() => Effect.succeed(Option.none()))
      )
      const document = yield* Effect.context<TokenStore.TokenStore | StoreSelection.StoreSelection>()
      yield* StatusServer.serve({
        port: statusPort.value,
        host: statusHost,
        token,
        document: Effect.provideContext(statusDocument, document)
      })
    }
    const s = yield* supervisor.status
    yield* Effect.logInfo(
      s.enabled
        ? `refresh supervisor running: ${s.sessions.length} session(s) watched; stop with Ctrl-C or SIGTERM`
        : "background refresh is disabled (token_refresh.background_refresh_enabled); waiting for a signal"
    )
    yield* Effect.forkScoped(Recovery.runPeriodic())
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    // With the Redis store, other instances' changes re-sweep the supervisor and update the
    // token cache at once, and each session's background refresh is claimed by one instance.
    Effect.provide(
      StoreFromConfig.fleetSync.pipe(
        Layer.provideMerge(RefreshSupervisor.layer),
        Layer.provideMerge(StoreFromConfig.claims),
        Layer.provideMerge(Services.recovery)
      )
    )
  )
