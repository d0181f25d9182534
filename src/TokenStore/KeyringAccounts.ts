/**
 * Where a session lives in the OS keyring.
 *
 * Service `magictunnel`, account `<namespace>/<sessionId>`: readable
 * in Keychain Access, seahorse or `secret-tool search service magictunnel`.
 * Windows caps a credential's user name at 513 characters, and a namespace with
 * a long principal can exceed that, so an account longer than
 * {@link maxReadableAccountBytes} is replaced by `sha256:<hex of it>`; the index
 * keeps the session id, so nothing needs the account to be reversible.
 */
import * as Crypto from "node:crypto"

/** Accounts up to this many UTF-8 bytes are used as they are; longer ones are hashed. */
export const maxReadableAccountBytes = 255

const utf8 = new TextEncoder()

/** The keyring account of a name: itself when short enough, else a hash of it. */
export const accountOf = (name: string): string =>
  utf8.encode(name).length <= maxReadableAccountBytes
    ? name
    : `sha256:${Crypto.createHash("sha256").update(name).digest("hex")}`

/** The account of one session of one namespace. */
export const sessionAccountOf = (namespace: string, id: string): string => accountOf(`${namespace}/${id}`)

/** The account of a namespace's overflow data key. */
export const overflowKeyAccountOf = (namespace: string): string => accountOf(`overflow-key:${namespace}`)
