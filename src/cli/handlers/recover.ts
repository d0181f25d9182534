/**
 * The body of `mtsession recover` (`commands/status.ts`): the startup
 * recovery on demand, with its report.
 */
import { Console, Effect, Option } from "effect"
import * as Recovery from "../../Recovery.js"
import type { RecoverArgs } from "../commands/status.js"
import { CommandExit } from "../Errors.js"
import * as ExitCode from "../ExitCode.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

export const recover = ({ validate }: RecoverArgs) =>
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
