/**
 * The bodies of `mtsession login` and `mtsession logout`
 * (`commands/login.ts`): the grants through `Sessions` (or `Mcp` with
 * `--mcp`), their prompts on stderr (JSON lines on stdout with `--json`), and
 * the revocation report.
 */
import { Console, DateTime, Duration, Effect, Layer, Option } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as Mcp from "../../Mcp.js"
import * as Sessions from "../../Sessions.js"
import * as Browser from "../Browser.js"
import type { LoginArgs, LogoutArgs } from "../commands/login.js"
import { UsageError } from "../Errors.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"
import * as SessionView from "../SessionView.js"

const jsonLine = (value: unknown) => Console.log(JSON.stringify(value))

const usageNoProvider = Effect.fail(
  new UsageError({ detail: "name a provider (mtsession login <provider>), or an MCP server with --mcp <url>" })
)

/** Sessions plus the MCP service (discovery over Node's fetch). */
const mcpServices = Mcp.layer.pipe(Layer.provide(FetchHttpClient.layer), Layer.provideMerge(Services.sessions))

export const login = (args: LoginArgs) =>
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

export const logout = (args: LogoutArgs) =>
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
