/**
 * The edge: composes the services of a process from the configuration. The
 * CLI uses these; an embedding application can use them as they are or build
 * its own composition from the leaf layers in `src/`.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Layer } from "effect"
import * as SessionConfig from "../src/SessionConfig.js"
import * as UserContext from "../src/UserContext.js"
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
  return StoreFromConfig.layer.pipe(
    Layer.provideMerge(user),
    Layer.provideMerge(layerConfig(options))
  )
}
