/**
 * RefreshLock: one refresh per grant at a time, across fibers and processes.
 *
 * Two processes that refresh the same refresh token at once make the server
 * see a reused token, and it revokes the whole grant (RFC 9700 §4.14.2). So a
 * refresh runs inside `withLock(sessionId, ...)`: fibers of this process queue
 * on a per-key semaphore (no polling), and the fiber at the front then takes
 * the cross-process lock of its backend with non-blocking attempts spaced by
 * {@link retrySchedule}, until {@link defaultWaitTimeout} (or the caller's) runs
 * out. The lock is released whenever the effect ends: success, failure or
 * interruption.
 *
 * The file backend ({@link layerFile}) is a SQLite write transaction on
 * `<storageDirectory>/locks/<fileKeyOf(key)>.lock`: the kernel drops its fcntl
 * lock when the holder dies, so a crash never leaves a lock behind. The memory
 * backend ({@link layerMemory}) serializes one process only. A shared backend
 * for several machines (Redis) plugs in through {@link make} later. The model,
 * what happens when a holder dies, and the NFS caveat: docs/locking.md.
 */
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import {
  Clock,
  Context,
  Data,
  DateTime,
  Duration,
  Effect,
  FileSystem,
  Layer,
  Option,
  Path,
  RcMap,
  Ref,
  Schedule,
  Scope,
  Semaphore
} from "effect"
import { fileKeyOf } from "./internal/MetadataIndex.js"
import * as FileLock from "./internal/FileLock.js"
import * as SqliteLock from "./internal/SqliteLock.js"
import * as Metrics from "./Metrics.js"
import { RefreshLockError } from "./RefreshLockError.js"
import { UserContext } from "./UserContext.js"

export { isRetryable, type Reason, RefreshLockError } from "./RefreshLockError.js"

/** Who holds, or last held, a lock. */
export interface Holder {
  readonly pid: number
  readonly hostname: string
  /** Random per acquisition. */
  readonly token: string
  readonly acquiredAt: DateTime.Utc
  /** None while the lock is held. */
  readonly releasedAt: Option.Option<DateTime.Utc>
}

/** What `inspect` can tell about one lock. */
export interface LockInfo {
  readonly key: string
  /** Someone holds it right now (any process, for the file backend). */
  readonly held: boolean
  /**
   * The current holder while the lock is held, else the last one (`releasedAt`
   * set, or none when that holder died holding it). The file backend's record
   * is best effort (`internal/LockOwners.ts`): it may be missing or lag.
   */
  readonly lastHolder: Option.Option<Holder>
  /** The lock file, for backends that have one. */
  readonly location: Option.Option<string>
}

/** Options of one `withLock` call. */
export interface WithLockOptions<A = never, E = never, R = never> {
  /** How long to wait for the lock before failing with `Timeout`; {@link defaultWaitTimeout} by default. */
  readonly waitTimeout?: Duration.Input | undefined
  /**
   * Run each time the cross-process lock is found held by someone else: a
   * `Some` ends the wait with that value, without the lock and without
   * running the effect (what the holder did may already be what the caller
   * needed: a refresh another process just made). Not run while waiting
   * behind a fiber of this process (that fiber's result reaches the caller
   * another way).
   */
  readonly whileBusy?: Effect.Effect<Option.Option<A>, E, R> | undefined
}

/** The lock service. */
export interface Shape {
  readonly backend: "file" | "memory" | "redis"
  /**
   * Runs `effect` while holding the lock named `key`, and always releases it.
   * The span `RefreshLock.withLock` carries `lock.key`, `lock.wait_ms` and
   * `lock.outcome` (`acquired`, `timeout`, `unavailable`, or `settled` when
   * `whileBusy` ended the wait).
   */
  readonly withLock: <A, E, R, E2 = never, R2 = never>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: WithLockOptions<A, E2, R2>
  ) => Effect.Effect<A, E | E2 | RefreshLockError, R | R2>
  /** Whether the lock is held and who held it last; takes no lock itself for longer than an instant. */
  readonly inspect: (key: string) => Effect.Effect<LockInfo, RefreshLockError>
}

/**
 * How long `withLock` waits by default: longer than one refresh by the holder
 * (`token_refresh.refresh_timeout_seconds`, 30 s by default) plus persisting it.
 */
export const defaultWaitTimeout: Duration.Duration = Duration.seconds(40)

/**
 * The spacing of non-blocking attempts on a busy cross-process lock: about
 * 2 ms, growing by half each time up to 50 ms, jittered (x0.8 to x1.2) so
 * waiting processes do not retry in step. An attempt costs a file open and a
 * rolled-back `BEGIN IMMEDIATE` (tens of microseconds), so polling this often
 * is cheap, and a waiter notices a release within a few milliseconds while
 * refreshes are short. `withLock` bounds it by the wait timeout.
 */
