/**
 * The body of `mtsession import <provider>` (`commands/import.ts`): the token
 * response from stdin, validated and stored as a session.
 */
import { Console, DateTime, Effect, Option, Stdio, Stream } from "effect"
import { SessionConfig } from "../../SessionConfig.js"
import * as TokenResponse from "../../TokenResponse.js"
import * as TokenStore from "../../TokenStore.js"
import type { Args } from "../commands/import.js"
import { UsageError } from "../Errors.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"
import * as SessionView from "../SessionView.js"

const readStdin = Effect.gen(function*() {
  const stdio = yield* Stdio.Stdio
  if (yield* stdio.stdinIsTerminal) {
    return yield* new UsageError({ detail: "import reads the token response from stdin; pipe it in, e.g. `mtsession import github < token.json`" })
  }
  const chunks = yield* stdio.stdin.pipe(
    Stream.take(TokenResponse.maxResponseBytes / 1024 + 2),
    Stream.runCollect,
    Effect.mapError((e) => new UsageError({ detail: `cannot read stdin: ${e.message}` }))
  )
  const bytes = Buffer.concat(Array.from(chunks))
  if (bytes.length > TokenResponse.maxResponseBytes) {
    return yield* new TokenResponse.TokenResponseError({ detail: `larger than ${TokenResponse.maxResponseBytes} bytes` })
  }
  const text = bytes.toString("utf8").trim()
  if (text.length === 0) return yield* new UsageError({ detail: "stdin is empty: expected a token response JSON object" })
  return text
})

export const importSession = ({ provider, resource, scopes, subject }: Args) =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const config = yield* SessionConfig
    const settings = config.providers.get(provider)
    if (settings === undefined) {
      const known = [...config.providers.keys()]
      return yield* new UsageError({
        detail: `unknown provider "${provider}": ${
          known.length === 0 ? "no providers are configured (auth.oauth.providers)" : `configured: ${known.join(", ")}`
        }`
      })
    }
    const text = yield* readStdin
    const response = yield* TokenResponse.fromJson(text)
    const store = yield* TokenStore.TokenStore
    const resourceValue = Option.orElse(resource, () => settings.resource)
    const requested = scopes.length > 0 ? scopes : settings.scopes
    const id = TokenStore.sessionIdOf({
      provider,
      resource: Option.getOrUndefined(resource),
      scopes: scopes.length > 0 ? scopes : undefined
    })
    const fresh = yield* TokenResponse.toRecord(response, {
      id,
      provider,
      issuer: Option.getOrUndefined(settings.issuer),
      tokenEndpoint: Option.getOrUndefined(settings.tokenEndpoint),
      clientId: settings.clientId,
      requestedScopes: requested,
      resource: Option.getOrUndefined(resourceValue),
      subject: Option.getOrUndefined(subject)
    })
    // A new grant replaces the session; the generation keeps counting so writers can order updates.
    const previous = yield* store.get(id).pipe(Effect.option)
    const record = Option.match(previous, {
      onNone: () => fresh,
      onSome: (p) => new TokenStore.SessionRecord({ ...fresh, generation: p.generation + 1, createdAt: p.createdAt })
    })
    yield* store.put(record)
    const now = yield* DateTime.now
    const element = SessionView.element(TokenStore.metadataOf(record, store.backend), now)
    if (json) return yield* Output.printJson(element)
    yield* Console.log(
      `Imported session ${id} for ${provider} into ${store.backend}${
        element.expires_at === null ? " (no expiry given)" : `, expires ${element.expires_at}`
      }${record.refreshToken === undefined ? "; no refresh token: it cannot be renewed" : ""}.`
    )
  }).pipe(Effect.provide(Services.store))
