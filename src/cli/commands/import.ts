/**
 * `mtsession import <provider>`: stores an OAuth token response (RFC 6749
 * section 5.1 JSON, read from stdin) as a session of this user. The issuer and
 * client come from the provider's configuration. For migrating from another
 * tool and for CI, where a token is minted elsewhere. Tokens are read from
 * stdin only, never from argv. Body: `handlers/import.ts`.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1
 */
import { Argument, Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

const args = {
  provider: Argument.String("provider").pipe(Argument.withDescription("A provider configured under auth.oauth.providers")),
  scopes: Flag.String("scope").pipe(
    Flag.withDescription("Scope this session is for (repeatable); default: the provider's configured scopes"),
    Flag.atLeast(0)
  ),
  resource: Flag.String("resource").pipe(Flag.withDescription("RFC 8707 resource the token is bound to"), Flag.optional),
  subject: Flag.String("subject").pipe(Flag.withDescription("The user the token belongs to, for display"), Flag.optional)
}

/** The parsed arguments of `import`. */
export type Args = Command.Command.Config.Infer<typeof args>

export const importCommand = Command.make("import", args, Handler.lazy(() => import("../handlers/import.js"), (m) => m.importSession)).pipe(
  Command.withDescription("Store an OAuth token response (RFC 6749 §5.1 JSON on stdin) as a session"),
  Command.withExamples([
    { command: "mtsession import github < token.json", description: "Import a token minted elsewhere" },
    { command: "./mint-ci-token.sh | mtsession import ci --json", description: "Import a token response produced by a CI step" }
  ])
)