export const retrySchedule: Schedule.Schedule<Duration.Duration> = Schedule.min([
  Schedule.exponential("2 millis", 1.5),
  Schedule.spaced("50 millis")
]).pipe(Schedule.jittered)

/** The refresh lock of this process's user context. */
export class RefreshLock extends Context.Service<RefreshLock, Shape>()("magictunnel-session/RefreshLock") {}

/** The cross-process half of a lock, behind the in-process queue: what a Redis lock will implement. */
export interface Backend {
  readonly name: Shape["backend"]
  /** One non-blocking attempt: the release effect (which never fails), or None when someone else holds it. */
  readonly tryAcquire: (
    key: string,
    owner: Omit<Holder, "releasedAt">
  ) => Effect.Effect<Option.Option<Effect.Effect<void>>, RefreshLockError>
  readonly inspect: (key: string) => Effect.Effect<LockInfo, RefreshLockError>
}

class Busy extends Data.TaggedError("RefreshLockBusy")<{}> {}

/** `whileBusy` answered: the wait ends with this value. */
class Settled extends Data.TaggedError("RefreshLockSettled")<{ readonly value: unknown }> {}

/** Builds the service over a backend; the per-key in-process queues live as long as the scope. */
export const make = Effect.fnUntraced(function*(backend: Backend) {
  // One permit per key; an entry is dropped when its last user leaves, so keys never accumulate.
  const queues = yield* RcMap.make({ lookup: (_key: string) => Semaphore.make(1) })
  // Read once: it names this process in the owner records, and asking the OS costs a call each time.
  const hostname = Os.hostname()

  /** How a wait ended: the lock is held (released with the scope), or `whileBusy` answered. */
  type Waited =
    | { readonly _tag: "Acquired"; readonly waitedMs: number }
    | { readonly _tag: "Settled"; readonly waitedMs: number; readonly value: unknown }

  const acquire = Effect.fnUntraced(function*<E, R>(
    key: string,
    waitTimeout: Duration.Duration,
    start: number,
    whileBusy: Effect.Effect<Option.Option<unknown>, E, R> | undefined
  ) {
    const waited = Effect.map(Clock.currentTimeMillis, (now) => now - start)
    const timeout = Effect.flatMap(waited, (waitedMs) =>
      Effect.fail(new RefreshLockError({ key, reason: { _tag: "Timeout", waitedMs } })))
    const queue = yield* RcMap.get(queues, key)
    // No fiber of this process holds the key (the usual case): take it without arming a timeout.
    const free = yield* Effect.uninterruptible(
      Effect.flatMap(queue.takeIfAvailable(1), (taken) =>
        taken ? Effect.as(Effect.addFinalizer(() => queue.release(1)), true) : Effect.succeed(false))
    )
    if (!free && Option.isNone(yield* Effect.timeoutOption(queue.takeScoped(1), waitTimeout))) return yield* timeout
    const remainingMs = Math.max(0, Duration.toMillis(waitTimeout) - (yield* waited))
    const owner = {
      pid: process.pid,
      hostname,
      token: Crypto.randomUUID(),
      acquiredAt: yield* DateTime.now
    }
    const busy: Effect.Effect<never, Busy | Settled | E, R> = whileBusy === undefined
      ? Effect.fail(new Busy())
      : Effect.flatMap(whileBusy, (answer): Effect.Effect<never, Busy | Settled> =>
        Option.isSome(answer) ? Effect.fail(new Settled({ value: answer.value })) : Effect.fail(new Busy()))
    const attempt: Effect.Effect<Effect.Effect<void>, RefreshLockError | Busy | Settled | E, R> = Effect.flatMap(
      backend.tryAcquire(key, owner),
      (release) => Option.isSome(release) ? Effect.succeed(release.value) : busy
    )
    // acquireRelease makes taking the lock and registering its release one uninterruptible step.
    const settled = yield* Effect.acquireRelease(attempt, (release) => release).pipe(
      Effect.retry({
        schedule: retrySchedule.pipe(Schedule.upTo({ duration: Duration.millis(remainingMs) })),
        while: (e) => e instanceof Busy
      }),
      Effect.as(Option.none<Settled>()),
      Effect.catch((e) => e instanceof Busy ? timeout : e instanceof Settled ? Effect.succeedSome(e) : Effect.fail(e))
    )
    const waitedMs = yield* waited
    return Option.match(settled, {
      onNone: (): Waited => ({ _tag: "Acquired", waitedMs }),
      onSome: (s): Waited => ({ _tag: "Settled", waitedMs, value: s.value })
    })
  })

  const withLock = Effect.fn("RefreshLock.withLock")(function*<A, E, R, E2 = never, R2 = never>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: WithLockOptions<A, E2, R2>
  ) {
    const waitTimeout = Duration.fromInputUnsafe(options?.waitTimeout ?? defaultWaitTimeout)
    const start = yield* Clock.currentTimeMillis
    yield* Effect.annotateCurrentSpan({ "lock.key": key, "lock.backend": backend.name })
    // The caller's effect keeps its own Scope (if it needs one): only the lock lives in ours.
    return yield* Effect.scopedWith((scope) =>
      acquire(key, waitTimeout, start, options?.whileBusy).pipe(
        Scope.provide(scope),
        // The wait is a child of its own, so a trace shows it apart from the work done under the lock.
        Effect.tap((w) => Effect.annotateCurrentSpan({ "lock.wait_ms": w.waitedMs, "lock.outcome": w._tag === "Acquired" ? "acquired" : "settled" })),
        Effect.withSpan("RefreshLock.acquire", { attributes: { "lock.backend": backend.name } }),
        Effect.tapError((e) =>
          e instanceof RefreshLockError
            ? Effect.andThen(
              Effect.annotateCurrentSpan(
                e.reason._tag === "Timeout"
                  ? { "lock.outcome": "timeout", "lock.wait_ms": e.reason.waitedMs }
                  : { "lock.outcome": "unavailable" }
              ),
              Metrics.lockWaited(
                e.reason._tag === "Timeout" ? "timeout" : "unavailable",
                e.reason._tag === "Timeout" ? e.reason.waitedMs : 0
              )
            )
            : Effect.void
        ),
        Effect.flatMap((w): Effect.Effect<A, E, R> =>
          Effect.andThen(
            Effect.andThen(
              Effect.annotateCurrentSpan({ "lock.outcome": w._tag === "Acquired" ? "acquired" : "settled", "lock.wait_ms": w.waitedMs }),
              Metrics.lockWaited(w._tag === "Acquired" ? "acquired" : "settled", w.waitedMs)
            ),
            // A settled wait's value came from `whileBusy`, which the options type as A.
            w._tag === "Acquired" ? effect : Effect.succeed(w.value as A)
          )
        )
      )
    )
  })

  return RefreshLock.of({
    backend: backend.name,
    withLock,
    inspect: Effect.fn("RefreshLock.inspect")(function*(key: string) {
      return yield* backend.inspect(key)
    })
  })
})

