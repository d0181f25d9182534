/**
 * `mtsession status` and `mtsession recover`.
 *
 * status: the backend (and why it was chosen) and every session with its
 * state, last refresh and last error, from the store, so it works whether or
 * not a `mtsession run` is active. recover: the startup recovery on demand
 * (every session loaded, classified, refreshed where due), with a report.
 */
import { Console, DateTime, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as Recovery from "../../Recovery.js"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import { CommandExit } from "../Errors.js"
import * as ExitCode from "../ExitCode.js"
import * as Output from "../Output.js"
import * as SessionView from "../SessionView.js"
import * as Services from "../Services.js"
import { verifiedList } from "./list.js"

/** One element of `status --json`'s `sessions`: a list element plus refresh history. */
export const statusElement = (m: TokenStore.SessionMetadata, now: DateTime.Utc) => ({
  ...SessionView.element(m, now),
  last_refresh_at: Option.match(m.lastRefreshAt, { onNone: () => null, onSome: DateTime.formatIso }),
  last_error: Option.getOrNull(m.lastError)
})

export const status = Command.make("status", {}, () =>
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
).pipe(Command.withDescription("Show the storage backend and every session with its state, last refresh and last error"))

export const recover = Command.make("recover", {
  validate: Flag.Boolean("validate").pipe(
    Flag.withDescription("Also ask the server (introspection, else userinfo) whether each valid token is still active"),
    Flag.withDefault(false)
  )
}, ({ validate }) =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const recovery = yield* Recovery.Recovery
    yield* Output.progress("recovering sessions…")
    const report = yield* recovery.run({ validate })
    if (json) {
      yield* Output.printJson({
        recovered: report.recovered,
        refreshed: report.refreshed,
        needs_reauth: report.needs_reauth,
        failed: report.failed,
        sessions: report.sessions.map((s) => ({
          id: s.id,
          provider: s.provider,
          outcome: s.outcome,
          detail: Option.getOrNull(s.detail)
        }))
      })
    } else {
      yield* Console.log(Recovery.summarize(report))
      if (report.sessions.length > 0) {
        yield* Console.log("")
        yield* Console.log(Output.table(
          ["provider", "session", "outcome", "detail"],
          report.sessions.map((s) => [s.provider, s.id, s.outcome, Option.getOrElse(s.detail, () => "")])
        ))
      }
    }
    if (report.failed > 0) return yield* new CommandExit({ code: ExitCode.failure })
    if (report.needs_reauth > 0) return yield* new CommandExit({ code: ExitCode.reauth })
  }).pipe(Effect.provide(Services.recovery))
).pipe(Command.withDescription("Load every stored session, refresh what is due, and report what needs re-authentication"))
