/**
 * `mtsession list`: every session of this user, with its state. Each record is
 * read once to verify it, so a damaged record shows as `corrupted` (and is set
 * aside) rather than looking healthy until the day it is needed. Body:
 * `handlers/list.ts`.
 */
import { Command } from "effect/cli"
import * as Handler from "../Handler.js"

export const list = Command.make("list", {}, Handler.lazy(() => import("../handlers/list.js"), (m) => m.list)).pipe(
  Command.withDescription("List this user's sessions with their state (active, expired, needs_reauth, corrupted)")
)
