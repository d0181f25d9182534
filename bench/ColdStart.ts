/**
 * Benchmark: CLI cold start. How long a script waits for `mtsession token
 * <provider>` and for `mtsession status`, each a new process of the bundled
 * CLI (`process.execPath dist/mtsession.cjs ...`, as `bin` runs it).
 *
 * Setup, outside the timing: a temporary HOME with a configuration naming one
 * provider whose issuer is a loopback address nothing listens on, and a
 * session stored there with `mtsession import` (valid for an hour): `token`
 * then reads the store and prints, it never needs the server.
 *
 * The launcher (scripts/launcher.cjs) runs the bundle with a V8 code cache
 * written after a command ran (in `NODE_COMPILE_CACHE` when set). Two
 * figures for each command:
 * - first run: every spawn with a new, empty cache directory (the first
 *   start after an install or an upgrade);
 * - warm: spawns sharing one cache directory that an untimed run filled.
 * The note adds a warm-process figure with the cache disabled
 * (`NODE_DISABLE_COMPILE_CACHE=1`).
 *
 * Baseline: `process.execPath -e 0` with the same environment, spawned
 * alternately with ours, so that drift favours neither.
 *
 * Floor of the stack (`coldstart-floor.ts`): a one-command effect/cli program
 * that prints its argument, bundled as the CLI is and run by its launcher
 * (with the same code cache), spawned in the
 * same rounds (warm cache). Its own row compares it with `node -e 0`; each
 * warm row's note says how much of ours is above it.
 *
 * Spawns are synchronous (`spawnSync`): the figure is the wall time from the
 * spawn to the child's exit, with nothing else running in this process.
 */
import { spawnSync } from "node:child_process"
import { buildSync } from "esbuild"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { median, now, progress, type Row } from "./Measure.js"

/** Timed spawns of each warm figure. */
const warmSpawns = 15
/** Timed spawns of each first-run figure (each fills a new cache). */
const firstSpawns = 7

const repoRoot = NodePath.resolve(import.meta.dirname, "..")
const cli = NodePath.join(repoRoot, "dist", "mtsession.cjs")
const provider = "local"

const configYaml = `auth:
  oauth:
    providers:
      ${provider}:
        issuer: "http://127.0.0.1:9"
        client_id: "bench-client"
        scopes: ["openid", "offline_access"]
  session_persistence:
    token_storage:
      storage_backend: filesystem
`

/** Builds the CLI when `dist/` has no bundle. */
const ensureBuilt = () => {
  if (Fs.existsSync(cli) && Fs.existsSync(NodePath.join(repoRoot, "dist", "cli.cjs"))) return
  progress("coldstart: dist/ is missing, running npm run build")
  const built = spawnSync("npm", ["run", "build", "--silent"], { cwd: repoRoot, stdio: "inherit" })
  if (built.status !== 0) throw new Error("npm run build failed")
}

