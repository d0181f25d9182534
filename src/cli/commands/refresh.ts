/**
 * `mtsession refresh <provider> | --all`: refreshes sessions now, through the
 * same single-flight, cross-process-locked path as everything else (a token
 * another process just obtained is reused, not refreshed twice). Without
 * `--force`, sessions still valid beyond the refresh threshold are left alone.
 * Body: `handlers/refresh.ts`.
 */
import { Argument, Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

const args = {
  provider: Argument.String("provider").pipe(Argument.withDescription("Refresh this provider's sessions"), Argument.optional),
  all: Flag.Boolean("all").pipe(Flag.withDescription("Refresh every session"), Flag.withDefault(false)),
  force: Flag.Boolean("force").pipe(Flag.withDescription("Refresh even sessions that are still fresh"), Flag.withDefault(false))
}

/** The parsed arguments of `refresh`. */
export type Args = Command.Command.Config.Infer<typeof args>

export const refresh = Command.make("refresh", args, Handler.lazy(() => import("../handlers/refresh.js"), (m) => m.refresh)).pipe(
  Command.withDescription("Refresh a provider's sessions, or --all, now (once per grant, even across processes)")
)
