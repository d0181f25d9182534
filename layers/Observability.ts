/**
 * The edge of observability: OpenTelemetry (traces and metrics, loaded only
 * when the `OTEL_*` variables or the `observability` keys switch it on) and
 * the audit log (`audit_log.*`). `Main.layer` puts both under the store, so
 * everything built above them (selection, store, sessions, recovery, the
 * supervisor) is traced and audited.
 */
import { Layer } from "effect"
import * as AuditLog from "../src/AuditLog.js"
import * as Telemetry from "../src/Telemetry.js"

/** Telemetry from the loaded configuration; nothing is imported while it is off. */
export const telemetry = Telemetry.layer

/** The audit log of the user context; needs the configuration, the user context and the file system. */
export const auditLog = AuditLog.layer

/** Both; the audit log needs the user context, telemetry only the configuration. */
export const layer = Layer.merge(telemetry, auditLog)
