/**
 * `mtsession login <provider>` and `mtsession logout <provider>`.
 *
 * Login runs the authorization code grant with PKCE and a loopback redirect
 * (RFC 8252), or the device grant (RFC 8628) with `--device`, and stores the
 * session. The authorization URL is always printed; the browser is opened
 * unless `--no-browser`. With `--json` every step is one JSON object per line
 * on stdout: `authorization_url` or `device_code`, then `logged_in`.
 *
 * Logout revokes the refresh and access tokens where the server has a
 * revocation endpoint (RFC 7009) and removes the session.
 */
import { Console, DateTime, Duration, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Sessions from "../../Sessions.js"
import * as Browser from "../Browser.js"
import * as Output from "../Output.js"
import * as SessionView from "../SessionView.js"
import * as Services from "../Services.js"

const provider = Argument.String("provider").pipe(Argument.withDescription("A provider configured under auth.oauth.providers"))
const scopes = Flag.String("scope").pipe(
  Flag.withDescription("Scope to request (repeatable); default: the provider's configured scopes"),
  Flag.atLeast(0)
)
const resource = Flag.String("resource").pipe(Flag.withDescription("RFC 8707 resource indicator"), Flag.optional)

const jsonLine = (value: unknown) => Console.log(JSON.stringify(value))

export const login = Command.make("login", {
  provider,
  device: Flag.Boolean("device").pipe(Flag.withDescription("Use the device grant (RFC 8628): for SSH, containers and machines without a browser"), Flag.withDefault(false)),
  noBrowser: Flag.Boolean("no-browser").pipe(Flag.withDescription("Do not open a browser; print the URL only"), Flag.withDefault(false)),
  scopes,
  resource,
  timeout: Flag.Int("timeout").pipe(Flag.withDescription("Seconds to wait for the approval (default 300)"), Flag.withDefault(300))
}, (args) =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const sessions = yield* Sessions.Sessions
    const onEvent = (event: Sessions.LoginEvent): Effect.Effect<void> => {
      if (event._tag === "AuthorizationUrl") {
        return json
          ? jsonLine({ event: "authorization_url", url: event.url })
          : Console.error(`Open this URL in a browser to log in to ${args.provider}:\n\n  ${event.url}\n`)
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
          `To log in to ${args.provider}, open ${
            Option.getOrElse(event.verificationUriComplete, () => event.verificationUri)
          }\nand enter the code: ${event.userCode}\n(the code expires in ${Output.relative(event.expiresIn * 1000)})\n`
        )
    }
    const metadata = yield* sessions.login(args.provider, {
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
      `Logged in to ${args.provider}${Option.match(metadata.subject, { onNone: () => "", onSome: (s) => ` as ${s}` })}; session ${element.id} stored in ${element.backend}${
        element.has_refresh_token ? "" : " (no refresh token: you will need to log in again when it expires)"
      }.`
    )
  }).pipe(Effect.provide(Services.sessions))
).pipe(
  Command.withDescription("Log in to a provider (authorization code + PKCE with a loopback redirect, or --device)"),
  Command.withExamples([
    { command: "mtsession login github", description: "Open the browser and log in" },
    { command: "mtsession login corp --device", description: "Log in from an SSH session with a code" }
  ])
)

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
