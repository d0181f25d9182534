/**
 * AuditLog: one JSON line per session event (login, refresh, rotation,
 * re-authentication required, logout, revocation, recovery outcome,
 * corruption set aside, backend chosen, key rotated), so an operator can
 * prove after the fact who logged in and what happened to each session.
 *
 * Every line carries the time, the user namespace, the provider, the
 * session's fingerprint (`TokenStore.fingerprint`, never an id of a secret),
 * the outcome and a secret-free reason. The file is opened `O_APPEND` and
 * mode 0600 for every line, and each line is handed to the kernel in ONE
 * `write` of the complete line: a crash leaves either the whole line or
 * none of it (at worst, on a full disk, a torn tail, which {@link read}
 * skips and the next writer fences off with a newline). It is rotated by
 * size (`audit.log` → `audit.log.1` …, `max_files` kept).
 *
 * The service is a `Context.Reference`: without a layer it only keeps the
 * recent events in memory (the status page shows them), so library users who
 * do not want a file need not provide anything.
 */
import { Context, DateTime, Effect, FileSystem, Layer, Option, Ref, Schema } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as AuditFile from "./internal/AuditFile.js"
import { SessionConfig } from "./SessionConfig.js"
import * as TokenStore from "./TokenStore.js"
import { expandHome, UserContext } from "./UserContext.js"
import * as Path from "effect/Path"

/** The kinds of event, one per line. */
export const kinds = [
  "login",
  "refresh",
  "rotation",
  "reauth_required",
  "logout",
  "revocation",
  "recovery",
  "corruption_set_aside",
  "backend_chosen",
  "key_rotated"
] as const
export type Kind = typeof kinds[number]

/** One line of the audit log. */
export class Entry extends Schema.Class<Entry>("magictunnel-session/AuditEntry")({
  /** ISO 8601, UTC, milliseconds. */
  time: Schema.String,
  event: Schema.Literals(kinds),
  /** The user context (`user@host:uid[/principal:id]`). */
  namespace: Schema.String,
  provider: Schema.NullOr(Schema.String),
  /** `TokenStore.fingerprint(namespace, id)`. */
  session: Schema.NullOr(Schema.String),
  outcome: Schema.String,
  /** Secret-free: built from error tags and metadata only. */
  reason: Schema.NullOr(Schema.String),
  /** The storage backend, when the event concerns one. */
  backend: Schema.optional(Schema.String),
  /** The refresh generation after the event, when it changed one. */
  generation: Schema.optional(Schema.Int)
}) {}

/** What a caller reports; the log adds the time, namespace and fingerprint. */
export interface Event {
  readonly event: Kind
  readonly provider?: string | undefined
  /** The session id; only its fingerprint is written. */
  readonly sessionId?: string | undefined
  readonly outcome: string
  readonly reason?: string | undefined
  readonly backend?: string | undefined
  readonly generation?: number | undefined
}

/** The operations. */
export interface Shape {
  /** Appends one line; never fails (a write failure is logged as a warning). */
  readonly record: (event: Event) => Effect.Effect<void>
  /** Appends one line per event in one write (a recovery's outcomes); never fails. */
  readonly recordAll: (events: ReadonlyArray<Event>) => Effect.Effect<void>
  /** The most recent events of this process, oldest first (at most {@link recentLimit}). */
  readonly recent: Effect.Effect<ReadonlyArray<Entry>>
  /** The file written, if any. */
  readonly path: Option.Option<string>
}

/** How many events `recent` keeps. */
export const recentLimit = 100

const encodeLine = Schema.encodeSync(Schema.fromJsonString(Entry))
const decodeLine = Schema.decodeUnknownOption(Schema.fromJsonString(Entry))

