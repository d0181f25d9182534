/**
 * `mtsession status` and `mtsession recover`.
 *
 * status: the backend (and why it was chosen) and every session with its
 * state, last refresh and last error, from the store, so it works whether or
 * not a `mtsession run` is active. recover: the startup recovery on demand
 * (every session loaded, classified, refreshed where due), with a report.
 * Bodies: `handlers/status.ts`.
 */
import { Command, Flag } from "effect/cli"
import * as Handler from "../Handler.js"

export const status = Command.make("status", {}, Handler.lazy(() => import("../handlers/status.js"), (m) => m.status)).pipe(
  Command.withDescription("Show the storage backend and every session with its state, last refresh and last error")
)

const recoverArgs = {
  validate: Flag.Boolean("validate").pipe(
    Flag.withDescription("Also ask the server (introspection, else userinfo) whether each valid token is still active"),
    Flag.withDefault(false)
  )
}

/** The parsed arguments of `recover`. */
export type RecoverArgs = Command.Command.Config.Infer<typeof recoverArgs>

export const recover = Command.make("recover", recoverArgs, Handler.lazy(() => import("../handlers/recover.js"), (m) => m.recover)).pipe(
  Command.withDescription("Load every stored session, refresh what is due, and report what needs re-authentication")
)
