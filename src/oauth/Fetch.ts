/**
 * The fetch bridge: oauth4webapi builds and validates every protocol message
 * and calls `fetch` for the wire; here that `fetch` is the Effect
 * `HttpClient`, run with the services of the fiber that started the
 * operation, so each call to an authorization server is a traced Effect
 * request (child of the operation's span, tracer, redaction settings and
 * client middleware all inherited).
 *
 * Also the transport policy: `https` everywhere, plain `http` only on
 * loopback (RFC 8252 §8.3 allows loopback for native apps; tests run servers
 * on 127.0.0.1).
 *
 * @see https://www.rfc-editor.org/rfc/rfc8252#section-8.3
 */
import { type Context, type Duration, Effect, Option } from "effect"
import { type HttpClient, type HttpClientError, HttpClientRequest, HttpMethod } from "effect/http"
import * as oauth from "oauth4webapi"
import { classify, OAuthError, type Operation, TransportFailure } from "./OAuthError.js"

/** The largest response body read from an authorization server. */
export const maxResponseBytes = 1024 * 1024

/** True for `localhost`, 127.0.0.0/8 and ::1. */
export const isLoopbackHost = (hostname: string): boolean => {
  const host = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname
  if (host === "localhost" || host === "::1") return true
  const octets = host.split(".")
  return octets.length === 4 && octets[0] === "127" && octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)
}

/**
 * How a URL may be reached: `secure` (https), `loopback` (http on a loopback
 * host, allowed), or `refused` (anything else: plain http elsewhere, other schemes).
 */
export const transportOf = (url: string): "secure" | "loopback" | "refused" => {
  const parsed = URL.parse(url)
  if (parsed === null) return "refused"
  if (parsed.protocol === "https:") return "secure"
  if (parsed.protocol === "http:" && isLoopbackHost(parsed.hostname)) return "loopback"
  return "refused"
}

/** What oauth4webapi hands to a custom fetch. */
type FetchInit = oauth.CustomFetchOptions<string, unknown>

const nullBodyStatus = new Set([101, 204, 205, 304])

const codeOf = (cause: unknown): Option.Option<string> => {
  for (let c = cause, depth = 0; typeof c === "object" && c !== null && depth < 5; depth++) {
    const code = (c as { readonly code?: unknown }).code
    if (typeof code === "string") return Option.some(code)
    c = (c as { readonly cause?: unknown }).cause
  }
  return Option.none()
}

/** A transport failure, described by its error code only (a URL may carry nothing secret, but a cause might). */
const networkFailure = (error: HttpClientError.HttpClientError): TransportFailure =>
  new TransportFailure({
    _tag: "Network",
    detail: error.reason._tag === "TransportError"
      ? Option.getOrElse(codeOf(error.reason.cause), () => "connection failed")
      : error.reason._tag
  })

const toRequest = (url: string, init: FetchInit): Effect.Effect<HttpClientRequest.HttpClientRequest> => {
  const method = init.method.toUpperCase()
  if (!HttpMethod.isHttpMethod(method)) return Effect.die(new Error(`unsupported method ${init.method}`))
  const headers = { ...init.headers }
  const contentType = Object.entries(headers).find(([k]) => k.toLowerCase() === "content-type")
  if (contentType !== undefined) delete headers[contentType[0]]
  const request = HttpClientRequest.make(method)(url, { headers })
  const body = init.body
  if (body === undefined || body === null) return Effect.succeed(request)
  if (body instanceof URLSearchParams || typeof body === "string") {
    return Effect.succeed(HttpClientRequest.bodyText(request, body.toString(), contentType?.[1]))
  }
  if (body instanceof Uint8Array) {
    return Effect.succeed(HttpClientRequest.bodyUint8Array(request, body, contentType?.[1]))
  }
  return Effect.die(new Error("unsupported request body type"))
}

