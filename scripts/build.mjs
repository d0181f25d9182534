// Bundles the CLI so a call from a shell script starts fast: no module
// resolution across hundreds of files at every start. The `bin`
// (dist/mtsession.mjs) is a few lines that turn on Node's compile cache and
// then import the entry (dist/cli.mjs): compiling the bundle's source was
// the largest part of a cold start, and the cache makes later starts skip it.
//
// The bundle is split (ESM chunks in dist/chunks/): the entry holds the
// command tree (flags, help) and each command's body is a chunk of its own,
// imported when that command runs, so `mtsession token` never evaluates the
// login flow, the status server, MCP or the backends it does not use. The
// compile cache covers every chunk (`enableCompileCache` applies to every
// module loaded after it).
import { build } from "esbuild"
import { chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
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
 * `import * as Http from "node:http"` in an ES module makes Node build the
 * module's ESM facade, which reads every export, and three of them
 * (`WebSocket`, `CloseEvent`, `MessageEvent`) are getters that load Node's
 * bundled undici: 20-40 ms at every start of a chunk that imports `node:http`
 * (the OAuth loopback redirect server is in the `token` path through
 * `OAuthClient`). ES imports of `node:http` get a module that takes the
 * CommonJS module instead and re-exports its plain values; a name it lacks
 * fails the build.
 */
const httpWithoutFacade = {
  name: "node-http-without-esm-facade",
  setup(b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (args) =>
      args.kind === "import-statement" || args.kind === "dynamic-import"
        ? { path: "node:http", namespace: "node-http-cjs" }
        : undefined)
    b.onLoad({ filter: /.*/, namespace: "node-http-cjs" }, () => {
      const names = Object.entries(Object.getOwnPropertyDescriptors(createRequire(import.meta.url)("node:http")))
        .filter(([name, d]) => "value" in d && /^[A-Za-z_$][\w$]*$/.test(name) && name !== "default")
        .map(([name]) => name)
      return {
        contents: `const http = require("node:http")\nexport default http\n${names.map((n) => `export const ${n} = http.${n}`).join("\n")}\n`,
        loader: "js"
      }
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

const started = Date.now()
const result = await build({
  entryPoints: { cli: "src/cli/main.ts" },
  outdir: "dist",
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": ".mjs" },
  metafile: true,
  bundle: true,
  splitting: true,
  platform: "node",
  format: "esm",
  target: "node22",
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  // The native keyring binding stays a real dependency, loaded lazily only when a keyring is used.
  // So are Redis (fleet mode) and OpenTelemetry: imported only when configured, from node_modules.
  external: ["@napi-rs/keyring", "redis", "@redis/*", "@opentelemetry/*", "@effect/opentelemetry", "@effect/opentelemetry/*"],
  define: { __MTSESSION_VERSION__: JSON.stringify(pkg.version) },
  // CommonJS dependencies bundled into a chunk call `require` for Node's built-ins.
  banner: {
    js: "import { createRequire as __mtsCreateRequire } from 'node:module'; const require = __mtsCreateRequire(import.meta.url);"
  },
  plugins: [lazySegmenter, httpWithoutFacade, lazyBuiltins],
  logLevel: "warning"
})
// `BUILD_METAFILE=<file> npm run build` keeps esbuild's account of which module went into which
// chunk (for https://esbuild.github.io/analyze/ or a look at what a command loads).
if (process.env["BUILD_METAFILE"]) writeFileSync(process.env["BUILD_METAFILE"], JSON.stringify(result.metafile))
// Chunks of earlier builds go once this build's are written (a CLI started
// meanwhile still finds the chunks its entry names); so do not those of a
// build that ran at the same time and may have written the entry last.
const written = new Set(Object.keys(result.metafile.outputs))
for (const name of readdirSync("dist/chunks")) {
  const file = `dist/chunks/${name}`
  if (!written.has(file) && statSync(file).mtimeMs < started) rmSync(file, { force: true })
}
for (const stale of ["dist/mtsession.mjs.map", "dist/cli.js", "dist/cli.js.map"]) rmSync(stale, { force: true })
writeFileSync(
  "dist/mtsession.mjs",
  `#!/usr/bin/env node
// mtsession launcher: V8's compile cache (in the OS temp directory, or
// NODE_COMPILE_CACHE) spares every later start the compilation of the bundle.
import module from "node:module"
module.enableCompileCache?.()
await import("./cli.mjs")
`
)
chmodSync("dist/mtsession.mjs", 0o755)
