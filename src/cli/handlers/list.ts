/**
 * The body of `mtsession list` (`commands/list.ts`), and the verified listing
 * `status` and `run --status-port` share.
 */
import { Console, DateTime, Effect, Option } from "effect"
import * as TokenStore from "../../TokenStore.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"
import * as SessionView from "../SessionView.js"

/**
 * Every session, each record verified once: by the store's own `list` where it
 * opens records, else by a `get` each (damaged ones become `corrupted`,
 * vanished ones are dropped).
 */
export const verifiedList = Effect.gen(function*() {
  const store = yield* TokenStore.TokenStore
  const listed = (yield* store.list).filter(TokenStore.isSession)
  if (store.listVerifies === true) return listed
  const checked = yield* Effect.forEach(listed, (m) =>
    m.state === "corrupted"
      ? Effect.succeed(Option.some(m))
      : store.get(m.id).pipe(
        Effect.as(Option.some(m)),
        Effect.catchIf(
          (e) => e.reason._tag === "Corrupted" || e.reason._tag === "NotFound",
          (e): Effect.Effect<Option.Option<TokenStore.SessionMetadata>> =>
            Effect.succeed(
              e.reason._tag === "NotFound"
                ? Option.none()
                : Option.some({ ...m, state: "corrupted", lastError: Option.some(e.message) })
            )
        )
      ), { concurrency: 8 })
  return checked.flatMap((o) => Option.isSome(o) ? [o.value] : [])
})

export const list = () =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const sessions = yield* verifiedList
    const now = yield* DateTime.now
    const elements = sessions
      .map((m) => SessionView.element(m, now))
      .sort((a, b) => a.provider.localeCompare(b.provider) || a.id.localeCompare(b.id))
    if (json) return yield* Output.printJson(elements)
    if (elements.length === 0) return yield* Console.log("No sessions. Log in with `mtsession login <provider>` or import one with `mtsession import <provider>`.")
    yield* Console.log(SessionView.table(elements, now, yield* Output.colorful))
  }).pipe(Effect.provide(Services.store))
