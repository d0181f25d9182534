/**
 * SqliteLock: an inter-process lock made of one SQLite write transaction that
 * never writes.
 *
 * Node has no `flock`, but `node:sqlite` (built into Node 22.13+) does: a
 * connection that runs `BEGIN IMMEDIATE` takes SQLite's RESERVED lock, a POSIX
 * `fcntl` write lock on the database file (`LockFileEx` on Windows). The
 * kernel drops such locks when the process that holds them dies, even by
 * SIGKILL, so a lock never outlives its holder and no stale lock file can
 * block a later run.
 *
 * The transaction is only ever rolled back: nothing is written to the lock
 * file, so taking and releasing a lock costs no write and no fsync, and no
 * crash (of the process or of the machine) can leave the file damaged or
 * with a journal to replay. Who holds a lock is recorded elsewhere
 * (`LockOwners`), because that record may be lost without harm and the lock
 * may not.
 *
 * Every attempt is non-blocking (`timeout: 0`, never SQLite's busy handler,
 * which would block the event loop): it either holds the lock or reports
 * `Busy`, and the caller decides when to try again.
 *
 * Pitfall handled here: closing any descriptor of a file drops every fcntl
 * lock the process holds on it. SQLite shares descriptors between its own
 * connections, so only code outside SQLite must never open and close a lock
 * file that may be locked: the file is created in one synchronous step, when
 * it did not exist yet, and never opened otherwise.
 */
import * as Fs from "node:fs"
import type * as NodeSqlite from "node:sqlite"
import { Data, Effect } from "effect"

/** The `node:sqlite` module, loaded on first use (its load prints an ExperimentalWarning). */
export type Sqlite = typeof NodeSqlite

/** The lock database could not be used; retrying will not help until someone fixes it. */
export class Failure extends Data.TaggedError("SqliteLockFailure")<{ readonly detail: string }> {}

/** Another connection (this process or another) holds the lock. */
export class Busy extends Data.TaggedError("SqliteLockBusy")<{}> {}

/** A held lock. */
export interface Held {
  /** Rolls back the (empty) transaction, which unlocks, and keeps the connection for next time. Never fails. */
  readonly release: Effect.Effect<void>
}

/** Loads `node:sqlite`; `Failure` on a Node.js without it. */
export const load: Effect.Effect<Sqlite, Failure> = Effect.tryPromise({
  try: () => import("node:sqlite"),
  catch: (e) =>
    new Failure({
      detail: `node:sqlite is not available in Node.js ${process.version} (Node 22.13 or later is needed): ${messageOf(e)}`
    })
})

const SQLITE_BUSY = 5

/** The message of a thrown value. */
export const messageOf = (e: unknown): string => e instanceof Error ? e.message : String(e)

/** Whether `e` is SQLITE_BUSY. node:sqlite reports the result code as `errcode`; the low byte is the primary code. */
export const isBusy = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "errcode" in e && typeof e.errcode === "number" &&
  (e.errcode & 0xff) === SQLITE_BUSY

/** Closes a connection, ignoring errors: closing releases its locks even when it reports one. */
export const closeQuietly = (db: NodeSqlite.DatabaseSync) => {
  try {
    db.close()
  } catch {
    // Closing releases the locks even when it reports an error; nothing else to do.
  }
}

/**
 * Creates `file` 0600 when it does not exist. Synchronous on purpose: no other
 * fiber can open the new file with SQLite before this descriptor is closed.
 */
