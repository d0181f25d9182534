/**
 * A minimal OTLP/HTTP (JSON) trace receiver on 127.0.0.1, as a collector
 * would run it: keeps every request body as received and the spans decoded
 * from them.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, type Scope } from "effect"

/** One received span, attributes flattened. */
export interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly attributes: Readonly<Record<string, string | number | boolean>>
  readonly status: { readonly code?: number; readonly message?: string } | undefined
  readonly events: ReadonlyArray<{ readonly name: string; readonly attributes: Readonly<Record<string, unknown>> }>
  readonly serviceName: string | undefined
}

export interface Receiver {
  readonly url: string
  readonly spans: () => ReadonlyArray<Span>
  /** Every body received, raw: to assert no secret was ever sent. */
  readonly bodies: () => ReadonlyArray<string>
}

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number }
type KeyValue = { key: string; value: AnyValue }

const valueOf = (v: AnyValue): string | number | boolean =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue ?? v.doubleValue ?? "")

const attrs = (kvs: ReadonlyArray<KeyValue> | undefined) => Object.fromEntries((kvs ?? []).map((kv) => [kv.key, valueOf(kv.value)]))

const hex = (id: unknown): string => typeof id === "string" ? id : ""

const decode = (body: string): Array<Span> => {
  const doc = JSON.parse(body) as {
    resourceSpans?: Array<{
      resource?: { attributes?: Array<KeyValue> }
      scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }>
    }>
  }
  const out: Array<Span> = []
  for (const rs of doc.resourceSpans ?? []) {
    const serviceName = attrs(rs.resource?.attributes)["service.name"]
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const parent = hex(s["parentSpanId"])
        out.push({
          traceId: hex(s["traceId"]),
          spanId: hex(s["spanId"]),
          parentSpanId: parent === "" ? undefined : parent,
          name: String(s["name"]),
          attributes: attrs(s["attributes"] as Array<KeyValue>),
          status: s["status"] as Span["status"],
          events: ((s["events"] as Array<{ name: string; attributes?: Array<KeyValue> }> | undefined) ?? []).map((e) => ({
            name: e.name,
            attributes: attrs(e.attributes)
          })),
          serviceName: typeof serviceName === "string" ? serviceName : undefined
        })
      }
    }
  }
  return out
}

/** Starts a receiver (plain async, for non-Effect callers). */
export const start = async (): Promise<Receiver & { readonly close: () => Promise<void> }> => {
  const spans: Array<Span> = []
  const bodies: Array<string> = []
  const server = Http.createServer((req, res) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (d: string) => (body += d))
    req.on("end", () => {
      bodies.push(body)
      if (req.url === "/v1/traces" && (req.headers["content-type"] ?? "").includes("json")) spans.push(...decode(body))
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => [...spans],
    bodies: () => [...bodies],
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** Starts a receiver for the current scope; fails if it cannot listen. */
export const acquire: Effect.Effect<Receiver, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(start),
  (r) => Effect.promise(r.close)
)
