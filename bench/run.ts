/**
 * The benchmarks (`npm run bench`): each prints our figure beside a baseline
 * measured in the same process and run, and the ratio. Nothing here fails on
 * a time; a benchmark fails only when what it measures did not happen (a
 * herd that refreshed more than once, sessions that did not recover).
 *
 * Flags: `--json` prints one JSON document on stdout instead of the table
 * (progress stays on stderr); `--only=<name>[,<name>]` runs some of
 * `cached`, `herd`, `recovery`, `coldstart`, `peer`, `store`, `processes`.
 *
 * The cached-token benchmark runs first: its nanosecond figures need a
 * process whose JIT has not yet seen the herd and the recovery.
 */
import * as CachedToken from "./CachedToken.js"
import * as ColdStart from "./ColdStart.js"
import * as Herd from "./Herd.js"
import * as Peer from "./Peer.js"
import * as Processes from "./Processes.js"
import { load, machine, progress, ratioOf, type Row, table } from "./Measure.js"
import * as StartupRecovery from "./StartupRecovery.js"
import * as Store from "./Store.js"

const benchmarks: ReadonlyArray<readonly [string, () => Promise<ReadonlyArray<Row>>]> = [
  ["cached", CachedToken.run],
  ["peer", Peer.run],
  ["herd", Herd.run],
  ["recovery", StartupRecovery.run],
  ["coldstart", ColdStart.run],
  ["store", Store.run],
  ["processes", Processes.run]
]

const args = process.argv.slice(2)
const json = args.includes("--json")
const only = args.find((a) => a.startsWith("--only="))?.slice("--only=".length).split(",")
const unknown = args.filter((a) => a !== "--json" && !a.startsWith("--only="))
const names = benchmarks.map(([name]) => name)
if (unknown.length > 0 || (only !== undefined && only.some((n) => !names.includes(n)))) {
  process.stderr.write(`usage: npm run bench -- [--json] [--only=${names.join(",")}]\n`)
  process.exit(2)
}

const started = performance.now()
const description = machine()
const before = load()
progress(description)
progress(before.line)
const rows: Array<Row> = []
for (const [name, benchmark] of benchmarks) {
  if (only !== undefined && !only.includes(name)) continue
  rows.push(...(await benchmark()))
}
const seconds = (performance.now() - started) / 1000
const after = load()

if (json) {
  process.stdout.write(
    `${
      JSON.stringify(
        {
          machine: description,
          loadBefore: before.averages,
          loadAfter: after.averages,
          seconds,
          rows: rows.map((r) => ({ ...r, ratio: ratioOf(r) }))
        },
        null,
        2
      )
    }\n`
  )
} else {
  process.stdout.write(`\n${description}\nbefore: ${before.line}\nafter:  ${after.line}\n\n${table(rows)}\n\nbaselines:\n`)
  for (const r of rows) process.stdout.write(`  ${r.name}: ${r.baselineName}\n`)
  process.stdout.write(`\ntotal ${seconds.toFixed(1)} s\n`)
}