export const ensureFile = (file: string): void => {
  let fd: number
  try {
    fd = Fs.openSync(file, "wx", 0o600)
  } catch (e) {
    if (typeof e === "object" && e !== null && "code" in e && e.code === "EEXIST") return
    throw e
  }
  try {
    // The open mode is filtered by the umask; be exact. SQLite gives its journal the same mode.
    Fs.fchmodSync(fd, 0o600)
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * Opens a lock connection: non-blocking, and without a rollback journal. A
 * write transaction in SQLite's default mode creates, writes and deletes a
 * `-journal` file beside the database even when nothing is written (29
 * system calls per lock and release, a file created and removed in the lock
 * directory); with `journal_mode=OFF` taking and releasing the lock is 11,
 * all of them `fcntl` locks and checks. The locks themselves are the same, so
 * connections of either mode exclude each other.
 */
const openLock = (sqlite: Sqlite, file: string): NodeSqlite.DatabaseSync => {
  const db = new sqlite.DatabaseSync(file, { timeout: 0 })
  try {
    db.exec("PRAGMA journal_mode=OFF")
  } catch (e) {
    closeQuietly(db)
    throw e
  }
  return db
}

/** How many idle lock connections a {@link Pool} keeps open (least recently used ones are closed). */
export const idleConnections = 64

/**
 * Lock connections kept open between holdings, so taking a lock again costs
 * a `BEGIN IMMEDIATE` and no file open. Each remembers the inode it opened:
 * a lock file replaced or removed since (which nobody should do, see
 * docs/locking.md) is opened again rather than locked in its old inode.
 */
export interface Pool {
  /**
   * One non-blocking attempt to take the lock of `file`, creating the file
   * (0600) when missing. `Busy` when anyone else holds it.
   */
  readonly tryAcquire: (file: string) => Effect.Effect<Held, Busy | Failure>
  /** Closes the idle connections; a connection still held is closed on release. */
  readonly close: Effect.Effect<void>
}

interface Connection {
  readonly db: NodeSqlite.DatabaseSync
  readonly ino: number
}

const inodeOf = (file: string): number | undefined => Fs.statSync(file, { throwIfNoEntry: false })?.ino

/** A pool over `sqlite`. */
export const makePool = (sqlite: Sqlite, capacity: number = idleConnections): Pool => {
  // Insertion order is recency: the first entry is the least recently released.
  const idle = new Map<string, Connection>()
  let closed = false

  const keep = (file: string, connection: Connection) => {
    if (closed) return closeQuietly(connection.db)
    idle.set(file, connection)
    if (idle.size > capacity) {
      const [oldest] = idle
      if (oldest !== undefined) {
        idle.delete(oldest[0])
        closeQuietly(oldest[1].db)
      }
    }
  }

  const connect = (file: string): Connection => {
    const cached = idle.get(file)
    if (cached !== undefined) {
      idle.delete(file)
      if (inodeOf(file) === cached.ino) return cached
      closeQuietly(cached.db)
    }
    // Created only when missing: a failed exclusive create costs an exception per new connection.
    let ino = inodeOf(file)
    if (ino === undefined) {
      ensureFile(file)
      ino = inodeOf(file)
    }
    if (ino === undefined) throw new Error("the lock file disappeared as it was created")
    return { db: openLock(sqlite, file), ino }
  }

  return {
    tryAcquire: (file) =>
      Effect.suspend((): Effect.Effect<Held, Busy | Failure> => {
        let connection: Connection
        try {
          connection = connect(file)
        } catch (e) {
          return Effect.fail(new Failure({ detail: `cannot open lock file ${file}: ${messageOf(e)}` }))
        }
        try {
          connection.db.exec("BEGIN IMMEDIATE")
        } catch (e) {
          if (isBusy(e)) {
            keep(file, connection)
            return Effect.fail(new Busy())
          }
          closeQuietly(connection.db)
          return Effect.fail(new Failure({ detail: `cannot lock ${file}: ${messageOf(e)}` }))
        }
        return Effect.succeed<Held>({
          release: Effect.sync(() => {
            try {
              connection.db.exec("ROLLBACK")
            } catch {
              // A connection that cannot roll back is not reused; closing it unlocks.
              return closeQuietly(connection.db)
            }
            keep(file, connection)
          })
        })
      }),
    close: Effect.sync(() => {
      closed = true
      for (const connection of idle.values()) closeQuietly(connection.db)
      idle.clear()
    })
  }
}

/**
 * Whether some connection, in any process, holds the lock of `file` now.
 * Probing takes the lock for an instant when it is free (a contender then
 * sees `Busy` once and retries). The caller checks that the file exists:
 * probing creates it.
 */
export const isHeld = (sqlite: Sqlite, file: string): Effect.Effect<boolean, Failure> =>
  Effect.suspend((): Effect.Effect<boolean, Failure> => {
    let db: NodeSqlite.DatabaseSync
    try {
      db = openLock(sqlite, file)
    } catch (e) {
      return Effect.fail(new Failure({ detail: `cannot open lock file ${file}: ${messageOf(e)}` }))
    }
    try {
      db.exec("BEGIN IMMEDIATE")
      return Effect.succeed(false)
    } catch (e) {
      return isBusy(e) ? Effect.succeed(true) : Effect.fail(new Failure({ detail: `cannot probe ${file}: ${messageOf(e)}` }))
    } finally {
      closeQuietly(db)
    }
  })

/**
 * True for the ExperimentalWarning Node prints when `node:sqlite` loads, so the
 * CLI can hide exactly that one, e.g. by wrapping `process.emitWarning`:
 * `(w, ...rest) => isSqliteExperimentalWarning(w, rest[0]) ? undefined : original(w, ...rest)`.
 * Accepts both shapes: `emitWarning(message, type)` and the `warning` event's Error.
 */
export const isSqliteExperimentalWarning = (warning: string | Error, typeOrOptions?: unknown): boolean => {
  const type = typeof warning !== "string"
    ? warning.name
    : typeof typeOrOptions === "string"
    ? typeOrOptions
    : typeof typeOrOptions === "object" && typeOrOptions !== null && "type" in typeOrOptions
    ? typeOrOptions.type
    : undefined
  const message = typeof warning === "string" ? warning : warning.message
  return type === "ExperimentalWarning" && message.startsWith("SQLite is an experimental feature")
}
