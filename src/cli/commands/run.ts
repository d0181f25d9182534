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
 * a bearer token in `MAGICTUNNEL_STATUS_TOKEN`. Body: `handlers/run.ts`.
 */
import { Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

/**
 * `StatusServer.tokenEnv`, spelt out so that the command tree does not load
 * the HTTP server (`handlers/run.ts` checks at compile time that they agree).
 */
export const statusTokenEnv = "MAGICTUNNEL_STATUS_TOKEN"

const args = {
  statusPort: Flag.Int("status-port").pipe(
    Flag.withDescription("Serve /health/auth, /status, /metrics and a status page on this port (0: any free port)"),
    Flag.optional
  ),
  statusHost: Flag.String("status-host").pipe(
    Flag.withDescription(`Address of the status server (default 127.0.0.1; any other needs ${statusTokenEnv})`),
    Flag.withDefault("127.0.0.1")
  )
}

/** The parsed arguments of `run`. */
export type Args = Command.Command.Config.Infer<typeof args>

export const run = Command.make("run", args, Handler.lazy(() => import("../handlers/run.js"), (m) => m.run)).pipe(
  Command.withDescription("Recover sessions, then keep them refreshed in the foreground until SIGINT or SIGTERM")
)
