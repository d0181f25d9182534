/**
 * The loopback redirect listener of a native app's authorization code flow:
 * an HTTP server on 127.0.0.1 (the configured `redirect_port`, or any free
 * port when 0) that takes the one browser redirect carrying the
 * authorization response, keeps the browser waiting while the code is
 * exchanged, then answers with a small page saying how it went.
 *
 * Bound to 127.0.0.1 literally, not `localhost`, so no other interface
 * sees it and name resolution cannot redirect it (RFC 8252 §8.3). Scoped:
 * closing the scope closes the server and any pending browser connection.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8252#section-7.3
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Deferred, Effect, type Scope } from "effect"
import type { Reason } from "./OAuthError.js"

/** The path of the redirect URI. */
export const callbackPath = "/callback"

/** How long closing waits for a page to reach the browser before dropping its connection. */
const closeGraceMillis = 2000

/** How the login ended, as told to the browser. */
export type Outcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly message: string }

/** The authorization response as received; `url` carries the code and state: never log it. */
export interface Callback {
  readonly url: URL
  /** Answers the waiting browser (once; later calls do nothing). */
  readonly respond: (outcome: Outcome) => Effect.Effect<void>
}

/** A listening redirect endpoint. */
export interface Listener {
  /** `http://127.0.0.1:<port>/callback`. */
  readonly redirectUri: string
  /** Waits for the first request to the callback path. */
  readonly callback: Effect.Effect<Callback>
}

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** The page shown in the browser after the redirect. */
export const page = (outcome: Outcome): string => {
  const [title, body] = outcome.ok
    ? ["Signed in", "You are signed in. You can close this tab and return to the terminal."]
    : ["Sign-in failed", `${escapeHtml(outcome.message)} You can close this tab and return to the terminal.`]
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
    `<body style="font-family:sans-serif;margin:3em"><h1>${title}</h1><p>${body}</p></body></html>`
}

const answer = (res: Http.ServerResponse, status: number, html: string): void => {
  if (res.writableEnded) return
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    connection: "close"
  })
  res.end(html)
}

/** Starts the listener in the current scope. Fails with a `Network` reason when the port cannot be bound. */
export const listen = (port: number): Effect.Effect<Listener, Reason, Scope.Scope> =>
  Effect.gen(function*() {
    const received = Deferred.makeUnsafe<Callback>()
    const pending: Array<Http.ServerResponse> = []

    const server = yield* Effect.acquireRelease(
      Effect.callback<Http.Server, Reason>((resume) => {
        const server = Http.createServer((req, res) => {
          const url = new URL(req.url ?? "/", "http://127.0.0.1")
          if (req.method !== "GET" || url.pathname !== callbackPath) {
            answer(res, 404, page({ ok: false, message: "Not found." }))
            return
          }
          if (Deferred.isDoneUnsafe(received)) {
            answer(res, 409, page({ ok: false, message: "This sign-in was already handled." }))
            return
          }
          pending.push(res)
          Deferred.doneUnsafe(
            received,
            Effect.succeed({
              url,
              respond: (outcome: Outcome) =>
                Effect.sync(() => answer(res, outcome.ok ? 200 : 400, page(outcome)))
            })
          )
        })
        server.once("error", (error: NodeJS.ErrnoException) =>
          resume(Effect.fail({
            _tag: "Network",
            detail: `cannot listen on 127.0.0.1:${port} for the redirect (${error.code ?? "error"})`
          }))
        )
        server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          for (const res of pending) answer(res, 400, page({ ok: false, message: "The sign-in was cancelled." }))
          // Let the answered pages flush (they close their connections), drop idle
          // preconnections now, and anything still open after a grace period.
          const force = setTimeout(() => server.closeAllConnections(), closeGraceMillis)
          force.unref()
          server.close(() => {
            clearTimeout(force)
            resume(Effect.void)
          })
          server.closeIdleConnections()
        })
    )

    const bound = (server.address() as AddressInfo).port
    return {
      redirectUri: `http://127.0.0.1:${bound}${callbackPath}`,
      callback: Deferred.await(received)
    }
  })
