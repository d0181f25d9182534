/**
 * The body of `mtsession refresh` (`commands/refresh.ts`): each matching
 * session through `Sessions.refresh`, and a table (or JSON) of outcomes.
 */
import { Console, Effect, Option } from "effect"
import * as Sessions from "../../Sessions.js"
import * as TokenStore from "../../TokenStore.js"
import type { Args } from "../commands/refresh.js"
import { CommandExit, UsageError } from "../Errors.js"
import * as ExitCode from "../ExitCode.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

const describe = (o: Sessions.RefreshOutcome): string => {
  switch (o._tag) {
    case "Refreshed":
      return `refreshed (generation ${o.generation}${o.rotated ? ", refresh token rotated" : ""})`
    case "Reused":
      return `already refreshed by another process (generation ${o.generation})`
    case "Fresh":
      return "still fresh, nothing to do (use --force)"
    case "NeedsReauth":
      return `needs re-authentication: ${o.reason}`
    case "Failed":
      return `failed: ${o.reason}`
  }
}

export const refresh = (args: Args) =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    if (Option.isNone(args.provider) === !args.all) {
      return yield* new UsageError({ detail: "name a provider, or use --all (not both)" })
    }
    const store = yield* TokenStore.TokenStore
    const sessions = yield* Sessions.Sessions
    const listed = (yield* store.list).filter((m) =>
      TokenStore.isSession(m) && m.state !== "corrupted" && (args.all || m.provider === Option.getOrUndefined(args.provider))
    )
    if (listed.length === 0) {
      return yield* new CommandExit({
        code: ExitCode.reauth,
        detail: args.all ? "no sessions to refresh" : `no session of ${Option.getOrElse(args.provider, () => "")}; log in first`
      })
    }
    const results = yield* Effect.forEach(listed, (m) =>
      sessions.refresh(m.id, { force: args.force }).pipe(
        Effect.catch((e): Effect.Effect<Sessions.RefreshOutcome> =>
          Effect.succeed({ _tag: "Failed", reason: e.message, retryable: false })),
        Effect.map((outcome) => ({ id: m.id, provider: m.provider, outcome }))
      ), { concurrency: 4 })
    if (json) {
      yield* Output.printJson({
        sessions: results.map((r) => ({
          id: r.id,
          provider: r.provider,
          outcome: r.outcome._tag.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase(),
          detail: "reason" in r.outcome ? r.outcome.reason : null
        }))
      })
    } else {
      yield* Console.log(Output.table(["session", "provider", "outcome"], results.map((r) => [r.id, r.provider, describe(r.outcome)])))
    }
    if (results.some((r) => r.outcome._tag === "NeedsReauth")) return yield* new CommandExit({ code: ExitCode.reauth })
    if (results.some((r) => r.outcome._tag === "Failed")) return yield* new CommandExit({ code: ExitCode.failure })
  }).pipe(Effect.provide(Services.sessions))
