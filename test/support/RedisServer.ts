/**
 * A real `redis-server` for tests: started on 127.0.0.1 on a free port with
 * its own temporary directory, killed when the scope closes. A test that
 * needs it fails (never skips) when it cannot start. `restart` stops it
 * (SIGTERM, so an AOF is flushed) and starts it again on the same port and
 * directory; `stop` / `start` leave it down for a while.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as NodePathModule from "node:path"
import { Effect } from "effect"

/** A running test Redis. */
export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly dir: string
  /** Stops the server (SIGTERM; with AOF on, what was acknowledged is on disk). */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port and directory. */
  readonly start: () => Promise<void>
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", (d) => {
      socket.destroy()
      resolve(d.toString().startsWith("+PONG"))
    })
    socket.once("error", () => resolve(false))
  })

/** Starts `redis-server`; `appendonly` turns the AOF on (fsync always, as docs/fleet.md recommends). */
export const start = async (options: { readonly appendonly?: boolean } = {}): Promise<RedisServer> => {
  const port = await freePort()
  const dir = Fs.mkdtempSync(NodePathModule.join(Os.tmpdir(), "mts-redis-"))
  let child: ChildProcess | undefined
  let output = ""
  const launch = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", options.appendonly === true ? "yes" : "no"]
    if (options.appendonly === true) args.push("--appendfsync", "always")
    const c = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] })
    child = c
    c.stdout?.on("data", (d) => (output += d))
    c.stderr?.on("data", (d) => (output += d))
    let spawnError: Error | undefined
    c.once("error", (e) => (spawnError = e))
    for (let i = 0; i < 200; i++) {
      if (spawnError !== undefined) throw new Error(`redis-server could not start: ${spawnError.message}`)
      if (c.exitCode !== null) throw new Error(`redis-server exited: ${output}`)
      if (await answers(port)) return
      await new Promise((r) => setTimeout(r, 25))
    }
    throw new Error(`redis-server did not answer on port ${port}: ${output}`)
  }
  const stop = () =>
    new Promise<void>((resolve) => {
      const c = child
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return resolve()
      c.once("exit", () => resolve())
      c.kill("SIGTERM")
    })
  await launch()
  return { port, url: `redis://127.0.0.1:${port}`, dir, stop, start: launch }
}

/** A test Redis for the scope. */
export const acquire = (options: { readonly appendonly?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => start(options)),
    (server) =>
      Effect.promise(async () => {
        await server.stop()
        Fs.rmSync(server.dir, { recursive: true, force: true })
      })
  )
