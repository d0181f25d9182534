/**
 * The test authorization server in a child process (`server-process.ts`,
 * run through tsx): its CPU is then its own, on its own core when there is
 * one, and the benchmark process measures only the client side, as users
 * run it. Logins are approved over HTTP as in-process (`OidcServer.approve`);
 * the counters and the server's CPU time are asked for over stdin.
 */
import { spawn } from "node:child_process"
import * as NodePath from "node:path"
import * as Readline from "node:readline"
import { Option } from "effect"
import { type ProviderSettings, providerSettings } from "../src/SessionConfig.js"
import * as OidcServer from "../test/support/OidcServer.js"

/** The token endpoint's counters, and the server process's CPU time (user + system) since it started. */
export interface Counters extends OidcServer.Counters {
  readonly cpuMicros: number
}

/** A test authorization server running in its own process. */
export interface ServerProcess {
  readonly issuer: string
  readonly port: number
  readonly clientId: string
  /** Provider settings for the public client, discovered through the issuer. */
  readonly provider: ProviderSettings
  /** Completes an authorization request the way a browser would (see `OidcServer.approve`). */
  readonly approve: (authorizationUrl: string) => Promise<number>
  readonly counters: () => Promise<Counters>
  /** Closes its stdin and waits for it to exit. */
  readonly close: () => Promise<void>
}

const repoRoot = NodePath.resolve(import.meta.dirname, "..")

interface Hello {
  readonly issuer: string
  readonly port: number
  readonly clientId: string
  readonly scopes: ReadonlyArray<string>
}

/** Starts the server in a child process with `options`; resolves once it listens. */
export const start = async (options: OidcServer.Options = {}): Promise<ServerProcess> => {
  const child = spawn(process.execPath, ["--import", "tsx", NodePath.join(repoRoot, "bench", "server-process.ts"), JSON.stringify(options)], {
    cwd: repoRoot,
    stdio: ["pipe", "pipe", "pipe"]
  })
  let errors = ""
  child.stderr.on("data", (d) => (errors += d))
  child.stdin.on("error", () => {})
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
  const waiting: Array<(line: string) => void> = []
  const lines = Readline.createInterface({ input: child.stdout })
  lines.on("line", (line) => waiting.shift()?.(line))
  const next = () =>
    Promise.race([
      new Promise<string>((resolve) => waiting.push(resolve)),
      exited.then(() => Promise.reject(new Error(`the server process exited: ${errors}`)))
    ])
  const hello = JSON.parse(await next()) as Hello
  // One request at a time: answers come back in order.
  let queue: Promise<unknown> = Promise.resolve()
  const counters = () => {
    const answer = queue.then(() => {
      const line = next()
      child.stdin.write("counters\n")
      return line
    }).then((line) => JSON.parse(line) as Counters)
    queue = answer.catch(() => {})
    return answer
  }
  return {
    issuer: hello.issuer,
    port: hello.port,
    clientId: hello.clientId,
    provider: providerSettings({
      name: "test",
      issuer: Option.some(hello.issuer),
      clientId: hello.clientId,
      scopes: [...hello.scopes]
    }),
    approve: (url) => OidcServer.approve(hello.issuer, url, false),
    counters,
    close: async () => {
      child.stdin.end()
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
      await exited
      clearTimeout(timer)
    }
  }
}
