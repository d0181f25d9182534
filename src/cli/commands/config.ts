/**
 * `mtsession config validate` and `mtsession config show`: the configuration
 * as this process sees it. `show` prints every effective value with where it
 * came from (default, file, or env:NAME); secrets are never part of it.
 * Bodies: `handlers/config.ts`.
 */
import { Command } from "effect/cli"
import * as Handler from "../Handler.js"

const body = () => import("../handlers/config.js")

const validate = Command.make("validate", {}, Handler.lazy(body, (m) => m.validate)).pipe(
  Command.withDescription("Check the configuration; exit 2 with every problem named when it is invalid")
)

const show = Command.make("show", {}, Handler.lazy(body, (m) => m.show)).pipe(
  Command.withDescription("Print the effective configuration and where each value came from (secrets redacted)")
)

export const config = Command.make("config").pipe(
  Command.withDescription("Inspect the configuration"),
  Command.withSubcommands([validate, show])
)
