/**
 * The edge: composes the services of a process from the configuration. The
 * CLI uses these; an embedding application can use them as they are or build
 * its own composition from the leaf layers in `src/`.
 *
 * The OAuth client, `Sessions` and `Recovery` are imported when their layer is
 * built, so a command that only reads the store (`mtsession status`, `list`)
 * does not load the OAuth protocol code.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Layer } from "effect"
import type * as OAuthClient from "../src/OAuthClient.js"
import type * as Recovery from "../src/Recovery.js"
import * as SessionConfig from "../src/SessionConfig.js"
import type * as Sessions from "../src/Sessions.js"
import * as UserContext from "../src/UserContext.js"
import * as Observability from "./Observability.js"
import * as StoreFromConfig from "./StoreFromConfig.js"

/** Node's file system and path services. */
export const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)

/** The configuration from `--config` / `MAGICTUNNEL_CONFIG_PATH` / the search order, and the environment. */
export const layerConfig = (options: { readonly configPath?: string | undefined }) =>
  SessionConfig.layer(options).pipe(Layer.provideMerge(platform))

/**
 * Everything session storage needs: configuration, the user context (or one
 * principal's, for multi-tenant embedders), the backend selection and the store.
 */
export const layer = (options: { readonly configPath?: string | undefined; readonly principal?: string | undefined }) => {
  const user = options.principal === undefined ? UserContext.layer : UserContext.layerPrincipal(options.principal)
  // Telemetry and the audit log sit under the store, so its selection and operations are traced and audited.
  return StoreFromConfig.layer.pipe(
    Layer.provideMerge(Observability.auditLog),
    Layer.provideMerge(user),
    Layer.provideMerge(Observability.telemetry),
    Layer.provideMerge(layerConfig(options))
  )
}

/**
 * The OAuth protocol client over Node's built-in fetch. (The `undici` package
 * behind `NodeHttpClient` would add 700 KB to the CLI bundle and to every cold
 * start; Node's own fetch is undici already.)
 */
export const oauth: Layer.Layer<OAuthClient.OAuthClient> = Layer.unwrap(Effect.map(
  Effect.promise(() => Promise.all([import("../src/OAuthClient.js"), import("effect/http/FetchHttpClient")])),
  ([OAuthClient, FetchHttpClient]) => OAuthClient.layer.pipe(Layer.provide(FetchHttpClient.layer))
))

/** The `Sessions` service over its dependencies. */
const sessions: typeof Sessions.layer = Layer.unwrap(
  Effect.map(Effect.promise(() => import("../src/Sessions.js")), (m) => m.layer)
)

/**
 * Storage plus sessions: the refresh lock (in the session directory, or in
 * Redis with the fleet store), the OAuth
 * client, and the `Sessions` service embedders call. A long-running process
 * on the fleet store adds `StoreFromConfig.fleetSync` over it, so that its
 * token cache follows the other instances (not here: a one-shot command
 * should not open a subscription).
 */
export const layerSessions = (options: { readonly configPath?: string | undefined; readonly principal?: string | undefined }) => {
  const storage = layer(options)
  return sessions.pipe(
    Layer.provideMerge(StoreFromConfig.lock),
    Layer.provideMerge(oauth),
    Layer.provideMerge(storage)
  )
}

/** The startup recovery service. */
const recovery: typeof Recovery.layer = Layer.unwrap(
  Effect.map(Effect.promise(() => import("../src/Recovery.js")), (m) => m.layer)
)

/** Sessions plus the startup recovery service. */
export const layerRecovery = (options: { readonly configPath?: string | undefined; readonly principal?: string | undefined }) =>
  recovery.pipe(Layer.provideMerge(layerSessions(options)))