/** Keeps the recent events in memory and, given a writer, appends each to the file. */
export const make = (options: {
  readonly namespace: string
  readonly write?: ((line: string) => Effect.Effect<void, PlatformError>) | undefined
  readonly path?: string | undefined
}) =>
  Effect.gen(function*() {
    const recent = yield* Ref.make<ReadonlyArray<Entry>>([])
    const write = options.write
    const entryOf = (time: string, event: Event) =>
      new Entry({
        time,
        event: event.event,
        namespace: options.namespace,
        provider: event.provider ?? null,
        session: event.sessionId === undefined ? null : TokenStore.fingerprint(options.namespace, event.sessionId),
        outcome: event.outcome,
        reason: event.reason ?? null,
        ...(event.backend === undefined ? {} : { backend: event.backend }),
        ...(event.generation === undefined ? {} : { generation: event.generation })
      })
    const recordAll = (events: ReadonlyArray<Event>) =>
      Effect.gen(function*() {
        if (events.length === 0) return
        const time = DateTime.formatIso(yield* DateTime.now)
        const entries = events.map((event) => entryOf(time, event))
        yield* Ref.update(recent, (xs) => [...xs, ...entries.slice(-recentLimit)].slice(-recentLimit))
        if (write !== undefined) {
          // One write for all of them: a recovery of thousands of sessions costs one append, not thousands.
          yield* write(entries.map((entry) => encodeLine(entry) + "\n").join("")).pipe(
            Effect.catch((e) => Effect.logWarning(`audit log: could not write ${options.path ?? ""}: ${e.message}`))
          )
        }
      })
    return {
      record: (event: Event) => recordAll([event]),
      recordAll,
      recent: Ref.get(recent),
      path: Option.fromUndefinedOr(options.path)
    } satisfies Shape
  })

const memoryOnly = (): Shape => {
  // No layer: nothing to attribute lines to, so the default records nothing.
  return { record: () => Effect.void, recordAll: () => Effect.void, recent: Effect.succeed([]), path: Option.none() }
}

/** The audit log of this process; by default it records nothing. */
export const AuditLog = Context.Reference<Shape>("magictunnel-session/AuditLog", { defaultValue: memoryOnly })

/** Records `events` in the current audit log, in one write. */
export const recordAll = (events: ReadonlyArray<Event>): Effect.Effect<void> =>
  Effect.gen(function*() {
    const log = yield* AuditLog
    yield* log.recordAll(events)
  })

/** Records `event` in the current audit log. */
export const record = (event: Event): Effect.Effect<void> =>
  Effect.gen(function*() {
    const log = yield* AuditLog
    yield* log.record(event)
  })

/**
 * A store whose reads that find a damaged record (set aside by the backend)
 * are audited as `corruption_set_aside`; otherwise unchanged.
 */
export const auditStore = (store: TokenStore.Shape): TokenStore.Shape => ({
  ...store,
  get: (id) =>
    Effect.tapError(store.get(id), (error) =>
      error.reason._tag === "Corrupted"
        ? record({
          event: "corruption_set_aside",
          provider: id.split("~")[0],
          sessionId: id,
          outcome: error.reason.quarantinedAs === undefined ? "unreadable" : "set_aside",
          reason: "the record could not be decrypted or decoded",
          backend: store.backend
        })
        : Effect.void)
})

/** What {@link read} found: the whole lines, and how many it skipped (torn or not an audit line). */
export interface ReadResult {
  readonly entries: ReadonlyArray<Entry>
  readonly skipped: number
}

/** Parses the text of an audit log; a torn last line (no newline) and garbage lines are skipped. */
export const parse = (text: string): ReadResult => {
  const lines = text.split("\n")
  // Whatever follows the last newline was never completed.
  const tail = lines.pop() ?? ""
  const entries: Array<Entry> = []
  let skipped = tail === "" ? 0 : 1
  for (const line of lines) {
    if (line === "") continue
    const entry = decodeLine(line)
    if (Option.isSome(entry)) entries.push(entry.value)
    else skipped++
  }
  return { entries, skipped }
}

/** Reads an audit log file. */
export const read = (file: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    return parse(yield* fs.readFileString(file))
  })

/** Where the log goes: `audit_log.path` (`~` expanded), else `audit.log` in the session directory. */
export const pathOf = (configured: string, user: { readonly home: string; readonly sessionDirectory: string }, path: Path.Path) =>
  configured === "" ? path.join(user.sessionDirectory, "audit.log") : expandHome(path, user.home, configured)

/** The audit log as configured (`audit_log.*`); with `enabled: false`, memory only. */
export const layer = Layer.effect(
  AuditLog,
  Effect.gen(function*() {
    const settings = (yield* SessionConfig).settings.auditLog
    const user = yield* UserContext
    if (!settings.enabled) return yield* make({ namespace: user.namespace })
    const file = pathOf(settings.path, user, yield* Path.Path)
    const write = yield* AuditFile.writer({ path: file, maxBytes: settings.maxSizeMb * 1024 * 1024, maxFiles: settings.maxFiles })
    return yield* make({ namespace: user.namespace, write, path: file })
  })
)
