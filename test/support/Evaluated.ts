/**
 * Which source modules a run of the bundled CLI evaluated, from V8's
 * coverage (`NODE_V8_COVERAGE`) of `dist/cli.cjs` read through its source map.
 *
 * esbuild bundles a module that is reached through `import()` as an
 * initialiser: a function holding all of the module's code, called the first
 * time the module is needed. So a module was evaluated when its initialiser
 * ran: the largest function of the bundle holding at least half of the
 * module's code (the rest is the export table, at the top level; any function
 * of the module is inside it) has a call count above zero. A module without one is bundled at the top level: it is
 * evaluated at every start, and reported so.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

interface Range {
  readonly startOffset: number
  readonly endOffset: number
  readonly count: number
}

const base64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const digit = new Map([...base64].map((c, i) => [c, i]))

/** Generated offset and source index of every segment of a source map's `mappings`. */
const segmentsOf = (mappings: string, lineStarts: ReadonlyArray<number>) => {
  const out: Array<{ offset: number; source: number }> = []
  let source = 0
  let line = 0
  for (const lineText of mappings.split(";")) {
    let column = 0
    for (const segment of lineText.split(",")) {
      if (segment === "") continue
      const values: Array<number> = []
      let value = 0
      let shift = 0
      for (const c of segment) {
        const d = digit.get(c)!
        value += (d & 31) << shift
        if (d & 32) shift += 5
        else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1)
          value = 0
          shift = 0
        }
      }
      column += values[0]!
      if (values.length >= 4) {
        source += values[1]!
        out.push({ offset: lineStarts[line]! + column, source })
      }
    }
    line++
  }
  return out
}

/** Whether a run evaluated a module (`src/...`, as in the repository), given its coverage directory. */
export const evaluation = (bundle: string, coverageDir: string): (module: string) => boolean => {
  const text = Fs.readFileSync(bundle, "latin1")
  const map = JSON.parse(Fs.readFileSync(`${bundle}.map`, "utf8")) as { sources: Array<string>; mappings: string }
  const lineStarts = [0]
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) lineStarts.push(i + 1)
  // The coverage file of the CLI's process: the one that covered the bundle.
  const script = Fs.readdirSync(coverageDir)
    .map((f) =>
      JSON.parse(Fs.readFileSync(Path.join(coverageDir, f), "utf8")) as {
        result: Array<{ url: string; functions: Array<{ ranges: Array<Range> }> }>
      }
    )
    .flatMap((c) => c.result)
    .find((s) => s.url.endsWith(`/${Path.basename(bundle)}`))
  if (script === undefined) throw new Error(`no coverage of ${bundle} in ${coverageDir}`)
  // Each function's own extent and call count (its first range); the bundle's top level is not one.
  const functions = script.functions.map((f) => f.ranges[0]!).filter((r) => r.startOffset > 1)
  const segments = segmentsOf(map.mappings, lineStarts)
  return (module: string) => {
    const source = map.sources.findIndex((s) => s.endsWith(`/${module}`))
    if (source < 0) throw new Error(`${module} is not in ${bundle}`)
    const offsets = segments.filter((s) => s.source === source).map((s) => s.offset)
    const initialiser = functions
      .filter((f) => offsets.filter((o) => o >= f.startOffset && o < f.endOffset).length * 2 >= offsets.length)
      .sort((a, b) => (b.endOffset - b.startOffset) - (a.endOffset - a.startOffset))[0]
    return initialiser === undefined || initialiser.count > 0
  }
}
