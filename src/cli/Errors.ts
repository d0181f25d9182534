/**
 * Errors that belong to the command line itself: bad usage the parser cannot
 * see (an unknown provider, empty stdin) and "no session".
 */
import { Data } from "effect"

/** A command was called in a way that cannot work; the message says how to call it. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

/** The user has no usable session for what was asked. */
export class NoSession extends Data.TaggedError("NoSession")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

/**
 * Ends a command with a non-zero exit code after it has printed its own
 * report (e.g. `doctor` finding problems); `detail`, when given, goes to stderr.
 */
export class CommandExit extends Data.TaggedError("CommandExit")<{
  readonly code: number
  readonly detail?: string | undefined
}> {
  override get message(): string {
    return this.detail ?? ""
  }
}
