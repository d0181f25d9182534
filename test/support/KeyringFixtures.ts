/**
 * Fixtures shared by the keyring store tests: a private storage directory and
 * user context per test, and an opener that builds a store instance on a given
 * keyring layer the way a new process would.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import type * as Keyring from "../../src/Keyring.js"
import * as SessionConfig from "../../src/SessionConfig.js"
import * as KeyringStore from "../../src/TokenStore/Keyring.js"
import type * as TokenStore from "../../src/TokenStore.js"
import { UserContext } from "../../src/UserContext.js"

/** A temporary directory removed when the scope closes. */
export const tempDirectory: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "mts-keyring-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A namespace no other test uses (the real keyring is shared by the whole file). */
export const uniqueNamespace = (): string => `test-${Crypto.randomBytes(6).toString("hex")}@host:1000`

/** The user context of `namespace`, storing under `directory`. */
export const userContextLayer = (directory: string, namespace: string) => {
  const storageDirectory = Path.join(directory, "ns")
  Fs.mkdirSync(storageDirectory, { recursive: true, mode: 0o700 })
  return Layer.succeed(
    UserContext,
    UserContext.of({
      username: "test",
      uid: typeof process.getuid === "function" ? process.getuid() : -1,
      home: directory,
      hostname: "host",
      principal: Option.none(),
      namespace,
      sessionDirectory: directory,
      storageDirectory
    })
  )
}

/** Builds a keyring store on `keyring` for `namespace` in `directory`. */
export const openStore = (
  keyring: Layer.Layer<Keyring.Keyring>,
  directory: string,
  namespace: string
): Effect.Effect<TokenStore.Shape, TokenStore.TokenStoreError> =>
  KeyringStore.make.pipe(
    Effect.provide(Layer.mergeAll(
      keyring,
      userContextLayer(directory, namespace),
      SessionConfig.layerDefaults,
      NodeServices.layer
    ))
  )
