/**
 * Migration: moves every session of a namespace from one token store to
 * another (`mtsession migrate --to redis`, and back), with no loss and no
 * moment where a session is in neither store.
 *
 * Per session, in this order: read it from the source; write it to the
 * target (unless the target already holds a newer generation, which is kept);
 * read it back from the target and compare it with what was read; only then
 * remove it from the source. A crash at any point leaves the session in the
 * source, the target, or both, never neither, and running the migration again
 * finishes the job. A session that does not open in the source (corrupted) is
 * left where it is and reported, never copied or deleted.
 */
import { Effect, Option, Result } from "effect"
import * as RecordCodec from "./internal/RecordCodec.js"
import * as TokenStore from "./TokenStore.js"

/** What happened to one session. */
export type Outcome =
  /** Copied, verified, and removed from the source (or kept there with `keepSource`). */
  | { readonly _tag: "Moved"; readonly id: string; readonly generation: number }
  /** The target already had this generation or a newer one: kept; the source's copy removed. */
  | { readonly _tag: "AlreadyInTarget"; readonly id: string; readonly generation: number }
  /** Not moved: it does not open in the source, or the copy did not verify. Still in the source. */
  | { readonly _tag: "Skipped"; readonly id: string; readonly detail: string }

/** The result of a migration. */
export interface Report {
  readonly from: TokenStore.Backend
  readonly to: TokenStore.Backend
  readonly outcomes: ReadonlyArray<Outcome>
}

/** Options of a migration. */
export interface Options {
  /** Copy without removing from the source. */
  readonly keepSource?: boolean | undefined
  /** Say what would happen, change nothing. */
  readonly dryRun?: boolean | undefined
}

const sameRecord = (a: TokenStore.SessionRecord, b: TokenStore.SessionRecord) =>
  Effect.zipWith(RecordCodec.encode(a), RecordCodec.encode(b), (x, y) => Buffer.compare(x, y) === 0)

/** Moves one session. Store failures (an unreachable target) stop the migration; the session stays in the source. */
const moveOne = Effect.fnUntraced(function*(
  from: TokenStore.Shape,
  to: TokenStore.Shape,
  id: string,
  options: Options
) {
  const read = yield* Effect.result(from.get(id))
  if (Result.isFailure(read)) {
    const reason = read.failure.reason._tag
    if (reason === "NotFound") return Option.none<Outcome>() // removed meanwhile
    if (reason === "Corrupted") return Option.some<Outcome>({ _tag: "Skipped", id, detail: read.failure.message })
    return yield* read.failure
  }
  const record = read.success
  const existing = yield* Effect.result(to.get(id))
  if (Result.isFailure(existing) && existing.failure.reason._tag !== "NotFound") {
    if (existing.failure.reason._tag !== "Corrupted") return yield* existing.failure
  }
  const targetGeneration = Result.isSuccess(existing) ? existing.success.generation : -1
  if (options.dryRun === true) {
    return Option.some<Outcome>(
      targetGeneration >= record.generation
        ? { _tag: "AlreadyInTarget", id, generation: targetGeneration }
        : { _tag: "Moved", id, generation: record.generation }
    )
  }
  const newerInTarget = Result.isSuccess(existing) && targetGeneration > record.generation
  if (!newerInTarget) {
    yield* to.put(record)
    const back = yield* to.get(id)
    if (!(yield* sameRecord(back, record)) && back.generation <= record.generation) {
      return Option.some<Outcome>({ _tag: "Skipped", id, detail: "the copy in the target did not read back identical; the source is kept" })
    }
  }
  if (options.keepSource !== true) yield* from.remove(id)
  return Option.some<Outcome>(
    newerInTarget
      ? { _tag: "AlreadyInTarget", id, generation: targetGeneration }
      : { _tag: "Moved", id, generation: record.generation }
  )
})

/** Moves every session of `from` to `to`, one at a time. */
export const migrate = Effect.fn("Migration.migrate")(function*(
  from: TokenStore.Shape,
  to: TokenStore.Shape,
  options: Options = {}
) {
  // Moving a store onto itself would remove every session after "copying" it.
  if (from === to || from.backend === to.backend) {
    return yield* new TokenStore.TokenStoreError({
      backend: to.backend,
      operation: "open",
      reason: { _tag: "Conflict", detail: `source and target are the same ${to.backend} store; nothing was moved` }
    })
  }
  const listed = yield* from.list
  const outcomes: Array<Outcome> = []
  for (const m of listed) {
    if (m.state === "corrupted") {
      outcomes.push({ _tag: "Skipped", id: m.id, detail: Option.getOrElse(m.lastError, () => "corrupted in the source") })
      continue
    }
    const outcome = yield* moveOne(from, to, m.id, options)
    if (Option.isSome(outcome)) outcomes.push(outcome.value)
  }
  yield* Effect.annotateCurrentSpan({ "migration.from": from.backend, "migration.to": to.backend, "migration.sessions": outcomes.length })
  return { from: from.backend, to: to.backend, outcomes } satisfies Report
})
