/**
 * Picks and builds the TokenStore layer the configuration asks for: the
 * selection (explicit or `auto`, remembered) decides, and only the chosen
 * backend is built. The native keyring module is loaded only when a keyring is
 * actually consulted, and the modules of the Redis store (with its lock,
 * claims and fleet sync: `FleetBackends.ts`) only when it is chosen.
 */
import { Effect, FileSystem, Layer, Path } from "effect"
import * as Keyring from "../src/Keyring.js"
import type * as RefreshClaims from "../src/RefreshClaims.js"
import * as RefreshLock from "../src/RefreshLock.js"
import { SessionConfig } from "../src/SessionConfig.js"
import * as StoreSelection from "../src/StoreSelection.js"
import * as TokenStore from "../src/TokenStore.js"
import * as EncryptedFile from "../src/TokenStore/EncryptedFile.js"
import * as KeyringStore from "../src/TokenStore/Keyring.js"
import type * as RedisStore from "../src/TokenStore/Redis.js"
import { UserContext } from "../src/UserContext.js"
import type * as FleetBackends from "./FleetBackends.js"

/** A layer from the fleet modules, imported when the layer is built. */
const fleet = <A, E, R>(pick: (modules: typeof FleetBackends) => Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrap(Effect.map(Effect.promise(() => import("./FleetBackends.js")), pick))

/** The OS keyring, with the configured per-call timeout. */
export const keyring = Layer.unwrap(Effect.map(SessionConfig, (config) =>
  Keyring.layerNative({ timeoutMs: config.settings.tokenStorage.keyringTimeoutSeconds * 1000 })))

/** The backend selection of this process. */
export const selection = Layer.effect(
  StoreSelection.StoreSelection,
  Effect.gen(function*() {
    const config = yield* SessionConfig
    const user = yield* UserContext
    const keyring = yield* Keyring.Keyring
    const storage = config.settings.tokenStorage
    const persistent = config.settings.enabled && storage.enabled
    return yield* StoreSelection.choose({
      configured: persistent ? storage.storageBackend : "memory",
      platform: process.platform,
      sessionDirectory: user.sessionDirectory,
      fileMode: storage.filePermissions,
      probe: Keyring.probeWith(keyring)
    })
  })
)

/**
 * The fleet's Redis connection, built only when the redis backend is chosen;
 * one value, so the store and the lock of a build share one connection.
 */
export const redisConnection: typeof RedisStore.layerConnection = fleet((m) => m.RedisStore.layerConnection)

/** The token store the selection chose. */
export const store = Layer.unwrap(Effect.map(StoreSelection.StoreSelection, (choice) => {
  switch (choice.backend) {
    case "memory":
      return TokenStore.layerMemory
    case "filesystem":
      return EncryptedFile.layerConfig
    case "redis":
      return fleet((m) => m.RedisStore.layerConfig.pipe(Layer.provide(redisConnection)))
    default:
      return KeyringStore.layer
  }
}))

/** Selection and store, with the keyring available to both. */
export const layer = store.pipe(Layer.provideMerge(selection), Layer.provide(keyring))

/** The refresh lock that goes with the chosen store: Redis for the fleet store, else the file lock. */
export const lock: Layer.Layer<
  RefreshLock.RefreshLock,
  TokenStore.TokenStoreError,
  StoreSelection.StoreSelection | SessionConfig | UserContext | FileSystem.FileSystem | Path.Path
> = Layer.unwrap(Effect.map(StoreSelection.StoreSelection, (choice) =>
  choice.backend === "redis"
    ? fleet((m) => m.RedisLock.layer.pipe(Layer.provide(redisConnection))) as Layer.Layer<
      RefreshLock.RefreshLock,
      TokenStore.TokenStoreError,
      SessionConfig | UserContext | FileSystem.FileSystem | Path.Path
    >
    : RefreshLock.layerFile))

/**
 * With the fleet store, follows the other instances' changes: drops what they
 * replaced or removed from the `Sessions` cache and sweeps the supervisor
 * (see `src/FleetSync.ts`); with any other store, nothing. Provide it over
 * `Sessions` (and the `RefreshSupervisor` of a long-running process).
 */
export const fleetSync = Layer.unwrap(Effect.map(StoreSelection.StoreSelection, (choice) =>
  choice.backend === "redis"
    ? fleet((m) => Layer.effectDiscard(m.FleetSync.make).pipe(Layer.provide(redisConnection)))
    : Layer.empty))

/**
 * With the fleet store, the background refresh claims of this instance (see
 * `src/RefreshClaims.ts`): each session is scheduled by one instance; with any
 * other store, nothing (every supervisor schedules every session). Provide it
 * under the `RefreshSupervisor`. Typed as providing nothing because it may:
 * the supervisor looks the service up as optional.
 */
export const claims: Layer.Layer<
  never,
  TokenStore.TokenStoreError,
  StoreSelection.StoreSelection | SessionConfig | UserContext
> = Layer.unwrap(Effect.map(StoreSelection.StoreSelection, (choice) =>
  choice.backend === "redis"
    ? fleet((m) => m.RedisClaims.layer.pipe(Layer.provide(redisConnection))) as Layer.Layer<
      RefreshClaims.RefreshClaims,
      TokenStore.TokenStoreError,
      SessionConfig | UserContext
    > as Layer.Layer<never, TokenStore.TokenStoreError, SessionConfig | UserContext>
    : Layer.empty))
