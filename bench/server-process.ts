/**
 * The test authorization server (`test/support/OidcServer.ts`) alone in a
 * process, for benchmarks whose clients must not share a JS thread with it
 * (no user runs their authorization server inside their client process).
 * Started by `ServerProcess.ts`.
 *
 * Argument: the server's options as JSON. Prints one JSON line once
 * listening (issuer, port, client id, scopes); then answers each `counters`
 * line on stdin with one JSON line (the token endpoint's counters and this
 * process's CPU time so far, in microseconds). Exits when stdin closes.
 *
 * By hand: `npx tsx bench/server-process.ts '{"unboundedStorage":true}'`.
 */
import * as Readline from "node:readline"
import * as OidcServer from "../test/support/OidcServer.js"

const options = JSON.parse(process.argv[2] ?? "{}") as OidcServer.Options
const server = await OidcServer.start(options)
const say = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`)

say({ issuer: server.issuer, port: server.port, clientId: server.clientId, scopes: server.provider.scopes })

const lines = Readline.createInterface({ input: process.stdin })
lines.on("line", (line) => {
  if (line.trim() !== "counters") return
  const cpu = process.cpuUsage()
  say({ ...server.counters(), cpuMicros: cpu.user + cpu.system })
})
lines.on("close", () => {
  void server.close().then(() => process.exit(0))
})
