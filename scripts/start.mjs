// `npm start`: runs mtsession on embedded defaults. The repository's own
// magictunnel-config.yaml is a production example, not this machine's
// configuration, so the CLI runs from the home directory, where the normal
// search order applies (MAGICTUNNEL_CONFIG_PATH still wins when set).
import { spawnSync } from "node:child_process"
import { homedir } from "node:os"
import { fileURLToPath } from "node:url"

const cli = fileURLToPath(new URL("../dist/mtsession.cjs", import.meta.url))
for (const args of [["doctor"], ["list"]]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: homedir(), stdio: "inherit" })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
