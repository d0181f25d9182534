/**
 * `mtsession migrate --to <backend>`: moves every session of this user from
 * the configured store to another one (e.g. the file store to Redis when a
 * gateway becomes a fleet, and back). Each session is written to the target,
 * read back and compared, and only then removed from the source, so no
 * session is ever missing from both. Afterwards, set
 * `token_storage.storage_backend` to the target. See `src/Migration.ts`;
 * body: `handlers/migrate.ts`.
 */
import { Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

const targets = ["redis", "filesystem", "keychain", "credential_manager", "secret_service"] as const

const args = {
  to: Flag.Literals("to", targets).pipe(Flag.withDescription("The store to move every session to")),
  keepSource: Flag.Boolean("keep-source").pipe(
    Flag.withDescription("Copy only: leave the sessions in the current store too"),
    Flag.withDefault(false)
  ),
  dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Say what would move; change nothing"), Flag.withDefault(false))
}

/** The parsed arguments of `migrate`. */
export type Args = Command.Command.Config.Infer<typeof args>

export const migrate = Command.make("migrate", args, Handler.lazy(() => import("../handlers/migrate.js"), (m) => m.migrate)).pipe(
  Command.withDescription("Move every session to another store (e.g. --to redis for a fleet), losing none"),
  Command.withExamples([
    { command: "mtsession migrate --to redis", description: "Move the file store's sessions to the fleet's Redis" },
    { command: "mtsession migrate --to filesystem", description: "Move them back" }
  ])
)
