/**
 * The bodies of `mtsession config validate` and `mtsession config show`
 * (`commands/config.ts`): they load the configuration and touch no storage.
 */
import { Console, Effect, Option } from "effect"
import * as SessionConfig from "../../SessionConfig.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

const flatten = (tree: Readonly<Record<string, unknown>>, prefix = ""): Array<[string, unknown]> =>
  Object.entries(tree).flatMap(([k, v]) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? flatten(v as Record<string, unknown>, `${prefix}${k}.`)
      : [[`${prefix}${k}`, v] as [string, unknown]]
  )

export const validate = () =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const loaded = yield* SessionConfig.SessionConfig
    const path = Option.getOrNull(loaded.path)
    if (json) {
      return yield* Output.printJson({ valid: true, path, providers: [...loaded.providers.keys()], warnings: loaded.warnings })
    }
    yield* Console.log(`Configuration is valid (${path === null ? "no file found: defaults and environment" : path}).`)
    yield* Console.log(`Providers: ${loaded.providers.size === 0 ? "none" : [...loaded.providers.keys()].join(", ")}`)
    for (const w of loaded.warnings) yield* Console.error(`warning: ${w}`)
  }).pipe(Effect.provide(Services.config))

export const show = () =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const loaded = yield* SessionConfig.SessionConfig
    const sources: Record<string, string> = {}
    for (const [key, source] of loaded.sources) sources[key] = SessionConfig.formatSource(source)
    if (json) return yield* Output.printJson({ session_persistence: loaded.effective, sources })
    const describeSource = (key: string) => {
      const s = loaded.sources.get(key)
      return s === undefined ? "" : s._tag === "file" ? `${s.path}:${s.line}` : SessionConfig.formatSource(s)
    }
    yield* Console.log(`# file: ${Option.getOrElse(loaded.path, () => "(none)")}`)
    yield* Console.log(Output.table(
      ["key", "value", "source"],
      flatten(loaded.effective).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v), describeSource(k)])
    ))
    if (loaded.providers.size > 0) {
      yield* Console.log("")
      yield* Console.log(Output.table(
        ["provider", "issuer / token endpoint", "client id", "scopes", "client secret"],
        [...loaded.providers.values()].map((p) => [
          p.name,
          Option.getOrElse(Option.orElse(p.issuer, () => p.tokenEndpoint), () => ""),
          p.clientId,
          p.scopes.join(" "),
          Option.isSome(p.clientSecret) ? "set (redacted)" : "none"
        ])
      ))
    }
  }).pipe(Effect.provide(Services.config))
