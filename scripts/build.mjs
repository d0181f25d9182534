// Bundles the CLI into one file so a call from a shell script starts fast:
// no module resolution across hundreds of files at every start.
import { build } from "esbuild"
import { chmodSync, readFileSync } from "node:fs"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))

await build({
  entryPoints: ["src/cli/main.ts"],
  outfile: "dist/mtsession.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  // The native keyring binding stays a real dependency, loaded lazily only when a keyring is used.
  external: ["@napi-rs/keyring", "@opentelemetry/*", "@effect/opentelemetry", "@effect/opentelemetry/*"],
  define: { __MTSESSION_VERSION__: JSON.stringify(pkg.version) },
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __mtsCreateRequire } from 'node:module'; const require = __mtsCreateRequire(import.meta.url);"
  },
  logLevel: "warning"
})
chmodSync("dist/mtsession.mjs", 0o755)
