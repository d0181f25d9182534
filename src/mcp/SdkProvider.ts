/**
 * A drop-in `OAuthClientProvider` for `@modelcontextprotocol/sdk`, backed
 * by the Sessions service: the SDK client gets persisted, recovered,
 * rotation-safe sessions instead of the tokens it would otherwise keep
 * itself.
 *
 * The provider hands the SDK an access token only (never the refresh
 * token): refreshing stays in `Sessions`, one refresh per grant across
 * processes, so the SDK can never spend a rotated refresh token twice.
 * Signing in is this package's login (discovery, dynamic registration,
 * PKCE, resource indicator); when the SDK asks to redirect the user, the
 * provider runs that login if the caller allowed interaction, and
 * otherwise fails with the command that fixes it. Client registrations the
 * SDK makes itself are stored as this package's registration records.
 *
 * Only the SDK's types are imported: this module loads without the SDK,
 * which is an optional peer dependency.
 *
 * @see https://github.com/modelcontextprotocol/typescript-sdk (client/auth.ts)
 */
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js"
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens
} from "@modelcontextprotocol/sdk/shared/auth.js"
import * as Registration from "./Registration.js"

/** What the provider needs from the session side (see `Client.ts`). */
export interface Handle {
  readonly serverUrl: string
  readonly clientName: string
  /** The current access token, or undefined when there is no usable session and no interactive login. */
  readonly token: () => Promise<string | undefined>
  /** Signs in for `scopes` (undefined: the server's default); absent when interaction is not allowed. */
  readonly login?: ((scopes: ReadonlyArray<string> | undefined) => Promise<void>) | undefined
  readonly clientInformation: () => Promise<OAuthClientInformationMixed | undefined>
  readonly saveClientInformation: (information: OAuthClientInformationMixed) => Promise<void>
  readonly forgetClient: () => Promise<void>
}

/** Thrown to the SDK when the user must sign in and this process may not ask them. */
export class LoginRequiredError extends Error {
  constructor(readonly serverUrl: string) {
    super(`${serverUrl}: no usable session; run \`mtsession login --mcp ${serverUrl}\``)
    this.name = "LoginRequiredError"
  }
}

/** The provider for one MCP server. */
export class SessionsOAuthProvider implements OAuthClientProvider {
  #verifier: string | undefined

  constructor(readonly handle: Handle) {}

  get redirectUrl(): string {
    return Registration.redirectUri
  }

  get clientMetadata(): OAuthClientMetadata {
    return Registration.clientMetadata({ clientName: this.handle.clientName, scopes: [] })
  }

  clientInformation(): Promise<OAuthClientInformationMixed | undefined> {
    return this.handle.clientInformation()
  }

  saveClientInformation(information: OAuthClientInformationMixed): Promise<void> {
    return this.handle.saveClientInformation(information)
  }

  async tokens(): Promise<OAuthTokens | undefined> {
    const token = await this.handle.token()
    return token === undefined ? undefined : { access_token: token, token_type: "Bearer" }
  }

  saveTokens(_tokens: OAuthTokens): Promise<void> {
    // Reached only if the SDK exchanged a code itself (`finishAuth`), which this provider never asks for.
    return Promise.reject(
      new Error("sessions are obtained by this package's login; call login() instead of transport.finishAuth()")
    )
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    if (this.handle.login === undefined) throw new LoginRequiredError(this.handle.serverUrl)
    // The SDK's URL carries its own PKCE verifier and redirect; only the scopes it chose are kept.
    const scope = authorizationUrl.searchParams.get("scope")
    await this.handle.login(scope === null ? undefined : scope.split(" ").filter((s) => s.length > 0))
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.#verifier = codeVerifier
  }

  codeVerifier(): string {
    if (this.#verifier === undefined) throw new Error("no code verifier saved")
    return this.#verifier
  }

  async invalidateCredentials(scope: "all" | "client" | "tokens" | "verifier" | "discovery"): Promise<void> {
    // Sessions are never dropped on the SDK's word: `Sessions` classifies refresh failures itself.
    if (scope === "all" || scope === "client") await this.handle.forgetClient()
    if (scope === "all" || scope === "verifier") this.#verifier = undefined
  }
}
