/**
 * The floor of the cold-start benchmark: the smallest program on the CLI's
 * stack. One effect/cli command that prints its argument, run by the same
 * `NodeRuntime.runMain`, bundled the way `scripts/build.mjs` bundles
 * `mtsession` (esbuild, minified CommonJS) and run by its launcher
 * (`scripts/launcher.cjs`, with its code cache). What it costs over `node -e 0` is what Effect and effect/cli
 * cost any CLI before it does anything; what `mtsession` costs over it is ours.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Console, Effect } from "effect"
import { Argument, Command } from "effect/cli"

const token = Command.make("token", { provider: Argument.String("provider") }, ({ provider }) => Console.log(`at-${provider}`))
const root = Command.make("floor").pipe(Command.withSubcommands([token]))

Command.runWith(root, { version: "0.0.0" })(process.argv.slice(2)).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
