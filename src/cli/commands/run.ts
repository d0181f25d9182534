/**
 * `mtsession run`: the long-running job. Startup recovery (when
 * `auto_recovery_on_startup`), then the refresh supervisor, periodic
 * revalidation and cleanup, in the foreground until SIGINT or SIGTERM; then
 * everything stops cleanly (the supervisor's scope closes, no refresh is
 * abandoned between the server's answer and the store).
 */
import { Effect, Layer } from "effect"
import { Command } from "effect/cli"
import * as Recovery from "../../Recovery.js"
import * as RefreshSupervisor from "../../RefreshSupervisor.js"
import * as Services from "../Services.js"

export const run = Command.make("run", {}, () =>
  Effect.gen(function*() {
    yield* Recovery.onStartup()
    const supervisor = yield* RefreshSupervisor.RefreshSupervisor
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
    Effect.provide(RefreshSupervisor.layer.pipe(Layer.provideMerge(Services.recovery)))
  )
).pipe(Command.withDescription("Recover sessions, then keep them refreshed in the foreground until SIGINT or SIGTERM"))
