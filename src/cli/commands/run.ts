/**
 * `mtsession run`: the long-running job. Startup recovery (when
 * `auto_recovery_on_startup`), then the refresh supervisor, periodic
 * revalidation and cleanup, in the foreground until SIGINT or SIGTERM; then
 * everything stops cleanly (the supervisor's scope closes, no refresh is
 * abandoned between the server's answer and the store).
 *
 * With `--status-port N` it also serves `/health/auth`, `/status`, `/metrics`
 * (Prometheus export only) and a status page (`StatusServer.ts`), on
 * 127.0.0.1 unless `--status-host` says otherwise; a non-loopback host needs
 * a bearer token in `MAGICTUNNEL_STATUS_TOKEN`.
 */
import { Config, DateTime, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as StoreFromConfig from "../../../layers/StoreFromConfig.js"
import * as Recovery from "../../Recovery.js"
import * as RefreshSupervisor from "../../RefreshSupervisor.js"
import * as StatusServer from "../../StatusServer.js"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import * as Services from "../Services.js"
import { verifiedList } from "./list.js"
import { statusElement } from "./status.js"

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

export const run = Command.make("run", {
  statusPort: Flag.Int("status-port").pipe(
    Flag.withDescription("Serve /health/auth, /status, /metrics and a status page on this port (0: any free port)"),
    Flag.optional
  ),
  statusHost: Flag.String("status-host").pipe(
    Flag.withDescription(`Address of the status server (default 127.0.0.1; any other needs ${StatusServer.tokenEnv})`),
    Flag.withDefault("127.0.0.1")
  )
}, ({ statusHost, statusPort }) =>
  Effect.gen(function*() {
    yield* Recovery.onStartup()
    const supervisor = yield* RefreshSupervisor.RefreshSupervisor
    if (Option.isSome(statusPort)) {
      const token = yield* Config.option(Config.Redacted(StatusServer.tokenEnv)).pipe(
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
).pipe(Command.withDescription("Recover sessions, then keep them refreshed in the foreground until SIGINT or SIGTERM"))
