/**
 * How the CLI speaks: aligned tables and plain sentences for people, one JSON
 * document for scripts (`--json`), progress on stderr, colour only on a
 * terminal and never with `NO_COLOR`. Nothing printed here is ever a secret:
 * only `mtsession token` prints a token, and it does so itself.
 */
import { Config, Console, Effect } from "effect"
import { Flag, GlobalFlag } from "effect/cli"

/** `--json`: machine-readable output on stdout, accepted by every command. */
export const Json = GlobalFlag.Setting("json")({
  flag: Flag.Boolean("json").pipe(
    Flag.withDescription("Print one JSON document on stdout instead of text (stable fields, see docs/cli.md)"),
    Flag.withDefault(false)
  )
})

/** `--config PATH`: the configuration file, before MAGICTUNNEL_CONFIG_PATH and the search order. */
export const ConfigPath = GlobalFlag.Setting("config")({
  flag: Flag.String("config").pipe(
    Flag.withDescription("Configuration file (default: MAGICTUNNEL_CONFIG_PATH, then the search order in docs/configuration.md)"),
    Flag.optional
  )
})

/** Whether stdout may be coloured: a terminal, and `NO_COLOR` unset or empty (https://no-color.org). */
export const colorful: Effect.Effect<boolean> = Config.String("NO_COLOR").pipe(
  Config.withDefault(""),
  Effect.map((noColor) => noColor === "" && process.stdout.isTTY === true),
  Effect.orElseSucceed(() => false)
)

/** Colours for states in human output, applied only when `color` is true. */
export const paint = (color: boolean) => {
  const p = (code: number) => (s: string) => color ? `\x1b[${code}m${s}\x1b[0m` : s
  return { green: p(32), yellow: p(33), red: p(31), dim: p(2) }
}

// ANSI sequences take no columns.
const visibleLength = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "").length

/** Renders rows as an aligned table with a header. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ""))))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - visibleLength(c)))).join("  ")
      .trimEnd()
  return [line(header.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n")
}

/** Prints a JSON document on stdout. */
export const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/** Prints a progress line on stderr when a person is watching (stderr is a terminal). */
export const progress = (message: string) =>
  Effect.sync(() => {
    if (process.stderr.isTTY === true) process.stderr.write(`${message}\n`)
  })

/** Human duration for "expires in": `59m`, `3h 5m`, `2d 4h`, `-5m` when past. */
export const relative = (ms: number): string => {
  const sign = ms < 0 ? "-" : ""
  let s = Math.floor(Math.abs(ms) / 1000)
  const d = Math.floor(s / 86400)
  s -= d * 86400
  const h = Math.floor(s / 3600)
  s -= h * 3600
  const m = Math.floor(s / 60)
  s -= m * 60
  const parts = d > 0 ? [`${d}d`, `${h}h`] : h > 0 ? [`${h}h`, `${m}m`] : m > 0 ? [`${m}m`] : [`${s}s`]
  return sign + parts.filter((p, i) => i === 0 || !p.startsWith("0")).join(" ")
}
