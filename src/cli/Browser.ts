/**
 * Opens the user's browser on an authorization URL: `open` on macOS,
 * `xdg-open` elsewhere on Unix, `start` on Windows. Detached and best effort:
 * the URL is always printed as well, so a headless machine or an SSH session
 * still has a way in.
 */
import { spawn } from "node:child_process"
import { Effect } from "effect"

/** Starts the platform's URL opener; never fails the login. */
export const open = (url: string): Effect.Effect<void, unknown> =>
  Effect.try(() => {
    const [command, args] = process.platform === "darwin"
      ? ["open", [url]] as const
      : process.platform === "win32"
      ? ["cmd", ["/c", "start", "", url]] as const
      : ["xdg-open", [url]] as const
    const child = spawn(command, args, { detached: true, stdio: "ignore" })
    child.on("error", () => undefined)
    child.unref()
  })