/** The name of the lock directory under the storage directory. */
export const lockDirectoryName = "locks"

/** The lock file of `key` under a storage directory. */
export const lockFileOf = (path: Pick<Path.Path, "join">, storageDirectory: string, key: string): string =>
  path.join(storageDirectory, lockDirectoryName, `${fileKeyOf(key)}.lock`)

/**
 * Locks across processes of one machine: one never-written SQLite database
 * per key under `<storageDirectory>/locks`, the holders in that directory's
 * owner book (`internal/FileLock.ts`).
 */
export const layerFile: Layer.Layer<RefreshLock, never, UserContext | FileSystem.FileSystem | Path.Path> = Layer.effect(
  RefreshLock,
  Effect.gen(function*() {
    const user = yield* UserContext
    const path = yield* Path.Path
    const files = yield* FileLock.make(path.join(user.storageDirectory, lockDirectoryName))
    const unavailable = (key: string) => (e: SqliteLock.Failure) =>
      new RefreshLockError({ key, reason: { _tag: "Unavailable", detail: e.detail } })
    const fileOf = (key: string) => lockFileOf(path, user.storageDirectory, key)
    return yield* make({
      name: "file",
      tryAcquire: (key, owner) => files.tryAcquire(fileOf(key), key, owner).pipe(Effect.mapError(unavailable(key))),
      inspect: (key) =>
        files.inspect(fileOf(key), key).pipe(
          Effect.map((found): LockInfo => ({ key, ...found, location: Option.some(fileOf(key)) })),
          Effect.mapError(unavailable(key))
        )
    })
  })
)

/** Serializes the fibers of this process only: for the memory store and tests. */
export const layerMemory: Layer.Layer<RefreshLock> = Layer.effect(
  RefreshLock,
  Effect.gen(function*() {
    const holders = yield* Ref.make(new Map<string, Holder>())
    const record = (key: string, holder: Holder) => Ref.update(holders, (m) => new Map(m).set(key, holder))
    return yield* make({
      name: "memory",
      // The in-process queue already excludes every other holder: the attempt only records the owner.
      tryAcquire: (key, owner) =>
        Effect.as(
          record(key, { ...owner, releasedAt: Option.none() }),
          Option.some(Effect.flatMap(DateTime.now, (at) => record(key, { ...owner, releasedAt: Option.some(at) })))
        ),
      inspect: (key) =>
        Effect.map(Ref.get(holders), (m) => {
          const last = Option.fromUndefinedOr(m.get(key))
          return {
            key,
            held: Option.match(last, { onNone: () => false, onSome: (h) => Option.isNone(h.releasedAt) }),
            lastHolder: last,
            location: Option.none()
          }
        })
    })
  })
)

/** True for the ExperimentalWarning Node prints when `node:sqlite` loads (see `internal/SqliteLock.ts`). */
export const isSqliteExperimentalWarning = SqliteLock.isSqliteExperimentalWarning
