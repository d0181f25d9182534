import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePathModule from "node:path"
import { ConfigProvider, Duration, Effect, Option } from "effect"
import * as ConfigKeys from "../src/internal/ConfigKeys.js"
import * as Telemetry from "../src/Telemetry.js"
import { cliPath } from "./support/Cli.js"

const defaults = ConfigKeys.defaultSettings().observability
const noEnv: Telemetry.OtelEnv = {
  sdkDisabled: false,
  endpoint: Option.none(),
  tracesEndpoint: Option.none(),
  metricsEndpoint: Option.none(),
  tracesExporter: Option.none(),
  metricsExporter: Option.none(),
  serviceName: Option.none()
}

describe("Telemetry.planOf", () => {
  it("is off by default: nothing to load", () => {
    const plan = Telemetry.planOf(defaults, noEnv)
    assert.isFalse(Telemetry.isActive(plan))
    assert.strictEqual(plan.serviceName, "mtsession")
  })

  it("the standard OTEL_* variables switch traces on and keep their own endpoint", () => {
    const plan = Telemetry.planOf(defaults, { ...noEnv, endpoint: Option.some("http://collector:4318"), serviceName: Option.some("gw") })
    assert.deepStrictEqual(plan.traces, Option.some({ url: Option.none() }))
    assert.strictEqual(plan.serviceName, "gw")
    assert.deepStrictEqual(plan.metrics, { _tag: "None" })
  })

  it("the configuration switches traces and metrics on, with the configured endpoint", () => {
    const plan = Telemetry.planOf(
      { ...defaults, tracingEnabled: true, otlpEndpoint: "http://127.0.0.1:4318/", metricsExporter: "otlp", metricsExportIntervalSeconds: 10 },
      noEnv
    )
    assert.deepStrictEqual(plan.traces, Option.some({ url: Option.some("http://127.0.0.1:4318/v1/traces") }))
    assert.deepStrictEqual(plan.metrics, {
      _tag: "Otlp",
      url: Option.some("http://127.0.0.1:4318/v1/metrics"),
      interval: Duration.seconds(10)
    })
  })

  it("the environment wins: OTEL_TRACES_EXPORTER=none, OTEL_METRICS_EXPORTER, OTEL_SDK_DISABLED", () => {
    const on = { ...defaults, tracingEnabled: true, metricsExporter: "otlp" as const }
    const plan = Telemetry.planOf(on, { ...noEnv, tracesExporter: Option.some("none"), metricsExporter: Option.some("prometheus") })
    assert.isTrue(Option.isNone(plan.traces))
    assert.deepStrictEqual(plan.metrics, { _tag: "Prometheus" })
    assert.isFalse(Telemetry.isActive(Telemetry.planOf(on, { ...noEnv, sdkDisabled: true })))
  })

  it.effect("reads the OTEL_* variables through the ConfigProvider", () =>
    Effect.gen(function*() {
      const env = yield* Telemetry.otelEnv.pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
          env: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true", OTEL_SERVICE_NAME: "svc" }
        })))
      )
      assert.deepStrictEqual(env.endpoint, Option.some("http://c:4318"))
      assert.isTrue(env.sdkDisabled)
      assert.deepStrictEqual(env.serviceName, Option.some("svc"))
    }))
})

describe("the CLI loads OpenTelemetry only when it is switched on", () => {
  const hook = NodePathModule.resolve(import.meta.dirname, "support/trace-imports.mjs")
  const run = (env: Record<string, string>) => {
    const home = Fs.mkdtempSync(NodePathModule.join(Os.tmpdir(), "mts-telemetry-"))
    try {
      const config = NodePathModule.join(home, "config.yaml")
      Fs.writeFileSync(config, "auth:\n  session_persistence:\n    token_storage:\n      storage_backend: memory\n")
      return spawnSync(process.execPath, ["--import", hook, cliPath, "list", "--json"], {
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: home, MAGICTUNNEL_CONFIG_PATH: config, ...env },
        encoding: "utf8",
        timeout: 30_000
      })
    } finally {
      Fs.rmSync(home, { recursive: true, force: true })
    }
  }

  it("tracing off: not one OpenTelemetry module is imported", () => {
    const r = run({})
    assert.strictEqual(r.status, 0, r.stderr)
    assert.notInclude(r.stderr, "LOADED")
  })

  it("OTEL_EXPORTER_OTLP_ENDPOINT set: the SDK is imported", () => {
    // A closed port: the export fails quietly at exit, the command still succeeds.
    const r = run({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" })
    assert.strictEqual(r.status, 0, r.stderr)
    assert.include(r.stderr, "LOADED @effect/opentelemetry/NodeSdk")
  })
})
