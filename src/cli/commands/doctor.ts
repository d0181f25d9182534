/**
 * `mtsession doctor`: checks everything sessions depend on and names each
 * problem with its fix: the configuration, the session directory's ownership
 * and permissions, every storage backend (probed, with timings), the backend
 * that is or would be selected, the encryption key, and the stored sessions.
 * It changes nothing: `auto` is evaluated without being remembered.
 * Body: `handlers/doctor.ts`.
 */
import { Command } from "effect/cli"
import * as Handler from "../Handler.js"

export const doctor = Command.make("doctor", {}, Handler.lazy(() => import("../handlers/doctor.js"), (m) => m.doctor)).pipe(
  Command.withDescription("Check configuration, directory permissions, every storage backend and the stored sessions; name each problem with its fix")
)
