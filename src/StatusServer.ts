/**
 * StatusServer: the health and status endpoints of `mtsession run
 * --status-port N`.
 *
 * - `GET /health/auth`: 200 when the storage backend answers its probe and the
 *   refresh supervisor is alive (or background refresh is off), else 503; with
 *   the backend's health, the supervisor's state and the sessions by state.
 * - `GET /status`: the `mtsession status --json` document.
 * - `GET /metrics`: Prometheus text, only when Prometheus export is configured.
 * - `GET /`: a small HTML page that reloads itself (see `internal/StatusPage.ts`).
 *
 * It listens on 127.0.0.1 unless told otherwise; any other address requires a
 * bearer token (from an environment variable, compared in constant time) on
 * every request. Nothing it serves holds a secret: it is built from metadata,
 * the supervisor's status and the audit log's recent events.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import { Data, DateTime, Effect, Option, Redacted } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import * as AuditLog from "./AuditLog.js"
import * as StatusPage from "./internal/StatusPage.js"
import * as Metrics from "./Metrics.js"
import * as RefreshSupervisor from "./RefreshSupervisor.js"
import * as SessionState from "./SessionState.js"
import * as Telemetry from "./Telemetry.js"
import * as TokenStore from "./TokenStore.js"

/** The environment variable holding the bearer token a non-loopback address requires. */
export const tokenEnv = "MAGICTUNNEL_STATUS_TOKEN"

/** One session of the `status --json` document (the fields the page reads). */
export interface StatusSession {
  readonly id: string
  readonly provider: string
  readonly state: SessionState.State
  readonly expires_at: string | null
  readonly last_refresh_at: string | null
  readonly last_error: string | null
}

/** The `status --json` document. */
export interface StatusDocument {
  readonly backend: string
  readonly sessions: ReadonlyArray<StatusSession>
}

/** Options of the server. */
export interface Options {
  readonly port: number
  /** Default 127.0.0.1. */
  readonly host?: string | undefined
  /** Required (and checked on every request) when `host` is not a loopback address. */
  readonly token?: Option.Option<Redacted.Redacted<string>> | undefined
  /** The `status --json` document, built by the caller from the store. */
  readonly document: Effect.Effect<StatusDocument, TokenStore.TokenStoreError>
}

/** The server could not start. */
export class StatusServerError extends Data.TaggedError("StatusServerError")<{ readonly detail: string }> {
  override get message(): string {
    return `status server: ${this.detail}`
  }
}

/** Whether `host` only accepts connections from this machine. */
export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)

/** Constant-time comparison of the presented bearer token with the expected one. */
export const tokenMatches = (header: string | undefined, expected: Redacted.Redacted<string>): boolean => {
  const presented = /^Bearer\s+(\S+)$/i.exec(header ?? "")?.[1] ?? ""
  // Hashing first gives equal lengths, so timingSafeEqual leaks neither content nor length.
  const a = Crypto.createHash("sha256").update(presented).digest()
  const b = Crypto.createHash("sha256").update(Redacted.value(expected)).digest()
  return Crypto.timingSafeEqual(a, b) && presented.length > 0
}

const activityEvents = new Set<AuditLog.Kind>(["refresh", "rotation", "reauth_required", "recovery", "login", "logout"])

/**
 * Starts the server in the current scope and returns the port it listens on
 * (useful with `port: 0`). Closing the scope stops it.
 */
