/**
 * What every benchmark shares: a clock, medians, memory sampling, the
 * machine line and the result table.
 *
 * A benchmark produces {@link Row}s: our figure beside a baseline measured in
 * the same process and the same run, and their ratio. Nothing here judges a
 * figure: benchmarks print, they never fail on a time.
 */
import * as Os from "node:os"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

/** One figure and its unit. */
export interface Figure {
  readonly value: number
  readonly unit: string
}

/** One line of the result table. */
export interface Row {
  readonly name: string
  readonly ours: Figure
  readonly baseline: Figure
  /** The baseline's name, for the table's note and the JSON. */
  readonly baselineName: string
  readonly note: string
  /** Reference figures behind the note, for `--json`. */
  readonly extra?: Readonly<Record<string, unknown>>
}

/** Monotonic milliseconds with sub-microsecond resolution. */
export const now = (): number => performance.now()

/** The median of some samples. */
export const median = (samples: ReadonlyArray<number>): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Ours divided by the baseline. */
export const ratioOf = (row: Row): number => row.ours.value / row.baseline.value

/** Runs `f` `runs` times and returns the median of what it reports. */
export const medianOf = async (runs: number, f: () => Promise<number> | number): Promise<number> => {
  const samples: Array<number> = []
  for (let i = 0; i < runs; i++) samples.push(await f())
  return median(samples)
}

/** Progress goes to stderr, so `--json` output on stdout stays parseable. */
export const progress = (line: string): void => {
  process.stderr.write(`${line}\n`)
}

// V8 can expose `gc` at run time: the bench then needs no node flag, whatever runs it.
V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

/** Collects garbage twice (weak references and finalizers need a second pass). */
export const collect = (): void => {
  gc()
  gc()
}

/** What a piece of work cost in memory: peaks above the start (after a GC), in MiB. */
export interface MemoryCost {
  readonly peakHeapMiB: number
  readonly peakRssMiB: number
}

const mib = (bytes: number) => bytes / (1024 * 1024)

/**
 * A memory sampler: call `sample()` as often as is cheap (a timer for
 * asynchronous work, every few iterations of a synchronous loop), then
 * `finish()` when the work is done.
 */
export const memorySampler = () => {
  collect()
  const start = process.memoryUsage()
  let peakHeap = start.heapUsed
  let peakRss = start.rss
  const sample = () => {
    const m = process.memoryUsage()
    if (m.heapUsed > peakHeap) peakHeap = m.heapUsed
    if (m.rss > peakRss) peakRss = m.rss
  }
  const timer = setInterval(sample, 2)
  return {
    sample,
    finish: (): MemoryCost => {
      clearInterval(timer)
      sample()
      return { peakHeapMiB: mib(peakHeap - start.heapUsed), peakRssMiB: mib(peakRss - start.rss) }
    }
  }
}

/** The load averages (1, 5, 15 minutes) and whether the machine looks busy: other work distorts every figure. */
export const load = (): { readonly averages: ReadonlyArray<number>; readonly busy: boolean; readonly line: string } => {
  const averages = Os.loadavg()
  const busy = (averages[0] ?? 0) > Os.cpus().length / 2
  const line = `load average ${averages.map((a) => a.toFixed(2)).join(" ")}${
    busy ? " -- the machine is busy: figures will be slower and noisier than on a quiet machine" : ""
  }`
  return { averages, busy, line }
}

/** One line describing the machine and the runtime. */
export const machine = (): string => {
  const cpus = Os.cpus()
  const model = cpus[0]?.model.trim() ?? "unknown CPU"
  const mem = (Os.totalmem() / 1024 ** 3).toFixed(0)
  return `${model}, ${cpus.length} cores, ${mem} GiB RAM, ${Os.type()} ${Os.release()}, Node ${process.version}`
}

const formatNumber = (value: number): string =>
  value >= 1000 ? value.toFixed(0) : value >= 100 ? value.toFixed(1) : value >= 10 ? value.toFixed(2) : value.toFixed(3)

/** `12.3 ns`, `4.56 ms`. */
export const formatFigure = (f: Figure): string => `${formatNumber(f.value)} ${f.unit}`

/** `x3.21`. */
export const formatRatio = (ratio: number): string => `x${ratio >= 100 ? ratio.toFixed(0) : ratio.toFixed(2)}`

/** The rows as one aligned table. */
export const table = (rows: ReadonlyArray<Row>): string => {
  const header = ["benchmark", "ours", "baseline", "ratio", "note"]
  const lines = rows.map((r) => [r.name, formatFigure(r.ours), formatFigure(r.baseline), formatRatio(ratioOf(r)), r.note])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const right = new Set([1, 2, 3])
  const render = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
  return [render(header), widths.map((w, i) => (i === widths.length - 1 ? "-".repeat(4) : "-".repeat(w))).join("  "), ...lines.map(render)]
    .join("\n")
}
