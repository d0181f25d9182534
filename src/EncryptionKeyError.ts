/**
 * EncryptionKeyError: why the data key of the encrypted file token store
 * cannot be used, and the sources a key comes from.
 *
 * Apart from `EncryptionKey` so that the key sources (`internal/KeySource`)
 * and the key service can both raise it without importing each other.
 * Messages name the fix and never the key.
 */
import { Data } from "effect"

/** The concrete sources of a key; `auto` resolves to one of them. */
export type Source = "env" | "keyring" | "file"

/** Why the data key cannot be used. Messages name the fix and never the key. */
export type Reason =
  | { readonly _tag: "Missing"; readonly detail: string; readonly fix: string }
  | { readonly _tag: "Unavailable"; readonly detail: string; readonly fix: string }
  | {
    readonly _tag: "InsecureKeyFile"
    readonly path: string
    readonly problem: "InsideSessionDirectory" | "Permissions" | "ForeignOwner" | "NotAFile"
    readonly mode?: number | undefined
    readonly owner?: number | undefined
  }
  | { readonly _tag: "Corrupted"; readonly where: string; readonly detail: string; readonly fix: string }
  | { readonly _tag: "RotationUnsupported" }
  | { readonly _tag: "SourceChanged"; readonly remembered: Source; readonly rememberedIn: string }
  | { readonly _tag: "Io"; readonly path: string; readonly detail: string }

const insecureKeyFileMessage = (r: Extract<Reason, { readonly _tag: "InsecureKeyFile" }>): string => {
  switch (r.problem) {
    case "InsideSessionDirectory":
      return `key file ${r.path} lies inside the session directory, so copying that directory copies the key; fix: set token_storage.encryption_key_file to a path outside it`
    case "Permissions":
      return `key file ${r.path} is accessible by group or others (mode ${
        ((r.mode ?? 0) & 0o777).toString(8).padStart(4, "0")
      }); fix: chmod 600 ${r.path}`
    case "ForeignOwner":
      return `key file ${r.path} is owned by uid ${r.owner}, not by this user; fix: use a key file of your own (token_storage.encryption_key_file)`
    case "NotAFile":
      return `key file ${r.path} is not a regular file; fix: move it away or set token_storage.encryption_key_file`
  }
}

/** The data key could not be loaded, created, rotated or retired. */
export class EncryptionKeyError extends Data.TaggedError("EncryptionKeyError")<{
  readonly source: Source | "auto"
  readonly reason: Reason
}> {
  override get message(): string {
    const r = this.reason
    const what = `encryption key (${this.source})`
    switch (r._tag) {
      case "Missing":
      case "Unavailable":
        return `${what}: ${r.detail}; fix: ${r.fix}`
      case "InsecureKeyFile":
        return `${what}: ${insecureKeyFileMessage(r)}`
      case "Corrupted":
        return `${what}: ${r.where} is damaged (${r.detail}); fix: ${r.fix}`
      case "RotationUnsupported":
        return `${what}: a key from MAGICTUNNEL_TOKEN_ENCRYPTION_KEY cannot be rotated; fix: rotation needs the keyring or file source (token_storage.encryption_key_source)`
      case "SourceChanged":
        return `${what}: sessions here were sealed with a key from the ${r.remembered} source (remembered in ${r.rememberedIn}), which is not the one this run would use; fix: make the ${r.remembered} source available again, or set token_storage.encryption_key_source explicitly (sessions sealed with the old key will not open)`
      case "Io":
        return `${what}: ${r.path}: ${r.detail}`
    }
  }
}
