// Bundles the CLI into one file so a call from a shell script starts fast:
// no module resolution across hundreds of files at every start. The `bin`
// (dist/mtsession.mjs) is a few lines that turn on Node's compile cache and
// then import the bundle (dist/cli.mjs): compiling the bundle's source was
// the largest part of a cold start, and the cache makes later starts skip it.
import { build } from "esbuild"
import { chmodSync, readFileSync, writeFileSync } from "node:fs"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))

await build({
  entryPoints: ["src/cli/main.ts"],
  outfile: "dist/cli.mjs",
  bundle: true,
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
  banner: {
    js: "import { createRequire as __mtsCreateRequire } from 'node:module'; const require = __mtsCreateRequire(import.meta.url);"
  },
  logLevel: "warning"
})
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
