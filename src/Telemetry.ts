/**
 * Telemetry: OpenTelemetry traces and metrics through `@effect/opentelemetry`,
 * switched on by the standard `OTEL_*` variables or by the `observability`
 * keys, and loaded only then: with tracing and metrics off, not one
 * OpenTelemetry module is imported (a CLI call stays fast).
 *
 * What switches what on (the environment wins over the file):
 *
 * - traces: `OTEL_TRACES_EXPORTER=otlp`, or an `OTEL_EXPORTER_OTLP_ENDPOINT` /
 *   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `observability.tracing_enabled`;
 *   `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn them off.
 *   Exported over OTLP/HTTP (protobuf-free JSON) to the `OTEL_*` endpoint, else
 *   `observability.otlp_endpoint`, else the SDK default `http://localhost:4318`.
 * - metrics: `OTEL_METRICS_EXPORTER` (`otlp`, `prometheus`, `none`) or
 *   `observability.metrics_exporter`. Prometheus is served as `/metrics` by
 *   the status server (`mtsession run --status-port`), never on a port of its own.
 * - the service name: `OTEL_SERVICE_NAME`, else `observability.service_name`.
 */
import { Config, Context, Duration, Effect, Layer, Metric, Option } from "effect"
import type { Settings } from "./SessionConfig.js"
import { SessionConfig } from "./SessionConfig.js"

/** What the standard `OTEL_*` variables say (read through Effect `Config`). */
export interface OtelEnv {
  readonly sdkDisabled: boolean
  readonly endpoint: Option.Option<string>
  readonly tracesEndpoint: Option.Option<string>
  readonly metricsEndpoint: Option.Option<string>
  readonly tracesExporter: Option.Option<string>
  readonly metricsExporter: Option.Option<string>
  readonly serviceName: Option.Option<string>
}

