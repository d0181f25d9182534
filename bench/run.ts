/**
 * The benchmarks (`npm run bench`): each prints our figure beside a baseline
 * measured in the same process and run, and the ratio. Nothing here fails on
 * a time; a benchmark fails only when what it measures did not happen (a
 * herd that refreshed more than once, sessions that did not recover).
 *
 * Flags: `--json` prints one JSON document on stdout instead of the table
 * (progress stays on stderr); `--only=<name>[,<name>]` runs some of
 * `cached`, `peer`, `herd`, `recovery`, `throughput`, `coldstart`, `store`,
 * `processes`; `--svg=<dir>` writes the charts of the benchmarks that ran
 * (`bench-throughput.svg`, `bench-recovery.svg`) into `<dir>` (`docs` for
 * the committed ones).
 *
 * The cached-token benchmark runs first: its nanosecond figures need a
 * process whose JIT has not yet seen the herd and the recovery.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as CachedToken from "./CachedToken.js"
import * as Chart from "./Chart.js"
import * as ColdStart from "./ColdStart.js"
import * as Herd from "./Herd.js"
import * as Peer from "./Peer.js"
import * as Processes from "./Processes.js"
import { load, machine, progress, ratioOf, type Row, table } from "./Measure.js"
import * as StartupRecovery from "./StartupRecovery.js"
import * as Store from "./Store.js"
import * as Throughput from "./Throughput.js"

const benchmarks: ReadonlyArray<readonly [string, () => Promise<ReadonlyArray<Row>>]> = [
  ["cached", CachedToken.run],
  ["peer", Peer.run],
  ["herd", Herd.run],
  ["recovery", StartupRecovery.run],
  ["throughput", Throughput.run],
  ["coldstart", ColdStart.run],
  ["store", Store.run],
  ["processes", Processes.run]
]

const args = process.argv.slice(2)
const json = args.includes("--json")
const only = args.find((a) => a.startsWith("--only="))?.slice("--only=".length).split(",")
const svg = args.find((a) => a.startsWith("--svg="))?.slice("--svg=".length)
const unknown = args.filter((a) => a !== "--json" && !a.startsWith("--only=") && !a.startsWith("--svg="))
const names = benchmarks.map(([name]) => name)
const unknownNames = only?.filter((n) => !names.includes(n)) ?? []
if (unknown.length > 0 || unknownNames.length > 0) {
  const what = [
    ...unknown.map((a) => `unknown argument ${JSON.stringify(a)}`),
    ...unknownNames.map((n) => `unknown benchmark ${JSON.stringify(n)} in --only`)
  ]
  process.stderr.write(`${what.join("; ")}\nusage: npm run bench -- [--json] [--only=${names.join(",")}] [--svg=<dir>]\n`)
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

if (svg !== undefined) {
  Fs.mkdirSync(svg, { recursive: true })
  const write = (name: string, content: string) => {
    Fs.writeFileSync(Path.join(svg, name), content)
    progress(`wrote ${Path.join(svg, name)}`)
  }
  if (Throughput.lastPoints.length > 0) write("bench-throughput.svg", Chart.throughput(Throughput.lastPoints, Throughput.sweepSessions, description))
  if (StartupRecovery.lastPoints.length > 0) write("bench-recovery.svg", Chart.recovery(StartupRecovery.lastPoints, description))
}

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
