/**
 * The body of `mtsession status` (`commands/status.ts`), and its `--json`
 * element, which `mtsession run --status-port` serves too.
 */
import { Console, DateTime, Effect, Option } from "effect"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"
import * as SessionView from "../SessionView.js"
import { verifiedList } from "./list.js"

/** One element of `status --json`'s `sessions`: a list element plus refresh history. */
export const statusElement = (m: TokenStore.SessionMetadata, now: DateTime.Utc) => ({
  ...SessionView.element(m, now),
  last_refresh_at: Option.match(m.lastRefreshAt, { onNone: () => null, onSome: DateTime.formatIso }),
  last_error: Option.getOrNull(m.lastError)
})

export const status = () =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const store = yield* TokenStore.TokenStore
    const choice = yield* StoreSelection.StoreSelection
    const sessions = yield* verifiedList
    const now = yield* DateTime.now
    const elements = sessions.map((m) => statusElement(m, now))
      .sort((a, b) => a.provider.localeCompare(b.provider) || a.id.localeCompare(b.id))
    if (json) {
      return yield* Output.printJson({
        backend: store.backend,
        backend_reason: choice.reason,
        insecure: store.insecure,
        sessions: elements
      })
    }
    const c = Output.paint(yield* Output.colorful)
    yield* Console.log(`Backend: ${store.backend} (${choice.reason})${store.insecure ? ` ${c.red("INSECURE: plaintext storage")}` : ""}`)
    if (elements.length === 0) return yield* Console.log("No sessions.")
    yield* Console.log("")
    yield* Console.log(Output.table(
      ["provider", "session", "state", "expires", "last refresh", "last error"],
      elements.map((e) => [
        e.provider,
        e.id,
        e.state === "active" ? c.green(e.state) : e.state === "expired" ? c.yellow(e.state) : c.red(e.state),
        e.expires_at === null ? "never" : Output.relative(Date.parse(e.expires_at) - DateTime.toEpochMillis(now)),
        e.last_refresh_at ?? "-",
        e.last_error ?? ""
      ])
    ))
  }).pipe(Effect.provide(Services.store))
