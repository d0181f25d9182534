/**
 * The body of `mtsession migrate --to <backend>` (`commands/migrate.ts`):
 * builds the target store as a process configured for it would, and moves
 * the sessions with `Migration.migrate`.
 */
import { Console, Context, Effect, Layer } from "effect"
import * as StoreFromConfig from "../../../layers/StoreFromConfig.js"
import * as Migration from "../../Migration.js"
import { SessionConfig } from "../../SessionConfig.js"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import type { Args } from "../commands/migrate.js"
import { UsageError } from "../Errors.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

/** The target store: the configuration with `storage_backend` set to `to`, built as a process would build it. */
const targetStore = (to: TokenStore.Backend) =>
  Effect.gen(function*() {
    const config = yield* SessionConfig
    const overridden = Layer.succeed(SessionConfig, {
      ...config,
      settings: { ...config.settings, tokenStorage: { ...config.settings.tokenStorage, storageBackend: to } }
    })
    const selection = Layer.succeed(StoreSelection.StoreSelection, {
      backend: to,
      configured: to,
      reason: "migrate --to",
      remembered: false
    })
    // Fresh: the command's own store was built from the same layer values, and must not be reused as the target.
    const layer = Layer.fresh(StoreFromConfig.store).pipe(
      Layer.provide(Layer.mergeAll(selection, Layer.fresh(StoreFromConfig.keyring))),
      Layer.provide(overridden)
    )
    const services = yield* Layer.build(layer)
    const store = Context.get(services, TokenStore.TokenStore)
    if (store.backend !== to) {
      return yield* new UsageError({ detail: `could not open the ${to} store (got ${store.backend}); nothing was moved` })
    }
    return store
  })

export const migrate = ({ dryRun, keepSource, to }: Args) =>
  Effect.gen(function*() {
    const json = yield* Output.Json
    const from = yield* TokenStore.TokenStore
    if (from.backend === to) {
      return yield* new UsageError({ detail: `the sessions are already in ${to} (token_storage.storage_backend)` })
    }
    const target = yield* targetStore(to)
    const report = yield* Migration.migrate(from, target, { keepSource, dryRun })
    if (json) return yield* Output.printJson(report)
    for (const o of report.outcomes) {
      yield* Console.log(
        o._tag === "Skipped"
          ? `skipped ${o.id}: ${o.detail}`
          : o._tag === "Moved"
          ? `${dryRun ? "would move" : keepSource ? "copied" : "moved"} ${o.id} (generation ${o.generation})`
          : `${o.id}: the target already has generation ${o.generation}; kept`
      )
    }
    const skipped = report.outcomes.filter((o) => o._tag === "Skipped").length
    yield* Console.log(
      `${report.outcomes.length - skipped} session(s) ${dryRun ? "would move" : "now"} in ${to}${
        skipped > 0 ? `, ${skipped} skipped (still in ${from.backend})` : ""
      }.${dryRun ? "" : ` Set token_storage.storage_backend: ${to} to use them.`}`
    )
  }).pipe(Effect.scoped, Effect.provide(Services.store))
