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
 */
import { Console, DateTime, Duration, Effect, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as Mcp from "../../Mcp.js"
import * as Sessions from "../../Sessions.js"
import * as Browser from "../Browser.js"
import { UsageError } from "../Errors.js"
import * as Output from "../Output.js"
import * as SessionView from "../SessionView.js"
import * as Services from "../Services.js"

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

const jsonLine = (value: unknown) => Console.log(JSON.stringify(value))

const usageNoProvider = Effect.fail(
  new UsageError({ detail: "name a provider (mtsession login <provider>), or an MCP server with --mcp <url>" })
)

export const login = Command.make("login", {
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
}, (args) =>
  // Bad usage is said before any storage is opened.
  Option.isNone(args.provider) && Option.isNone(args.mcp)
    ? usageNoProvider
    : Option.isSome(args.mcp) && !/^https?:\/\/[^/\s]+/i.test(args.mcp.value)
    ? Effect.fail(new UsageError({ detail: `--mcp takes the MCP server's http(s) URL, e.g. https://mcp.example.com/mcp` }))
    : Effect.gen(function*() {
    const json = yield* Output.Json
    const name = Option.getOrElse(args.provider, () => Option.match(args.mcp, { onNone: () => "", onSome: Mcp.providerNameOf }))
    const onEvent = (event: Sessions.LoginEvent): Effect.Effect<void> => {
      if (event._tag === "AuthorizationUrl") {
        return json
          ? jsonLine({ event: "authorization_url", url: event.url })
          : Console.error(`Open this URL in a browser to log in to ${name}:\n\n  ${event.url}\n`)
      }
      return json
        ? jsonLine({
          event: "device_code",
          verification_uri: event.verificationUri,
          verification_uri_complete: Option.getOrNull(event.verificationUriComplete),
          user_code: event.userCode,
          expires_in: event.expiresIn,
          interval: event.interval
        })
        : Console.error(
          `To log in to ${name}, open ${
            Option.getOrElse(event.verificationUriComplete, () => event.verificationUri)
          }\nand enter the code: ${event.userCode}\n(the code expires in ${Output.relative(event.expiresIn * 1000)})\n`
        )
    }
    if (Option.isSome(args.mcp)) {
      if (args.device) return yield* new UsageError({ detail: "--device is not available with --mcp (MCP servers sign in with a browser)" })
      return yield* loginMcp(args.mcp.value, {
        provider: Option.getOrUndefined(args.provider),
        scopes: args.scopes.length > 0 ? args.scopes : undefined,
        openBrowser: args.noBrowser ? undefined : Browser.open,
        onEvent,
        timeout: Duration.seconds(args.timeout)
      }, json)
    }
    if (Option.isNone(args.provider)) return yield* usageNoProvider
    const sessions = yield* Sessions.Sessions
    const metadata = yield* sessions.login(args.provider.value, {
      device: args.device,
      scopes: args.scopes.length > 0 ? args.scopes : undefined,
      resource: Option.getOrUndefined(args.resource),
      openBrowser: args.noBrowser ? undefined : Browser.open,
      onEvent,
      timeout: Duration.seconds(args.timeout)
    })
    const now = yield* DateTime.now
    const element = SessionView.element(metadata, now)
    if (json) return yield* jsonLine({ event: "logged_in", session: element })
    yield* Console.log(
      `Logged in to ${name}${Option.match(metadata.subject, { onNone: () => "", onSome: (s) => ` as ${s}` })}; session ${element.id} stored in ${element.backend}${
        element.has_refresh_token ? "" : " (no refresh token: you will need to log in again when it expires)"
      }.`
    )
  }).pipe(Effect.provide(mcpServices))
).pipe(
  Command.withDescription("Log in to a provider (authorization code + PKCE with a loopback redirect, or --device), or to an MCP server (--mcp)"),
  Command.withExamples([
    { command: "mtsession login github", description: "Open the browser and log in" },
    { command: "mtsession login --mcp https://mcp.example.com/mcp", description: "Log in to an MCP server (discovery, dynamic registration)" },
    { command: "mtsession login corp --device", description: "Log in from an SSH session with a code" }
  ])
)

/** Sessions plus the MCP service (discovery over Node's fetch). */
const mcpServices = Mcp.layer.pipe(Layer.provide(FetchHttpClient.layer), Layer.provideMerge(Services.sessions))

/** `login --mcp`: prints what was found and done; with `--json`, one `logged_in` event carrying the server too. */
const loginMcp = (serverUrl: string, options: Mcp.LoginOptions, json: boolean) =>
  Effect.gen(function*() {
    const mcp = yield* Mcp.Mcp
    const result = yield* mcp.login(serverUrl, options)
    const element = SessionView.element(result.session, yield* DateTime.now)
    const mcpView = {
      server: serverUrl,
      provider: result.binding.provider,
      resource: result.binding.resource,
      issuer: result.issuer,
      client: result.client
    }
    if (json) return yield* jsonLine({ event: "logged_in", session: element, mcp: mcpView })
    const client = result.client === "configured"
      ? "the configured client"
      : result.client === "reused"
      ? "the client registered earlier"
      : result.client === "replaced"
      ? "a newly registered client (the old registration was rejected)"
      : "a newly registered client"
    yield* Console.log(
      `Logged in to ${serverUrl} through ${result.issuer} with ${client}; session ${element.id} (provider ${result.binding.provider}) stored in ${element.backend}.`
    )
  })

export const logout = Command.make("logout", {
  provider,
  noRevoke: Flag.Boolean("no-revoke").pipe(Flag.withDescription("Remove the session without asking the server to revoke its tokens"), Flag.withDefault(false)),
  scopes,
  resource
}, (args) =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const sessions = yield* Sessions.Sessions
    const removed = yield* sessions.logout(args.provider, {
      revoke: !args.noRevoke,
      scopes: args.scopes.length > 0 ? args.scopes : undefined,
      resource: Option.getOrUndefined(args.resource)
    })
    if (json) return yield* Output.printJson({ provider: args.provider, removed })
    if (removed.length === 0) return yield* Console.log(`No session of ${args.provider} to log out of.`)
    for (const r of removed) {
      const how = r.revoked === "revoked"
        ? "tokens revoked at the server"
        : r.revoked === "unsupported"
        ? "the server has no revocation endpoint"
        : r.revoked === "skipped"
        ? "not revoked (--no-revoke)"
        : "revocation failed; the session was removed anyway"
      yield* Console.log(`Logged out of ${r.id}: ${how}.`)
    }
  }).pipe(Effect.provide(Services.sessions))
).pipe(Command.withDescription("Revoke (RFC 7009) and remove a provider's session(s)"))
