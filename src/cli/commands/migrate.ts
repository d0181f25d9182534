/**
 * `mtsession migrate --to <backend>`: moves every session of this user from
 * the configured store to another one (e.g. the file store to Redis when a
 * gateway becomes a fleet, and back). Each session is written to the target,
 * read back and compared, and only then removed from the source, so no
 * session is ever missing from both. Afterwards, set
 * `token_storage.storage_backend` to the target. See `src/Migration.ts`.
 */
import { Console, Context, Effect, Layer } from "effect"
import { Command, Flag } from "effect/cli"
import * as StoreFromConfig from "../../../layers/StoreFromConfig.js"
import * as Migration from "../../Migration.js"
import { SessionConfig } from "../../SessionConfig.js"
import * as StoreSelection from "../../StoreSelection.js"
import * as TokenStore from "../../TokenStore.js"
import { UsageError } from "../Errors.js"
import * as Output from "../Output.js"
import * as Services from "../Services.js"

const targets = ["redis", "filesystem", "keychain", "credential_manager", "secret_service"] as const

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

export const migrate = Command.make("migrate", {
  to: Flag.Literals("to", targets).pipe(Flag.withDescription("The store to move every session to")),
  keepSource: Flag.Boolean("keep-source").pipe(
    Flag.withDescription("Copy only: leave the sessions in the current store too"),
    Flag.withDefault(false)
  ),
  dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Say what would move; change nothing"), Flag.withDefault(false))
}, ({ dryRun, keepSource, to }) =>
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
  }).pipe(Effect.scoped, Effect.provide(Services.store))).pipe(
    Command.withDescription("Move every session to another store (e.g. --to redis for a fleet), losing none"),
    Command.withExamples([
      { command: "mtsession migrate --to redis", description: "Move the file store's sessions to the fleet's Redis" },
      { command: "mtsession migrate --to filesystem", description: "Move them back" }
    ])
  )
