/**
 * `mtsession login <provider>` and `mtsession logout <provider>`.
 *
 * Login runs the authorization code grant with PKCE and a loopback redirect
 * (RFC 8252), or the device grant (RFC 8628) with `--device`, and stores the
 * session. The authorization URL is always printed; the browser is opened
 * unless `--no-browser`. With `--json` every step is one JSON object per line
 * on stdout: `authorization_url` or `device_code`, then `logged_in`.
 *
 * With `--mcp <server-url>` it logs in to an MCP server instead (see
 * `Mcp.ts`): the provider argument is optional and names the sessions'
 * provider (default `mcp-<host>`); when it is a configured provider, its
 * client is used instead of a dynamically registered one.
 *
 * Logout revokes the refresh and access tokens where the server has a
 * revocation endpoint (RFC 7009) and removes the session.
 * Bodies: `handlers/login.ts`.
 */
import { Argument, Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

const body = () => import("../handlers/login.js")

const provider = Argument.String("provider").pipe(Argument.withDescription("A provider configured under auth.oauth.providers"))
const scopes = Flag.String("scope").pipe(
  Flag.withDescription("Scope to request (repeatable); default: the provider's configured scopes"),
  Flag.atLeast(0)
)
const resource = Flag.String("resource").pipe(Flag.withDescription("RFC 8707 resource indicator"), Flag.optional)
const mcpServer = Flag.String("mcp").pipe(
  Flag.withDescription(
    "Log in to the MCP server at this URL: discovery (RFC 9728, RFC 8414), dynamic client registration (RFC 7591) unless the provider argument names a configured provider, PKCE and the server as resource (RFC 8707). The provider argument is then optional (default mcp-<host>)"
  ),
  Flag.optional
)

const loginArgs = {
  provider: Argument.String("provider").pipe(
    Argument.withDescription("A provider configured under auth.oauth.providers (with --mcp: optional, the name the sessions are stored under)"),
    Argument.optional
  ),
  mcp: mcpServer,
  device: Flag.Boolean("device").pipe(Flag.withDescription("Use the device grant (RFC 8628): for SSH, containers and machines without a browser"), Flag.withDefault(false)),
  noBrowser: Flag.Boolean("no-browser").pipe(Flag.withDescription("Do not open a browser; print the URL only"), Flag.withDefault(false)),
  scopes,
  resource,
  timeout: Flag.Int("timeout").pipe(Flag.withDescription("Seconds to wait for the approval (default 300)"), Flag.withDefault(300))
}

const logoutArgs = {
  provider,
  noRevoke: Flag.Boolean("no-revoke").pipe(Flag.withDescription("Remove the session without asking the server to revoke its tokens"), Flag.withDefault(false)),
  scopes,
  resource
}

/** The parsed arguments of `login`. */
export type LoginArgs = Command.Command.Config.Infer<typeof loginArgs>
/** The parsed arguments of `logout`. */
export type LogoutArgs = Command.Command.Config.Infer<typeof logoutArgs>

export const login = Command.make("login", loginArgs, Handler.lazy(body, (m) => m.login)).pipe(
  Command.withDescription("Log in to a provider (authorization code + PKCE with a loopback redirect, or --device), or to an MCP server (--mcp)"),
  Command.withExamples([
    { command: "mtsession login github", description: "Open the browser and log in" },
    { command: "mtsession login --mcp https://mcp.example.com/mcp", description: "Log in to an MCP server (discovery, dynamic registration)" },
    { command: "mtsession login corp --device", description: "Log in from an SSH session with a code" }
  ])
)

export const logout = Command.make("logout", logoutArgs, Handler.lazy(body, (m) => m.logout)).pipe(
  Command.withDescription("Revoke (RFC 7009) and remove a provider's session(s)")
)
