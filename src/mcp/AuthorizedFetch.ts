/**
 * A WHATWG `fetch` that authenticates to one MCP server: it adds the
 * bearer token (RFC 6750 §2.1) of the server's session to every request;
 * on a 401 it refreshes the session once (forced: the server has refused
 * the token, whatever its expiry says) and sends the request once more; on
 * a 403 `insufficient_scope` it asks for a step-up (when the caller allows
 * one) and sends the request once more with the wider token. Anything else
 * is returned as the server sent it, so the MCP SDK sees the same answers
 * it would without the wrapper, minus the ones the session could fix.
 *
 * Promise-based (it is handed to the MCP SDK's transports); the Effect work
 * behind it is in `Client.ts`. Bodies that can be sent twice (strings,
 * bytes, form data, absent) are retried; a stream body is sent once.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
import { Option } from "effect"
import * as WwwAuthenticate from "./WwwAuthenticate.js"

/** What the wrapper needs from the session side. */
export interface Session {
  /** A valid token for requests needing `scopes` (undefined: whatever the session has). */
  readonly token: (scopes: ReadonlyArray<string> | undefined) => Promise<string>
  /** Refreshes the session serving `scopes` now; rejects when it cannot (the 401 is then returned). */
  readonly refresh: (scopes: ReadonlyArray<string> | undefined) => Promise<void>
  /**
   * Obtains a session for `required` on top of `current` and resolves with the
   * scopes to ask for from now on; absent: step-up is not allowed (the 403 is returned).
   */
  readonly stepUp?: ((required: ReadonlyArray<string>, current: ReadonlyArray<string> | undefined) => Promise<ReadonlyArray<string>>) | undefined
}

/** The wrapper and the scopes it currently asks tokens for. */
export interface AuthorizedFetch {
  readonly fetch: typeof globalThis.fetch
  readonly scopes: () => ReadonlyArray<string> | undefined
}

const replayable = (body: RequestInit["body"]): boolean =>
  body === undefined || body === null || typeof body === "string" || body instanceof URLSearchParams ||
  body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof Blob || body instanceof FormData

/** Wraps `base` (default: the global `fetch`) for one server's session. */
export const make = (session: Session, base: typeof globalThis.fetch = globalThis.fetch): AuthorizedFetch => {
  // Per-wrapper state: after a step-up, later requests ask for the wider token.
  let scopes: ReadonlyArray<string> | undefined = undefined

  const authorizedFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : undefined
    const canRetry = request === undefined ? replayable(init?.body) : request.body === null
    const send = async (token: string) => {
      const headers = new Headers(request?.headers)
      new Headers(init?.headers).forEach((value, name) => headers.set(name, value))
      headers.set("authorization", `Bearer ${token}`)
      return request === undefined
        ? base(input, { ...init, headers })
        : base(new Request(request, { ...init, headers }))
    }
    const first = await send(await session.token(scopes))
    if (!canRetry) return first
    if (first.status === 401) {
      const refreshed = await session.refresh(scopes).then(() => true, () => false)
      if (!refreshed) return first
      await first.body?.cancel()
      return send(await session.token(scopes))
    }
    const challenge = WwwAuthenticate.parseBearer(first.headers.get("www-authenticate"))
    if (session.stepUp !== undefined && WwwAuthenticate.isInsufficientScope(first.status, challenge)) {
      const required = Option.getOrElse(Option.flatMap(challenge, (c) => c.scopes), (): ReadonlyArray<string> => [])
      if (required.length === 0) return first
      await first.body?.cancel()
      scopes = await session.stepUp(required, scopes)
      return send(await session.token(scopes))
    }
    return first
  }

  return { fetch: authorizedFetch as typeof globalThis.fetch, scopes: () => scopes }
}
