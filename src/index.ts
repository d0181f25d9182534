/**
 * magictunnel-session: OAuth 2.1 session persistence on Effect. Each module is
 * one concept, imported as a namespace.
 */
export * as EncryptionKey from "./EncryptionKey.js"
export * as Keyring from "./Keyring.js"
export * as OAuthClient from "./OAuthClient.js"
export * as Recovery from "./Recovery.js"
export * as RefreshLock from "./RefreshLock.js"
export * as RefreshSupervisor from "./RefreshSupervisor.js"
export * as SessionConfig from "./SessionConfig.js"
export * as Sessions from "./Sessions.js"
export * as SessionState from "./SessionState.js"
export * as StoreSelection from "./StoreSelection.js"
export * as TokenCleanup from "./TokenCleanup.js"
export * as TokenResponse from "./TokenResponse.js"
export * as TokenStore from "./TokenStore.js"
export * as UserContext from "./UserContext.js"
