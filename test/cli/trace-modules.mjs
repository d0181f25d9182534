// Preloaded with --import: reports every module the process loads (ES imports
// and require calls, Node's built-ins included), one `MODULE <url>` line each on stderr.
import { registerHooks } from "node:module"
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context)
    process.stderr.write(`MODULE ${result.url}\n`)
    return result
  }
})