/** Reads {@link OtelEnv} from the current `ConfigProvider` (the process environment by default). */
export const otelEnv: Effect.Effect<OtelEnv, Config.ConfigError> = Effect.gen(function*() {
  return yield* Config.all({
  sdkDisabled: Config.Boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
  endpoint: Config.option(Config.String("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  metricsEndpoint: Config.option(Config.String("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")),
  tracesExporter: Config.option(Config.String("OTEL_TRACES_EXPORTER")),
  metricsExporter: Config.option(Config.String("OTEL_METRICS_EXPORTER")),
    serviceName: Config.option(Config.String("OTEL_SERVICE_NAME"))
  })
})

/** What gets exported, and where. */
export interface Plan {
  /** Traces over OTLP/HTTP; `url` none: the exporter's own `OTEL_*` endpoint or its default. */
  readonly traces: Option.Option<{ readonly url: Option.Option<string> }>
  readonly metrics:
    | { readonly _tag: "None" }
    | { readonly _tag: "Otlp"; readonly url: Option.Option<string>; readonly interval: Duration.Duration }
    | { readonly _tag: "Prometheus" }
  readonly serviceName: string
}

const nonEmpty = (o: Option.Option<string>) => Option.filter(Option.map(o, (s) => s.trim()), (s) => s.length > 0)
const exporterList = (o: Option.Option<string>) =>
  Option.map(nonEmpty(o), (s) => s.split(",").map((x) => x.trim().toLowerCase()))

/** Decides the plan from the `observability` settings and the `OTEL_*` variables (the variables win). */
export const planOf = (settings: Settings["observability"], env: OtelEnv): Plan => {
  const serviceName = Option.getOrElse(nonEmpty(env.serviceName), () => settings.serviceName)
  if (env.sdkDisabled) return { traces: Option.none(), metrics: { _tag: "None" }, serviceName }
  const configured = settings.otlpEndpoint === "" ? Option.none<string>() : Option.some(settings.otlpEndpoint.replace(/\/+$/, ""))
  const envEndpoint = Option.orElse(nonEmpty(env.tracesEndpoint), () => nonEmpty(env.endpoint))
  const tracesOn = Option.match(exporterList(env.tracesExporter), {
    onNone: () => Option.isSome(envEndpoint) || settings.tracingEnabled,
    onSome: (list) => list.includes("otlp")
  })
  // An endpoint in the environment is read by the exporter itself; the configured one is ours to pass.
  const urlFor = (signal: string, envSpecific: Option.Option<string>) =>
    Option.isSome(envSpecific) || Option.isSome(nonEmpty(env.endpoint))
      ? Option.none<string>()
      : Option.map(configured, (base) => `${base}/v1/${signal}`)
  const metricsChoice = Option.match(exporterList(env.metricsExporter), {
    onNone: () => settings.metricsExporter,
    onSome: (list) => list.includes("prometheus") ? "prometheus" : list.includes("otlp") ? "otlp" : "none"
  })
  return {
    traces: tracesOn ? Option.some({ url: urlFor("traces", nonEmpty(env.tracesEndpoint)) }) : Option.none(),
    metrics: metricsChoice === "otlp"
      ? {
        _tag: "Otlp",
        url: urlFor("metrics", nonEmpty(env.metricsEndpoint)),
        interval: Duration.seconds(settings.metricsExportIntervalSeconds)
      }
      : metricsChoice === "prometheus"
      ? { _tag: "Prometheus" }
      : { _tag: "None" },
    serviceName
  }
}

/** Whether the plan needs the OpenTelemetry SDK at all. */
export const isActive = (plan: Plan): boolean => Option.isSome(plan.traces) || plan.metrics._tag !== "None"

/** The Prometheus text exposition of the current metrics, when Prometheus export is configured. */
export const PrometheusScrape = Context.Reference<Option.Option<Effect.Effect<string>>>(
  "magictunnel-session/Telemetry/PrometheusScrape",
  { defaultValue: () => Option.none() }
)

/**
 * Installs the SDK for `plan`: imports `@effect/opentelemetry` and the OTel
 * packages it needs (dynamically), and shuts them down (flushing spans) when
 * the layer's scope closes. A missing package is a warning, never a failure.
 */
export const layerPlan = (plan: Plan, options?: { readonly serviceVersion?: string | undefined }): Layer.Layer<never> => {
  if (!isActive(plan)) return Layer.empty
  return Layer.unwrap(Effect.flatMap(Effect.service(Metric.MetricRegistry), (registry) =>
    Effect.tryPromise({
      try: async () => {
        const [NodeSdk, TraceBase, TraceExporter] = await Promise.all([
          import("@effect/opentelemetry/NodeSdk"),
          import("@opentelemetry/sdk-trace-base"),
          import("@opentelemetry/exporter-trace-otlp-http")
        ])
        const spanProcessor = Option.match(plan.traces, {
          onNone: () => undefined,
          onSome: ({ url }) =>
            new TraceBase.BatchSpanProcessor(
              new TraceExporter.OTLPTraceExporter(Option.match(url, { onNone: () => ({}), onSome: (u) => ({ url: u }) })),
              { scheduledDelayMillis: 1000 }
            )
        })
        let scrape: Option.Option<Effect.Effect<string>> = Option.none()
        let metricReader: import("@opentelemetry/sdk-metrics").MetricReader | undefined
        if (plan.metrics._tag === "Otlp") {
          const [SdkMetrics, MetricExporter] = await Promise.all([
            import("@opentelemetry/sdk-metrics"),
            import("@opentelemetry/exporter-metrics-otlp-http")
          ])
          metricReader = new SdkMetrics.PeriodicExportingMetricReader({
            exporter: new MetricExporter.OTLPMetricExporter(
              Option.match(plan.metrics.url, { onNone: () => ({}), onSome: (u) => ({ url: u }) })
            ),
            exportIntervalMillis: Duration.toMillis(plan.metrics.interval)
          })
        } else if (plan.metrics._tag === "Prometheus") {
          const Prometheus = await import("@opentelemetry/exporter-prometheus")
          const exporter = new Prometheus.PrometheusExporter({ preventServerStart: true })
          const serializer = new Prometheus.PrometheusSerializer()
          // exporter-prometheus pins its own copy of sdk-metrics: the same class, declared twice.
          metricReader = exporter as unknown as import("@opentelemetry/sdk-metrics").MetricReader
          scrape = Option.some(
            Effect.promise(() => exporter.collect()).pipe(Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics)))
          )
        }
        const sdk = NodeSdk.layer(() => ({
          ...(spanProcessor === undefined ? {} : { spanProcessor }),
          ...(metricReader === undefined ? {} : { metricReader }),
          resource: {
            serviceName: plan.serviceName,
            ...(options?.serviceVersion === undefined ? {} : { serviceVersion: options.serviceVersion })
          },
          shutdownTimeout: Duration.seconds(5)
        }))
        // The CLI bundle carries its own copy of `effect`, and @effect/opentelemetry (external) another:
        // hand the SDK this copy's metric registry, so it exports the metrics this code updates.
        return Layer.merge(
          sdk.pipe(Layer.provide(Layer.succeed(Metric.MetricRegistry, registry))),
          Layer.succeed(PrometheusScrape, scrape)
        )
      },
      catch: (e) => (e instanceof Error ? e.message : "unknown error")
    }).pipe(
      Effect.catch((detail) =>
        Effect.as(
          Effect.logWarning(`OpenTelemetry is configured but could not be loaded (${detail}); continuing without it`),
          Layer.empty
        )
      )
    ))) as Layer.Layer<never>
}

/** Telemetry from the loaded configuration and the `OTEL_*` environment. */
export const layer: Layer.Layer<never, never, SessionConfig> = Layer.unwrap(
  Effect.gen(function*() {
    const settings = (yield* SessionConfig).settings.observability
    const env = yield* otelEnv.pipe(
      Effect.catch((e) =>
        Effect.as(Effect.logWarning(`ignoring the OTEL_* variables: ${e.message}`), {
          sdkDisabled: false,
          endpoint: Option.none(),
          tracesEndpoint: Option.none(),
          metricsEndpoint: Option.none(),
          tracesExporter: Option.none(),
          metricsExporter: Option.none(),
          serviceName: Option.none()
        } satisfies OtelEnv)
      )
    )
    return layerPlan(planOf(settings, env))
  })
)
