/**
 * Picks and builds the TokenStore layer the configuration asks for: the
 * selection (explicit or `auto`, remembered) decides, and only the chosen
 * backend is built. The native keyring module is loaded only when a keyring is
 * actually consulted.
 */
import { Effect, Layer } from "effect"
import * as Keyring from "../src/Keyring.js"
import { SessionConfig } from "../src/SessionConfig.js"
import * as StoreSelection from "../src/StoreSelection.js"
import * as TokenStore from "../src/TokenStore.js"
import * as EncryptedFile from "../src/TokenStore/EncryptedFile.js"
import * as KeyringStore from "../src/TokenStore/Keyring.js"
import { UserContext } from "../src/UserContext.js"

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

/** The token store the selection chose. */
export const store = Layer.unwrap(Effect.map(StoreSelection.StoreSelection, (choice) => {
  switch (choice.backend) {
    case "memory":
      return TokenStore.layerMemory
    case "filesystem":
      return EncryptedFile.layerConfig
    default:
      return KeyringStore.layer
  }
}))

/** Selection and store, with the keyring available to both. */
export const layer = store.pipe(Layer.provideMerge(selection), Layer.provide(keyring))
