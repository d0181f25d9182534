// Bundles the CLI so a call from a shell script starts fast: no module
// resolution across hundreds of files at every start.
//
// One CommonJS bundle (dist/cli.cjs), run by the `bin` (dist/mtsession.cjs,
// a copy of scripts/launcher.cjs) with a V8 code cache written after each
// command ran: the launcher explains why. Modules reached only through
// `import()` (each command's body, `handlers/`; the login flow, the status
// server, MCP, the backends) are bundled as lazily initialised modules, so
// `mtsession token` evaluates none of what it does not use.
import { build } from "esbuild"
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))

/**
 * effect/cli builds an `Intl.Segmenter` when its module is evaluated, for
 * measuring help text; creating one loads ICU's break data (5-10 ms), which
 * every command paid before parsing its arguments. Built on first use instead
 * (help output is unchanged). If the source no longer matches, the build says
 * so and bundles it untouched.
 */
const lazySegmenter = {
  name: "lazy-grapheme-segmenter",
  setup(b) {
    b.onLoad({ filter: /[\\/]effect[\\/]dist[\\/]cli[\\/]CliOutput\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8")
      const eager = /const graphemeSegmenter = \/\*#__PURE__\*\/new Intl\.Segmenter\(undefined, \{\s*granularity: "grapheme"\s*\}\);/
      if (!eager.test(source)) {
        return { contents: source, loader: "js", warnings: [{ text: "effect/cli CliOutput.js changed: its Intl.Segmenter is no longer deferred" }] }
      }
      const lazy = `let graphemeSegmenterInstance;
const graphemeSegmenter = { segment: (text) => (graphemeSegmenterInstance ??= new Intl.Segmenter(undefined, { granularity: "grapheme" })).segment(text) };`
      return { contents: source.replace(eager, lazy), loader: "js" }
    })
  }
}

/**
 * `node:child_process` and `node:readline` are for `login` (the browser) and
 * for prompts, yet effect/cli's environment (child process spawner,
 * terminal) imports them in every command. ES imports of them get a module
 * whose functions load the built-in on their first call. Only plain functions
 * are exported (a class behind a wrapper would break `instanceof`): a module
 * that imports anything else fails the build.
 */
const lazyBuiltins = {
  name: "lazy-builtins",
  setup(b) {
    b.onResolve({ filter: /^(node:)?(child_process|readline)$/ }, (args) =>
      args.kind === "import-statement" || args.kind === "dynamic-import"
        ? { path: `node:${args.path.replace(/^node:/, "")}`, namespace: "lazy-builtin" }
        : undefined)
    b.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => {
      const builtin = createRequire(import.meta.url)(args.path)
      const names = Object.keys(builtin).filter((n) => /^[a-z][\w$]*$/.test(n) && typeof builtin[n] === "function")
      return {
        contents: `let loaded\nconst load = () => (loaded ??= require(${JSON.stringify(args.path)}))\n${
          names.map((n) => `export function ${n}(...args) { return load().${n}(...args) }`).join("\n")
        }\n`,
        loader: "js"
      }
    })
  }
}

const result = await build({
  entryPoints: ["src/cli/main.ts"],
  outfile: "dist/cli.cjs",
  write: false,
  metafile: true,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node22",
  // `import()` becomes `require()` (of an ES module too: Node >= 22.12 loads one without a flag):
  // a script run by node:vm can only `import()` through an experimental loader that warns.
  supported: { "dynamic-import": false },
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  // The native keyring binding stays a real dependency, loaded lazily only when a keyring is used.
  // So are Redis (fleet mode) and OpenTelemetry: imported only when configured, from node_modules.
  external: ["@napi-rs/keyring", "redis", "@redis/*", "@opentelemetry/*", "@effect/opentelemetry", "@effect/opentelemetry/*"],
  define: { __MTSESSION_VERSION__: JSON.stringify(pkg.version) },
  plugins: [lazySegmenter, lazyBuiltins],
  logLevel: "warning"
})
// `BUILD_METAFILE=<file> npm run build` keeps esbuild's account of which module went where
// (for https://esbuild.github.io/analyze/ or a look at what a command loads).
if (process.env["BUILD_METAFILE"]) writeFileSync(process.env["BUILD_METAFILE"], JSON.stringify(result.metafile))

// The launcher reads the bundle as latin1 (no UTF-8 decoding): it must be ASCII, which esbuild's
// default charset makes it (it escapes the rest).
const bundleBytes = result.outputFiles.find((o) => o.path.endsWith(".cjs")).contents
if (bundleBytes.some((byte) => byte > 0x7f)) throw new Error("dist/cli.cjs is not ASCII: the launcher reads it as latin1")
if (/\bimport\(/.test(Buffer.from(bundleBytes).toString("latin1"))) throw new Error("dist/cli.cjs calls import(), which the launcher's node:vm script cannot")

/** Writes `file` whole or not at all: a CLI starting meanwhile reads the old file or the new one. */
const replace = (file, write) => {
  const temp = `${file}.${process.pid}.tmp`
  write(temp)
  renameSync(temp, file)
}
// A fresh clone has no dist/ (esbuild, told not to write, does not make it).
mkdirSync("dist", { recursive: true })
// The source map first, then the bundle that names it, then the launcher.
for (const output of [...result.outputFiles].sort((a, b) => Number(b.path.endsWith(".map")) - Number(a.path.endsWith(".map")))) {
  replace(output.path, (temp) => writeFileSync(temp, output.contents))
}
replace("dist/mtsession.cjs", (temp) => {
  copyFileSync("scripts/launcher.cjs", temp)
  chmodSync(temp, 0o755)
})
// What earlier builds wrote and this one does not: the ESM entry, its chunks and launcher.
for (const stale of ["dist/chunks", "dist/cli.mjs", "dist/cli.mjs.map", "dist/mtsession.mjs"]) {
  rmSync(stale, { recursive: true, force: true })
}