/** Spawns one process and returns its wall time in ms; throws when it does not exit 0. */
const spawnMs = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, cwd: string, expect?: RegExp): number => {
  const start = now()
  const result = spawnSync(process.execPath, args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  const ms = now() - start
  if (result.status !== 0 || (expect !== undefined && !expect.test(result.stdout))) {
    throw new Error(`${args.join(" ")} exited ${result.status}: ${result.stdout}${result.stderr}`)
  }
  return ms
}

/** Bundles the floor program into `dir/floor` as the CLI is bundled, beside mtsession's launcher; returns the launcher's path. */
const buildFloor = (dir: string): string => {
  const floorDir = NodePath.join(dir, "floor")
  buildSync({
    entryPoints: [NodePath.join(import.meta.dirname, "coldstart-floor.ts")],
    outfile: NodePath.join(floorDir, "cli.cjs"),
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node22",
    minify: true,
    logLevel: "warning"
  })
  const launcher = NodePath.join(floorDir, "mtsession.cjs")
  Fs.copyFileSync(NodePath.join(repoRoot, "scripts", "launcher.cjs"), launcher)
  return launcher
}

/** Runs the benchmark: its rows. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  ensureBuilt()
  const home = Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "mts-bench-cold-"))
  try {
    const config = NodePath.join(home, "config.yaml")
    Fs.writeFileSync(config, configYaml)
    const base: NodeJS.ProcessEnv = {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: home,
      MAGICTUNNEL_CONFIG_PATH: config,
      MAGICTUNNEL_TOKEN_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString("base64")
    }
    const warmCache = NodePath.join(home, "compile-cache")
    const warmEnv = { ...base, NODE_COMPILE_CACHE: warmCache }

    progress("coldstart: importing a session")
    const imported = spawnSync(process.execPath, [cli, "import", provider], {
      cwd: home,
      env: warmEnv,
      encoding: "utf8",
      input: JSON.stringify({
        access_token: `at-${"x".repeat(600)}`,
        token_type: "Bearer",
        expires_in: 3600,
        refresh_token: "rt-bench",
        scope: "openid offline_access"
      })
    })
    if (imported.status !== 0) throw new Error(`mtsession import failed: ${imported.stdout}${imported.stderr}`)

    const commands = [
      { name: "token", args: [cli, "token", provider], expect: /^at-x+\n$/ },
      { name: "status", args: [cli, "status"], expect: new RegExp(`${provider}\\s+${provider}\\s+active`) }
    ] as const
    const baselineArgs = ["-e", "0"]
    const floorArgs = [buildFloor(home), "token", provider]
    const floorOutput = new RegExp(`^at-${provider}\n$`)
    const floorWarm: Array<number> = []
    const floorBaseline: Array<number> = []

    progress("coldstart: measuring")
    // Warm-up, untimed: fills the shared cache and the page cache.
    for (const c of commands) spawnMs(c.args, warmEnv, home, c.expect)
    spawnMs(baselineArgs, warmEnv, home)
    spawnMs(floorArgs, warmEnv, home, floorOutput)

    const rows: Array<Row> = []
    for (const c of commands) {
      const warm: Array<number> = []
      const warmBaseline: Array<number> = []
      const first: Array<number> = []
      const firstBaseline: Array<number> = []
      const uncached: Array<number> = []
      const floor: Array<number> = []
      for (let i = 0; i < warmSpawns; i++) {
        if (i % 2 === 0) {
          warm.push(spawnMs(c.args, warmEnv, home, c.expect))
          warmBaseline.push(spawnMs(baselineArgs, warmEnv, home))
          floor.push(spawnMs(floorArgs, warmEnv, home, floorOutput))
        } else {
          floor.push(spawnMs(floorArgs, warmEnv, home, floorOutput))
          warmBaseline.push(spawnMs(baselineArgs, warmEnv, home))
          warm.push(spawnMs(c.args, warmEnv, home, c.expect))
        }
      }
      floorWarm.push(...floor)
      floorBaseline.push(...warmBaseline)
      for (let i = 0; i < firstSpawns; i++) {
        const fresh = { ...base, NODE_COMPILE_CACHE: Fs.mkdtempSync(NodePath.join(home, "cc-")) }
        first.push(spawnMs(c.args, fresh, home, c.expect))
        firstBaseline.push(spawnMs(baselineArgs, fresh, home))
        uncached.push(spawnMs(c.args, { ...base, NODE_DISABLE_COMPILE_CACHE: "1" }, home, c.expect))
      }
      const baselineName = "node -e 0 (same node, same environment)"
      rows.push(
        {
          name: `mtsession ${c.name}, warm code cache`,
          ours: { value: median(warm), unit: "ms" },
          baseline: { value: median(warmBaseline), unit: "ms" },
          baselineName,
          note: `median of ${warmSpawns} spawns, alternating with the baseline; code cache off: ${
            median(uncached).toFixed(0)
          } ms; effect/cli floor ${median(floor).toFixed(0)} ms, ours ${(median(warm) - median(floor)).toFixed(0)} ms above it`,
          extra: { oursMs: warm, baselineMs: warmBaseline, cacheDisabledMs: uncached, floorMs: floor }
        },
        {
          name: `mtsession ${c.name}, first run (no code cache)`,
          ours: { value: median(first), unit: "ms" },
          baseline: { value: median(firstBaseline), unit: "ms" },
          baselineName,
          note: `median of ${firstSpawns} spawns, each with a new cache directory (compiles and writes the cache)`,
          extra: { oursMs: first, baselineMs: firstBaseline }
        }
      )
    }
    rows.push({
      name: "effect/cli floor (one command), warm code cache",
      ours: { value: median(floorWarm), unit: "ms" },
      baseline: { value: median(floorBaseline), unit: "ms" },
      baselineName: "node -e 0 (same node, same environment)",
      note: `bench/coldstart-floor.ts bundled and launched as the CLI is: what Effect and effect/cli cost before a command does anything; median of ${floorWarm.length} spawns`,
      extra: { oursMs: floorWarm, baselineMs: floorBaseline }
    })
    return rows
  } finally {
    Fs.rmSync(home, { recursive: true, force: true })
  }
}
