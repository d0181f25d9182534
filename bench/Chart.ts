/**
 * Line charts as plain SVG, written by the benchmark (`--svg=<dir>`): axes
 * with ticks and labels, one polyline per series with a marker at each
 * measured point, and a legend. No dependency; the output is a small,
 * deterministic text file that can be committed and shown in Markdown.
 */

/** One line of a chart: a name, a colour, a dash pattern (none = solid), and its points. */
export interface Series {
  readonly name: string
  readonly color: string
  readonly dashed?: boolean
  readonly points: ReadonlyArray<readonly [x: number, y: number]>
}

/** What a chart shows. `xLog2`: the x axis is logarithmic (base 2), ticks at the measured x values. */
export interface Chart {
  readonly title: string
  readonly subtitle: string
  readonly xLabel: string
  readonly yLabel: string
  readonly xLog2?: boolean
  readonly series: ReadonlyArray<Series>
}

const width = 720
const height = 440
const margin = { left: 80, right: 24, top: 64, bottom: 64 }
const plotWidth = width - margin.left - margin.right
const plotHeight = height - margin.top - margin.bottom

const escape = (text: string): string =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("\"", "&quot;")

/** A "nice" step (1, 2 or 5 times a power of ten) giving about `count` ticks up to `max`. */
const niceStep = (max: number, count: number): number => {
  const raw = max / count
  const power = 10 ** Math.floor(Math.log10(raw))
  const fraction = raw / power
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power
}

const label = (value: number): string => value.toLocaleString("en")

/** The chart as an SVG document. */
export const render = (chart: Chart): string => {
  const all = chart.series.flatMap((s) => s.points)
  const xs = [...new Set(all.map(([x]) => x))].sort((a, b) => a - b)
  const yMaxData = Math.max(...all.map(([, y]) => y), 1)
  const yStep = niceStep(yMaxData, 5)
  const yMax = Math.ceil(yMaxData / yStep) * yStep

  const xMin = chart.xLog2 ? Math.log2(xs[0] ?? 1) : 0
  const xMaxData = xs[xs.length - 1] ?? 1
  const xStep = chart.xLog2 ? 1 : niceStep(xMaxData, 5)
  const xMax = chart.xLog2 ? Math.log2(xMaxData) : Math.ceil(xMaxData / xStep) * xStep
  const xOf = (x: number) => {
    const v = chart.xLog2 ? Math.log2(x) : x
    return margin.left + (xMax === xMin ? 0 : ((v - xMin) / (xMax - xMin)) * plotWidth)
  }
  const yOf = (y: number) => margin.top + plotHeight - (y / yMax) * plotHeight
  const f = (n: number) => n.toFixed(1)

  const out: Array<string> = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escape(chart.title)}</text>`,
    `<text x="${width / 2}" y="44" text-anchor="middle" fill="#555555">${escape(chart.subtitle)}</text>`
  )
  // Horizontal grid lines and y ticks.
  for (let y = 0; y <= yMax + yStep / 2; y += yStep) {
    const py = f(yOf(y))
    out.push(
      `<line x1="${margin.left}" y1="${py}" x2="${width - margin.right}" y2="${py}" stroke="#e5e5e5"/>`,
      `<text x="${margin.left - 8}" y="${py}" text-anchor="end" dominant-baseline="middle">${label(y)}</text>`
    )
  }
  // X ticks: the measured values on a log axis, nice steps on a linear one.
  const xTicks = chart.xLog2
    ? xs
    : Array.from({ length: Math.round(xMax / xStep) + 1 }, (_, i) => i * xStep)
  for (const x of xTicks) {
    const px = f(xOf(x))
    out.push(
      `<line x1="${px}" y1="${margin.top + plotHeight}" x2="${px}" y2="${margin.top + plotHeight + 5}" stroke="#333333"/>`,
      `<text x="${px}" y="${margin.top + plotHeight + 20}" text-anchor="middle">${label(x)}</text>`
    )
  }
  // Axes and their labels.
  out.push(
    `<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${margin.top + plotHeight}" stroke="#333333"/>`,
    `<line x1="${margin.left}" y1="${margin.top + plotHeight}" x2="${width - margin.right}" y2="${
      margin.top + plotHeight
    }" stroke="#333333"/>`,
    `<text x="${margin.left + plotWidth / 2}" y="${height - 16}" text-anchor="middle">${escape(chart.xLabel)}</text>`,
    `<text x="20" y="${margin.top + plotHeight / 2}" text-anchor="middle" transform="rotate(-90 20 ${
      margin.top + plotHeight / 2
    })">${escape(chart.yLabel)}</text>`
  )
  // The series.
  for (const s of chart.series) {
    const points = s.points.map(([x, y]) => `${f(xOf(x))},${f(yOf(y))}`).join(" ")
    out.push(
      `<polyline points="${points}" fill="none" stroke="${s.color}" stroke-width="2"${
        s.dashed ? ` stroke-dasharray="6 4"` : ""
      }/>`
    )
    for (const [x, y] of s.points) out.push(`<circle cx="${f(xOf(x))}" cy="${f(yOf(y))}" r="3" fill="${s.color}"/>`)
  }
  // The legend, top left inside the plot.
  chart.series.forEach((s, i) => {
    const y = margin.top + 14 + i * 18
    const x = margin.left + 12
    out.push(
      `<rect x="${x - 6}" y="${y - 10}" width="${Math.max(...chart.series.map((t) => t.name.length)) * 6.6 + 44}" height="18" fill="#ffffff" fill-opacity="0.85"/>`,
      `<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${s.color}" stroke-width="2"${
        s.dashed ? ` stroke-dasharray="6 4"` : ""
      }/>`,
      `<text x="${x + 32}" y="${y}" dominant-baseline="middle">${escape(s.name)}</text>`
    )
  })
  out.push("</svg>")
  return `${out.join("\n")}\n`
}

