// Preloaded with --import: reports every module whose URL names OpenTelemetry, on stderr.
import { registerHooks } from "node:module"
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context)
    if (/opentelemetry/.test(result.url)) process.stderr.write(`LOADED ${specifier}\n`)
    return result
  }
})
