/**
 * `mtsession mcp token <server-url>` and `mtsession mcp discover <server-url>`.
 *
 * `token` prints a valid access token for an MCP server whose session was
 * made by `mtsession login --mcp <server-url>` (refreshing first when
 * needed; exit 3 when a login is needed). `discover` prints what the
 * server publishes: its challenge, protected resource metadata (RFC 9728)
 * and authorization server metadata (RFC 8414), without logging in.
 */
import { Console, Duration, Effect, Layer, Option, Redacted } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as Mcp from "../../Mcp.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

const serverUrl = Argument.String("server-url").pipe(Argument.withDescription("The MCP server's URL"))
const services = Mcp.layer.pipe(Layer.provide(FetchHttpClient.layer), Layer.provideMerge(Services.sessions))

const token = Command.make("token", {
  serverUrl,
  provider: Flag.String("provider").pipe(Flag.withDescription("Provider name of the sessions, when not mcp-<host>"), Flag.optional),
  scopes: Flag.String("scope").pipe(Flag.withDescription("Scope the token must carry (repeatable)"), Flag.atLeast(0)),
  minTtl: Flag.Int("min-ttl").pipe(Flag.withDescription("Seconds the token must stay valid (default 60)"), Flag.withDefault(60))
}, (args) =>
  Effect.gen(function*() {
    const mcp = yield* Mcp.Mcp
    const accessToken = yield* mcp.getAccessToken(args.serverUrl, {
      provider: Option.getOrUndefined(args.provider),
      scopes: args.scopes.length > 0 ? args.scopes : undefined,
      minTtl: Duration.seconds(Math.max(0, args.minTtl))
    })
    const json = yield* Output.Json
    yield* Console.log(
      json ? JSON.stringify({ access_token: Redacted.value(accessToken), token_type: "Bearer" }) : Redacted.value(accessToken)
    )
  }).pipe(Effect.provide(services))
).pipe(Command.withDescription("Print a valid access token for an MCP server (after `mtsession login --mcp <url>`)"))

const discover = Command.make("discover", { serverUrl }, (args) =>
  Effect.gen(function*() {
    const mcp = yield* Mcp.Mcp
    const found = yield* mcp.discover(args.serverUrl)
    yield* Output.printJson({
      server: found.serverUrl,
      canonical_uri: found.canonical,
      challenge: Option.match(found.challenge, {
        onNone: () => null,
        onSome: (c) => Object.fromEntries(c.params)
      }),
      resource_metadata_url: found.resourceMetadataUrl,
      resource_metadata: found.resource,
      authorization_server: found.server,
      provider: Mcp.providerNameOf(found.canonical)
    })
  }).pipe(Effect.provide(services))
).pipe(Command.withDescription("Show an MCP server's authorization metadata (RFC 9728, RFC 8414) without logging in"))

export const mcp = Command.make("mcp").pipe(
  Command.withDescription("MCP servers: tokens and discovery (log in with `mtsession login --mcp <url>`)"),
  Command.withSubcommands([token, discover])
)
