/**
 * The slice of `oidc-provider` (which ships no types) that the test
 * authorization server uses. Kept minimal on purpose: only what
 * `OidcServer.ts` calls.
 */
declare module "oidc-provider" {
  type Request = import("node:http").IncomingMessage
  type Response = import("node:http").ServerResponse

  export interface InteractionDetails {
    readonly uid: string
    readonly prompt: {
      readonly name: string
      readonly details: {
        readonly missingOIDCScope?: ReadonlyArray<string>
        readonly missingOIDCClaims?: ReadonlyArray<string>
        readonly missingResourceScopes?: Readonly<Record<string, ReadonlyArray<string>>>
      }
    }
    readonly params: Readonly<Record<string, unknown>>
    readonly session?: { readonly accountId: string }
    readonly grantId?: string
  }

  export interface Grant {
    addOIDCScope(scope: string): void
    addOIDCClaims(claims: ReadonlyArray<string>): void
    addResourceScope(resource: string, scope: string): void
    save(): Promise<string>
  }

  export interface ProviderContext {
    readonly oidc: {
      readonly route?: string
      readonly params?: Readonly<Record<string, unknown>>
    }
  }

  export interface ProviderError extends Error {
    readonly error?: string
    readonly error_detail?: string
  }

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>)
    proxy: boolean
    callback(): (req: Request, res: Response) => void
    interactionDetails(req: Request, res: Response): Promise<InteractionDetails>
    interactionFinished(
      req: Request,
      res: Response,
      result: Record<string, unknown>,
      options?: { readonly mergeWithLastSubmission?: boolean }
    ): Promise<void>
    on(event: string, listener: (ctx: ProviderContext, ...args: Array<any>) => void): this
    readonly Grant: {
      new(init: { readonly accountId: string; readonly clientId: string }): Grant
      find(id: string): Promise<Grant | undefined>
    }
  }

  export const errors: {
    readonly InvalidTarget: new(description?: string) => Error
  }

  export default Provider
}
