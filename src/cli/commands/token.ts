/**
 * `mtsession token <provider>`: prints an access token and a newline on
 * stdout, refreshing first when it would not stay valid for `--min-ttl`
 * seconds. The one command that prints a secret; meant for
 * `curl -H "Authorization: Bearer $(mtsession token github)"`.
 * Exit 3 when the user must log in again. Body: `handlers/token.ts`.
 */
import { Argument, Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

const args = {
  provider: Argument.String("provider").pipe(Argument.withDescription("A provider configured under auth.oauth.providers")),
  scopes: Flag.String("scope").pipe(Flag.withDescription("Scope the token must carry (repeatable)"), Flag.atLeast(0)),
  resource: Flag.String("resource").pipe(Flag.withDescription("RFC 8707 resource the token must be bound to"), Flag.optional),
  minTtl: Flag.Int("min-ttl").pipe(
    Flag.withDescription("Seconds the token must stay valid; refreshed first otherwise (default 60)"),
    Flag.withDefault(60)
  )
}

/** The parsed arguments of `token`. */
export type Args = Command.Command.Config.Infer<typeof args>

export const token = Command.make("token", args, Handler.lazy(() => import("../handlers/token.js"), (m) => m.token)).pipe(
  Command.withDescription("Print a valid access token (refreshing first when needed); exit 3 when re-authentication is needed"),
  Command.withExamples([
    { command: "curl -H \"Authorization: Bearer $(mtsession token github)\" https://api.github.com/user", description: "Use a token in a script" }
  ])
)
