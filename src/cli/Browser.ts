/**
 * Opens the user's browser on an authorization URL: `open` on macOS,
 * `xdg-open` elsewhere on Unix, `start` on Windows. Detached and best effort:
 * the URL is always printed as well, so a headless machine or an SSH session
 * still has a way in.
 */
import { spawn } from "node:child_process"
import { Effect } from "effect"

/**
 * What the opener inherits: only what finding and showing a browser needs.
 * Everything else stays behind, above all the data key
 * (`MAGICTUNNEL_TOKEN_ENCRYPTION_KEY`) and the variables named by
 * `client_secret_env`: the browser and whatever it starts would otherwise
 * carry them in their environment for their whole life.
 */
const browserEnvironment = /^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z_]+|TZ|TERM|DISPLAY|WAYLAND_DISPLAY|XAUTHORITY|XDG_[A-Z_]+|DBUS_SESSION_BUS_ADDRESS|BROWSER|DESKTOP_SESSION|WSL_DISTRO_NAME|WSL_INTEROP|TMPDIR|SYSTEMROOT|WINDIR|COMSPEC|PATHEXT|USERPROFILE|APPDATA|LOCALAPPDATA|PROGRAMFILES|TEMP|TMP)$/i

const openerEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([name]) => browserEnvironment.test(name)))

/** Starts the platform's URL opener; never fails the login. */
export const open = (url: string): Effect.Effect<void, unknown> =>
  Effect.try(() => {
    const [command, args] = process.platform === "darwin"
      ? ["open", [url]] as const
      : process.platform === "win32"
      ? ["cmd", ["/c", "start", "", url]] as const
      : ["xdg-open", [url]] as const
    const child = spawn(command, args, { detached: true, stdio: "ignore", env: openerEnv() })
    child.on("error", () => undefined)
    child.unref()
  })
