/**
 * The file backend of `RefreshLock`: one never-written SQLite database per
 * lock key in a lock directory (0700; files 0600), taken with `BEGIN
 * IMMEDIATE` on pooled connections (`SqliteLock`), and the holders in that
 * directory's owner book (`LockOwners`). `node:sqlite` is loaded on first use,
 * so processes that never lock never print its warning.
 *
 * Failures are `SqliteLock.Failure` with a detail that names the file;
 * `RefreshLock` turns them into its `Unavailable` reason.
 */
import { DateTime, Effect, FileSystem, Option, Path, type Scope } from "effect"
import * as LockOwners from "./LockOwners.js"
import * as SqliteLock from "./SqliteLock.js"

/** What `inspect` finds for one lock file. */
export interface Inspected {
  /** Some connection, in any process, holds it now. */
  readonly held: boolean
  /** The key's row in the owner book: the current holder while held, else the last. */
  readonly lastHolder: Option.Option<LockOwners.Entry>
}

/** The backend over one lock directory. */
export interface FileLock {
  /** One non-blocking attempt: the release (which never fails), or None when someone else holds it. */
  readonly tryAcquire: (
    file: string,
    key: string,
    owner: LockOwners.Owner
  ) => Effect.Effect<Option.Option<Effect.Effect<void>>, SqliteLock.Failure>
  readonly inspect: (file: string, key: string) => Effect.Effect<Inspected, SqliteLock.Failure>
}

/** The backend of the lock files in `directory`; connections and the owner book close with the scope. */
export const make = Effect.fnUntraced(function*(directory: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const sqlite = yield* Effect.cached(SqliteLock.load)
  let opened: SqliteLock.Pool | undefined
  const pool = Effect.map(sqlite, (module) => (opened ??= SqliteLock.makePool(module)))
  yield* Effect.addFinalizer(() => opened === undefined ? Effect.void : opened.close)
  const owners = yield* LockOwners.make(sqlite, path.join(directory, LockOwners.fileName))

  // Checked until it exists once; an attempt that fails for another reason than Busy (the directory
  // removed since, say) makes the next one check again.
  let directoryReady = false
  const ensureDirectory = Effect.suspend(() =>
    directoryReady ? Effect.void : Effect.gen(function*() {
      if (!(yield* fs.exists(directory))) {
        yield* fs.makeDirectory(directory, { recursive: true, mode: 0o700 })
        // mkdir's mode is filtered by the umask.
        yield* fs.chmod(directory, 0o700)
      }
      directoryReady = true
    })
  ).pipe(
    Effect.mapError((e) => new SqliteLock.Failure({ detail: `cannot create lock directory ${directory}: ${e.message}` }))
  )

  const tryAcquire = (file: string, key: string, owner: LockOwners.Owner) =>
    Effect.gen(function*() {
      yield* ensureDirectory
      const held = yield* (yield* pool).tryAcquire(file).pipe(
        Effect.tapError((e) => Effect.sync(() => (directoryReady = e._tag === "SqliteLockBusy")))
      )
      yield* owners.acquired(key, owner)
      return Option.some(
        DateTime.now.pipe(
          Effect.flatMap((at) => owners.released(key, owner.token, at)),
          Effect.ensuring(held.release)
        )
      )
    }).pipe(Effect.catchTag("SqliteLockBusy", () => Effect.succeedNone))

  const inspect = (file: string, key: string) =>
    Effect.gen(function*() {
      // Probing a missing file would create it: a lock never taken is simply free.
      if (!(yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false)))) {
        return { held: false, lastHolder: Option.none() } satisfies Inspected
      }
      const held = yield* SqliteLock.isHeld(yield* sqlite, file)
      // A row without a release whose lock is free belonged to a holder that died holding it.
      return { held, lastHolder: yield* owners.read(key) } satisfies Inspected
    })

  return { tryAcquire, inspect } satisfies FileLock
}) satisfies (directory: string) => Effect.Effect<FileLock, never, FileSystem.FileSystem | Path.Path | Scope.Scope>
