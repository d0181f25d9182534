/**
 * A command's body, loaded when the command runs. The command tree (names,
 * flags, help: `commands/`) is evaluated at start; each body (`handlers/`),
 * with the services it builds, is bundled as a module initialised on its
 * first import, so `mtsession token` evaluates neither the login flow, nor
 * the status server, nor MCP discovery, and `--help` evaluates no body at all
 * (test/cli/ModuleGraph.test.ts).
 */
import { Effect } from "effect"

/** A handler that imports its module, then runs `body(module)` with the parsed arguments. */
export const lazy = <M, A, E, R>(
  load: () => Promise<M>,
  body: (module: M) => (args: A) => Effect.Effect<void, E, R>
) =>
(args: A): Effect.Effect<void, E, R> => Effect.flatMap(Effect.promise(load), (module) => body(module)(args))
