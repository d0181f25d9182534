/**
 * Runs the bundled `mtsession` (dist/mtsession.cjs, built by `npm test` before
 * vitest) as a real process, the way scripts call it.
 */
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

export const cliPath = Path.resolve(import.meta.dirname, "../../dist/mtsession.cjs")

/** Where every test's CLI keeps its code cache (private to this user; see cliEnv). */
const sharedCodeCache = Path.join(Os.tmpdir(), `mtsession-test-code-cache-${process.getuid?.() ?? "user"}`)

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI with exactly `env` (plus PATH), optional stdin, and a time bound. */
export const runCli = (
  args: ReadonlyArray<string>,
  options: {
    readonly env: Record<string, string>
    readonly stdin?: string
    readonly cwd?: string
    readonly timeoutMs?: number
    /** Close our end of its stdout at once, as `| head -0` would: its writes then fail with EPIPE. */
    readonly closeStdout?: boolean
  }
): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    if (!Fs.existsSync(cliPath)) {
      reject(new Error(`${cliPath} is missing: run \`npm run build\` (npm test does it first)`))
      return
    }
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: options.cwd ?? options.env["HOME"] ?? Os.tmpdir(),
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...options.env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    // A CLI that exits before reading its stdin makes the write fail with EPIPE: expected, not a test error.
    child.stdin.on("error", () => {})
    let stdout = ""
    let stderr = ""
    if (options.closeStdout === true) child.stdout.destroy()
    else child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    if (options.stdin !== undefined) child.stdin.end(options.stdin)
    else child.stdin.end()
  })

/**
 * The environment of a CLI under test in `home`: its own HOME and XDG config
 * directory, the configuration file, and the file store's key from the
 * environment (which keeps it off any keyring). The launcher's code cache is
 * one directory for every test (a fresh HOME would start without it each
 * time: about 100 ms and a 2 MB write per test).
 */
export const cliEnv = (home: string, config: string): Record<string, string> => ({
  NODE_COMPILE_CACHE: sharedCodeCache,
  HOME: home,
  XDG_CONFIG_HOME: Path.join(home, ".config"),
  MAGICTUNNEL_CONFIG_PATH: config,
  MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString("base64")
})

/** A private HOME with a config file naming one provider, removed by the caller. */
export const makeHome = (configYaml?: string): { home: string; config: string } => {
  const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "mtsession-home-"))
  const config = Path.join(home, "config.yaml")
  Fs.writeFileSync(config, configYaml ?? defaultConfig)
  return { home, config }
}

export const defaultConfig = `auth:
  oauth:
    providers:
      demo:
        issuer: "http://127.0.0.1:9"
        client_id: "demo-client"
        scopes: ["openid", "offline_access"]
      other:
        issuer: "http://127.0.0.1:9/other"
        client_id: "other-client"
  session_persistence:
    token_storage:
      storage_backend: filesystem
`

/** A token response with recognizable secret values. */
export const tokenResponse = (tag: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    access_token: `at-${tag}-SECRETVALUE`,
    token_type: "Bearer",
    expires_in: 3600,
    refresh_token: `rt-${tag}-SECRETVALUE`,
    scope: "openid offline_access",
    ...extra
  })

/** A running CLI process whose stdout lines can be awaited (for `login --json`). */
export interface LiveCli {
  /** Resolves with the next stdout line matching `predicate`. */
  readonly line: (predicate: (line: string) => boolean, timeoutMs?: number) => Promise<string>
  readonly done: Promise<CliResult>
  /** Sends a signal to the process. */
  readonly kill: (signal: NodeJS.Signals) => void
  /** Everything written to stderr so far. */
  readonly stderr: () => string
}

/** Starts the CLI and lets a test react to its output while it runs. */
export const startCli = (args: ReadonlyArray<string>, options: { readonly env: Record<string, string> }): LiveCli => {
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: options.env["HOME"] ?? Os.tmpdir(),
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  const waiters: Array<{ predicate: (l: string) => boolean; resolve: (l: string) => void }> = []
  const seen: Array<string> = []
  let pending = ""
  child.stdout.on("data", (d) => {
    stdout += d
    pending += d
    const lines = pending.split("\n")
    pending = lines.pop() ?? ""
    for (const l of lines) {
      seen.push(l)
      for (const w of waiters.splice(0)) {
        if (w.predicate(l)) w.resolve(l)
        else waiters.push(w)
      }
    }
  })
  child.stderr.on("data", (d) => (stderr += d))
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
  const done = new Promise<CliResult>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  )
  const line = (predicate: (l: string) => boolean, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const found = seen.find(predicate)
      if (found !== undefined) return resolve(found)
      const t = setTimeout(() => reject(new Error(`no matching line within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`)), timeoutMs)
      waiters.push({ predicate, resolve: (l) => (clearTimeout(t), resolve(l)) })
    })
  return { line, done, kill: (signal) => void child.kill(signal), stderr: () => stderr }
}
