/**
 * `mtsession mcp token <server-url>` and `mtsession mcp discover <server-url>`.
 *
 * `token` prints a valid access token for an MCP server whose session was
 * made by `mtsession login --mcp <server-url>` (refreshing first when
 * needed; exit 3 when a login is needed). `discover` prints what the
 * server publishes: its challenge, protected resource metadata (RFC 9728)
 * and authorization server metadata (RFC 8414), without logging in.
 * Bodies: `handlers/mcp.ts`.
 */
import { Argument, Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

const body = () => import("../handlers/mcp.js")
const serverUrl = Argument.String("server-url").pipe(Argument.withDescription("The MCP server's URL"))

const tokenArgs = {
  serverUrl,
  provider: Flag.String("provider").pipe(Flag.withDescription("Provider name of the sessions, when not mcp-<host>"), Flag.optional),
  scopes: Flag.String("scope").pipe(Flag.withDescription("Scope the token must carry (repeatable)"), Flag.atLeast(0)),
  minTtl: Flag.Int("min-ttl").pipe(Flag.withDescription("Seconds the token must stay valid (default 60)"), Flag.withDefault(60))
}
const discoverArgs = { serverUrl }

/** The parsed arguments of `mcp token`. */
export type TokenArgs = Command.Command.Config.Infer<typeof tokenArgs>
/** The parsed arguments of `mcp discover`. */
export type DiscoverArgs = Command.Command.Config.Infer<typeof discoverArgs>

const token = Command.make("token", tokenArgs, Handler.lazy(body, (m) => m.token)).pipe(
  Command.withDescription("Print a valid access token for an MCP server (after `mtsession login --mcp <url>`)")
)

const discover = Command.make("discover", discoverArgs, Handler.lazy(body, (m) => m.discover)).pipe(
  Command.withDescription("Show an MCP server's authorization metadata (RFC 9728, RFC 8414) without logging in")
)

export const mcp = Command.make("mcp").pipe(
  Command.withDescription("MCP servers: tokens and discovery (log in with `mtsession login --mcp <url>`)"),
  Command.withSubcommands([token, discover])
)
