/**
 * The services a command needs, built from the global `--config` flag through
 * the compositions in `layers/`. Commands provide these at their edge.
 */
import { Context, Effect, Layer, Option } from "effect"
import { SessionConfig } from "../SessionConfig.js"
import * as Main from "../../layers/Main.js"
import * as Output from "./Output.js"

const configPath = Effect.map(Output.ConfigPath, Option.getOrUndefined)

/** The loaded configuration. */
export const config = Layer.unwrap(Effect.map(configPath, (p) => Main.layerConfig({ configPath: p })))

/**
 * Configuration, user context, the selected backend and its token store.
 * Configuration warnings (plaintext storage, a misspelt variable) are said on
 * stderr before any storage is touched.
 */
export const store = Layer.unwrap(Effect.map(configPath, (p) =>
  Main.layer({ configPath: p }).pipe(
    Layer.tap((services) => Effect.forEach(Context.get(services, SessionConfig).warnings, (w) => Effect.logWarning(w)))
  )))

/** Storage plus the Sessions service (login, tokens, refresh), with the same warnings. */
export const sessions = Layer.unwrap(Effect.map(configPath, (p) =>
  Main.layerSessions({ configPath: p }).pipe(
    Layer.tap((services) => Effect.forEach(Context.get(services, SessionConfig).warnings, (w) => Effect.logWarning(w)))
  )))

/** Sessions plus startup recovery (and the OAuth client it validates with). */
export const recovery = Layer.unwrap(Effect.map(configPath, (p) =>
  Main.layerRecovery({ configPath: p }).pipe(
    Layer.tap((services) => Effect.forEach(Context.get(services, SessionConfig).warnings, (w) => Effect.logWarning(w)))
  )))
