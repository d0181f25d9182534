/**
 * A tiny HTTP proxy on 127.0.0.1 in front of a real server, whose behaviour
 * a test sets for the next N requests (or as the default): pass through,
 * answer with a status (500, 503 or 429 with `Retry-After`), hang, reset the
 * connection, send a malformed JSON body, or go down entirely (nothing
 * listening: connection refused). Counts what it received and what reached
 * the upstream.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import type * as Net from "node:net"
import { Effect } from "effect"

/** What the proxy does with one request. */
export type Fault =
  | { readonly _tag: "Pass" }
  | {
    readonly _tag: "Status"
    readonly status: number
    readonly headers?: Readonly<Record<string, string>>
    readonly body?: string
  }
  | { readonly _tag: "Hang" }
  | { readonly _tag: "Reset" }
  | { readonly _tag: "Malformed" }

/** Ready-made faults. */
export const Faults = {
  pass: { _tag: "Pass" } as Fault,
  hang: { _tag: "Hang" } as Fault,
  reset: { _tag: "Reset" } as Fault,
  /** 200, `application/json`, a body that is not JSON. */
  malformed: { _tag: "Malformed" } as Fault,
  /** A status with an HTML body (no OAuth error member). */
  status: (status: number, headers: Readonly<Record<string, string>> = {}): Fault => ({
    _tag: "Status",
    status,
    headers: { "content-type": "text/html", ...headers },
    body: `<html><body>${status}</body></html>`
  }),
  /** A status with an OAuth JSON error body. */
  oauthError: (status: number, error: string, headers: Readonly<Record<string, string>> = {}): Fault => ({
    _tag: "Status",
    status,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ error })
  })
} as const

export interface Counts {
  readonly received: number
  readonly forwarded: number
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  readonly port: number
  /** Applies `fault` to the next `times` requests (queued after earlier ones). */
  readonly next: (fault: Fault, times?: number) => void
  /** What requests get when no queued fault applies (initially {@link Faults.pass}). */
  readonly setDefault: (fault: Fault) => void
  /** Stops listening: connections are refused until {@link FaultProxy.up}. */
  readonly down: () => Promise<void>
  readonly up: () => Promise<void>
  readonly counts: () => Counts
  readonly close: () => Promise<void>
}

/** Starts a proxy to `upstream` (an `http://127.0.0.1:<port>` origin). */
export const start = async (upstream: string): Promise<FaultProxy> => {
  const target = new URL(upstream)
  const queue: Array<Fault> = []
  let fallback: Fault = Faults.pass
  let received = 0
  let forwarded = 0
  const sockets = new Set<Net.Socket>()

  const forward = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
    forwarded++
    const outgoing = Http.request({
      hostname: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: target.host }
    }, (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers)
      upstreamRes.pipe(res)
    })
    outgoing.on("error", () => res.destroy())
    req.pipe(outgoing)
  }

  const server = Http.createServer((req, res) => {
    received++
    const fault = queue.shift() ?? fallback
    switch (fault._tag) {
      case "Pass":
        return forward(req, res)
      case "Hang":
        // Read the body and never answer; the socket is destroyed on close().
        req.resume()
        return
      case "Reset":
        req.socket.destroy()
        return
      case "Malformed":
        req.resume()
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{\"access_token\": \"tr")
        return
      case "Status":
        req.resume()
        res.writeHead(fault.status, { ...fault.headers })
        res.end(fault.body ?? "")
        return
    }
  })
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject)
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    })

  await listen(0)
  const port = (server.address() as AddressInfo).port

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    next: (fault, times = 1) => {
      for (let i = 0; i < times; i++) queue.push(fault)
    },
    setDefault: (fault) => {
      fallback = fault
    },
    down: stop,
    up: () => listen(port),
    counts: () => ({ received, forwarded }),
    close: () => (server.listening ? stop() : Promise.resolve())
  }
}

/** The proxy as a scoped resource. */
export const acquire = (upstream: string) =>
  Effect.acquireRelease(
    Effect.promise(() => start(upstream)),
    (proxy) => Effect.promise(() => proxy.close())
  )