/** Refresh grants per second against concurrency, ours (disk and tmpfs) against the raw loop. */
export const throughput = (
  points: ReadonlyArray<{
    readonly medium: string
    readonly sessions: number
    readonly concurrency: number
    readonly ours: number
    readonly raw: number
    readonly durable: number
  }>,
  sessions: number,
  machine: string
): string => {
  const on = (medium: string) =>
    points.filter((p) => p.medium === medium && p.sessions === sessions).sort((a, b) => a.concurrency - b.concurrency)
  const disk = on("disk")
  const memory = on("memory")
  const series: Array<Series> = [
    { name: "ours, encrypted file store on disk", color: "#1f6fb4", points: disk.map((p) => [p.concurrency, p.ours] as const) },
    { name: "raw oauth4webapi loop (beside the disk run)", color: "#d95f02", dashed: true, points: disk.map((p) => [p.concurrency, p.raw] as const) },
    {
      name: "raw loop + durable write per refresh, disk",
      color: "#7570b3",
      dashed: true,
      points: disk.map((p) => [p.concurrency, p.durable] as const)
    }
  ]
  if (memory.length > 0) {
    series.push(
      { name: "ours, encrypted file store on tmpfs", color: "#2ca02c", points: memory.map((p) => [p.concurrency, p.ours] as const) },
      { name: "raw oauth4webapi loop (beside the tmpfs run)", color: "#a0a0a0", dashed: true, points: memory.map((p) => [p.concurrency, p.raw] as const) },
      {
        name: "raw loop + durable write per refresh, tmpfs",
        color: "#e7298a",
        dashed: true,
        points: memory.map((p) => [p.concurrency, p.durable] as const)
      }
    )
  }
  return render({
    title: `Refresh throughput, ${sessions} sessions, rotation on, server in its own process`,
    subtitle: machine,
    xLabel: "concurrent refreshes (concurrent_refresh_limit / raw pool size)",
    yLabel: "refresh grants per second",
    xLog2: true,
    series
  })
}

/** Recovery time against the number of stored sessions, ours against both raw loops. */
export const recovery = (
  points: ReadonlyArray<{
    readonly sessions: number
    readonly oursMs: number
    readonly openedMs: number
    readonly rawMs: number
    readonly rawAsyncMs: number
  }>,
  machine: string
): string => {
  const sorted = [...points].sort((a, b) => a.sessions - b.sessions)
  return render({
    title: "Startup recovery, encrypted file store (tmpfs)",
    subtitle: machine,
    xLabel: "stored sessions",
    yLabel: "wall time (ms)",
    series: [
      { name: "ours: Recovery.run(), store just opened (process start)", color: "#7b3fa0", points: sorted.map((p) => [p.sessions, p.openedMs] as const) },
      { name: "ours: Recovery.run(), repeated", color: "#1f6fb4", points: sorted.map((p) => [p.sessions, p.oursMs] as const) },
      { name: "raw loop, async fs.readFile (16 in flight)", color: "#d95f02", dashed: true, points: sorted.map((p) => [p.sessions, p.rawAsyncMs] as const) },
      { name: "raw loop, readFileSync (blocks the event loop)", color: "#a0a0a0", dashed: true, points: sorted.map((p) => [p.sessions, p.rawMs] as const) }
    ]
  })
}
