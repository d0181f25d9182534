/**
 * A command's body, loaded when the command runs. The command tree (names,
 * flags, help: `commands/`) is in the CLI's entry chunk; each body
 * (`handlers/`), with the services it builds, is bundled as a chunk of its
 * own, so `mtsession token` evaluates neither the login flow, nor the status
 * server, nor MCP discovery, and `--help` evaluates no body at all.
 */
import { Effect } from "effect"

/** A handler that imports its module, then runs `body(module)` with the parsed arguments. */
export const lazy = <M, A, E, R>(
  load: () => Promise<M>,
  body: (module: M) => (args: A) => Effect.Effect<void, E, R>
) =>
(args: A): Effect.Effect<void, E, R> => Effect.flatMap(Effect.promise(load), (module) => body(module)(args))