export const serve = Effect.fnUntraced(function*(options: Options) {
  const host = options.host ?? "127.0.0.1"
  const token = options.token ?? Option.none()
  if (!isLoopback(host) && Option.isNone(token)) {
    return yield* new StatusServerError({
      detail: `listening on ${host} (not a loopback address) requires a bearer token in ${tokenEnv}`
    })
  }
  const store = yield* TokenStore.TokenStore
  const supervisor = yield* RefreshSupervisor.RefreshSupervisor
  const audit = yield* AuditLog.AuditLog
  const scrape = yield* Telemetry.PrometheusScrape

  const health = Effect.gen(function*() {
    const probe = yield* store.health
    const s = yield* supervisor.status
    const listed = yield* store.list.pipe(Effect.option)
    const now = yield* DateTime.now
    const counts = Option.map(listed, (l) => Metrics.countByState(l, now))
    const healthy = probe.available && (s.alive || !s.enabled) && Option.isSome(listed)
    return {
      healthy,
      body: {
        status: healthy ? "ok" : "unavailable",
        backend: { name: probe.backend, available: probe.available, detail: probe.detail, latency_ms: probe.latencyMs },
        supervisor: { enabled: s.enabled, alive: s.alive, queue_depth: s.queueDepth, in_flight: s.inFlight },
        sessions: Option.getOrNull(counts)
      }
    }
  })

  const page = Effect.gen(function*() {
    const h = yield* health
    const doc = yield* options.document.pipe(Effect.option)
    const s = yield* supervisor.status
    const bySupervisor = new Map(s.sessions.map((x) => [x.id, x]))
    const iso = (d: Option.Option<DateTime.Utc>) => Option.getOrNull(Option.map(d, DateTime.formatIso))
    const rows = Option.match(doc, { onNone: () => [], onSome: (d) => d.sessions }).map((x): StatusPage.Row => {
      const sup = bySupervisor.get(x.id)
      return {
        id: x.id,
        provider: x.provider,
        state: x.state,
        expiresAt: x.expires_at,
        nextRefreshAt: sup === undefined ? null : iso(sup.nextRefreshAt),
        lastRefreshAt: x.last_refresh_at ?? (sup === undefined ? null : iso(sup.lastRefreshAt)),
        lastOutcome: sup === undefined ? null : Option.getOrNull(sup.lastOutcome),
        lastError: x.last_error ?? (sup === undefined ? null : Option.getOrNull(sup.lastError))
      }
    })
    const activity = (yield* audit.recent).filter((e) => activityEvents.has(e.event)).slice(-20).reverse()
      .map((e): StatusPage.Activity => ({
        time: e.time,
        event: e.event,
        provider: e.provider,
        session: e.session,
        outcome: e.outcome,
        reason: e.reason
      }))
    const nonce = Crypto.randomBytes(16).toString("base64")
    const html = StatusPage.render({
      now: DateTime.formatIso(yield* DateTime.now),
      healthy: h.healthy,
      backend: h.body.backend.name,
      backendAvailable: h.body.backend.available,
      supervisorAlive: s.alive,
      supervisorEnabled: s.enabled,
      queueDepth: s.queueDepth,
      inFlight: s.inFlight,
      rows,
      activity
    }, nonce)
    return HttpServerResponse.html(html).pipe(
      HttpServerResponse.setHeader(
        "content-security-policy",
        `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`
      )
    )
  })

  const json = (status: number, body: unknown) =>
    HttpServerResponse.text(JSON.stringify(body, null, 2) + "\n", { status, contentType: "application/json" })

  const route = (path: string) => {
    switch (path) {
      case "/health/auth":
        return Effect.map(health, (h) => json(h.healthy ? 200 : 503, h.body))
      case "/status":
        return options.document.pipe(
          Effect.map((doc) => json(200, doc)),
          Effect.catch((e) => Effect.succeed(json(503, { error: e.message })))
        )
      case "/metrics":
        return Option.match(scrape, {
          onNone: () => Effect.succeed(json(404, { error: "Prometheus export is not configured (observability.metrics_exporter)" })),
          onSome: (collect) =>
            Effect.map(collect, (text) => HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4" }))
        })
      case "/":
        return page
      default:
        return Effect.succeed(json(404, { error: "not found" }))
    }
  }

  const app = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (Option.isSome(token) && !tokenMatches(request.headers["authorization"], token.value)) {
      return json(401, { error: "a bearer token is required" }).pipe(HttpServerResponse.setHeader("www-authenticate", "Bearer"))
    }
    if (request.method !== "GET" && request.method !== "HEAD") return json(405, { error: "method not allowed" })
    const path = new URL(request.url, "http://status.invalid").pathname
    const response = yield* route(path)
    return response.pipe(
      HttpServerResponse.setHeader("cache-control", "no-store"),
      HttpServerResponse.setHeader("x-content-type-options", "nosniff")
    )
  }).pipe(
    Effect.catchCause(() => Effect.succeed(json(500, { error: "internal error" })))
  )

  const server = yield* NodeHttpServer.make(() => Http.createServer(), { port: options.port, host }).pipe(
    Effect.mapError((e) => new StatusServerError({ detail: `cannot listen on ${host}:${options.port}: ${e.message}` }))
  )
  yield* server.serve(app)
  const address = server.address
  const port = address._tag === "UnixPathAddress" ? options.port : address.port
  yield* Effect.logInfo(`status server on http://${host.includes(":") ? `[${host}]` : host}:${port}/`)
  return { port, host }
})
