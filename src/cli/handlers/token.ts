/**
 * The body of `mtsession token <provider>` (`commands/token.ts`): the token
 * from `Sessions`, on stdout, alone on its line (or in a JSON document).
 */
import { Console, Duration, Effect, Option, Redacted } from "effect"
import * as Sessions from "../../Sessions.js"
import type { Args } from "../commands/token.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

export const token = (args: Args) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    const accessToken = yield* sessions.getAccessToken(args.provider, {
      scopes: args.scopes.length > 0 ? args.scopes : undefined,
      resource: Option.getOrUndefined(args.resource),
      minTtl: Duration.seconds(Math.max(0, args.minTtl))
    })
    const json = yield* Output.Json
    yield* Console.log(json ? JSON.stringify({ access_token: Redacted.value(accessToken), token_type: "Bearer" }) : Redacted.value(accessToken))
  }).pipe(Effect.provide(Services.sessions))
