/**
 * The bodies of `mtsession mcp token` and `mtsession mcp discover`
 * (`commands/mcp.ts`), over the MCP service and Node's fetch.
 */
import { Console, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as Mcp from "../../Mcp.js"
import type { DiscoverArgs, TokenArgs } from "../commands/mcp.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

const services = Mcp.layer.pipe(Layer.provide(FetchHttpClient.layer), Layer.provideMerge(Services.sessions))

export const token = (args: TokenArgs) =>
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

export const discover = (args: DiscoverArgs) =>
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