/** Sends one request with the Effect client and rebuilds a WHATWG `Response` for oauth4webapi. */
const send = (client: HttpClient.HttpClient, url: string, init: FetchInit): Effect.Effect<Response, TransportFailure> =>
  Effect.gen(function*() {
    // oauth4webapi checks the scheme too; this also holds when it was told to allow loopback http.
    if (transportOf(url) === "refused") return yield* Effect.fail(new TransportFailure({ _tag: "InsecureIssuer", url }))
    const request = yield* toRequest(url, init)
    const response = yield* client.execute(request).pipe(Effect.mapError(networkFailure))
    if (Number(response.headers["content-length"] ?? 0) > maxResponseBytes) {
      return yield* Effect.fail(
        new TransportFailure({ _tag: "MalformedResponse", detail: `response larger than ${maxResponseBytes} bytes` })
      )
    }
    const body = yield* response.arrayBuffer.pipe(Effect.mapError(networkFailure))
    if (body.byteLength > maxResponseBytes) {
      return yield* Effect.fail(
        new TransportFailure({ _tag: "MalformedResponse", detail: `response larger than ${maxResponseBytes} bytes` })
      )
    }
    const headers = new Headers()
    for (const [name, value] of Object.entries(response.headers)) headers.append(name, value)
    return new Response(nullBodyStatus.has(response.status) ? null : body, { status: response.status, headers })
  })

/**
 * A `fetch` for oauth4webapi's `customFetch` option that runs the request on
 * `client` with `services` (captured from the calling fiber with
 * `Effect.context()`). Rejects only with {@link TransportFailure}.
 */
export const makeFetch = (client: HttpClient.HttpClient, services: Context.Context<never>) =>
(url: string, init: FetchInit): Promise<Response> =>
  // The one justified `run*` in src/: oauth4webapi calls fetch as a promise
  // from inside its own async code, so the Effect request must be started from
  // that callback. It runs with the caller's services (span, tracer, client
  // settings), and oauth4webapi's AbortSignal (set by the calling
  // `Effect.tryPromise` on interruption or timeout) interrupts it.
  Effect.runPromiseWith(services)(send(client, url, init), { signal: init.signal }).catch((error: unknown) => {
    throw error instanceof TransportFailure ? error : new TransportFailure({ _tag: "Network", detail: "request failed" })
  })

/** The options every oauth4webapi request of one operation takes. */
export interface RequestOptions {
  readonly [oauth.customFetch]: ReturnType<typeof makeFetch>
  readonly [oauth.allowInsecureRequests]?: boolean
  readonly signal: AbortSignal
}

/**
 * Request options for one oauth4webapi call: the bridge bound to the current
 * fiber's services, `signal` from the surrounding `Effect.tryPromise`, and
 * `allowInsecureRequests` only when `insecureLoopback` (every URL already
 * checked to be https or loopback http).
 */
export const requestOptions = (
  client: HttpClient.HttpClient,
  insecureLoopback: boolean
): Effect.Effect<(signal: AbortSignal) => RequestOptions> =>
  Effect.map(Effect.context<never>(), (services) => {
    const customFetch = makeFetch(client, services)
    return (signal) =>
      insecureLoopback
        ? { [oauth.customFetch]: customFetch, [oauth.allowInsecureRequests]: true, signal }
        : { [oauth.customFetch]: customFetch, signal }
  })

/** One oauth4webapi call as an Effect: its failures classified, the attempt bounded by `timeout`. */
export const call = <A>(
  options: {
    readonly client: HttpClient.HttpClient
    readonly provider: string
    readonly operation: Operation
    readonly insecureLoopback: boolean
    /** Values this call sends that must never appear in an error (tokens, code, verifier, secret). */
    readonly secrets: ReadonlyArray<string>
    readonly timeout: Duration.Duration
  },
  f: (request: RequestOptions) => Promise<A>
): Effect.Effect<A, OAuthError> =>
  Effect.gen(function*() {
    const request = yield* requestOptions(options.client, options.insecureLoopback)
    return yield* Effect.tryPromise({ try: (signal) => f(request(signal)), catch: (cause) => cause })
  }).pipe(
    Effect.catch((cause) =>
      Effect.flatMap(
        classify(cause, options.secrets),
        (reason) => Effect.fail(new OAuthError({ provider: options.provider, operation: options.operation, reason }))
      )
    ),
    Effect.timeoutOrElse({
      duration: options.timeout,
      orElse: () =>
        Effect.fail(
          new OAuthError({
            provider: options.provider,
            operation: options.operation,
            reason: { _tag: "Timeout", after: options.timeout, detail: "no response from the authorization server" }
          })
        )
    })
  )
