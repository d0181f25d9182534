/**
 * SqliteLock: an inter-process lock made of one SQLite write transaction.
 *
 * Node has no `flock`, but `node:sqlite` (built into Node 22.13+) does: a
 * connection that runs `BEGIN IMMEDIATE` takes SQLite's RESERVED lock, a POSIX
 * `fcntl` write lock on the database file (`LockFileEx` on Windows). The
 * kernel drops such locks when the process that holds them dies, even by
 * SIGKILL, so a lock never outlives its holder and no stale lock file can
 * block a later run; the next opener also rolls back the dead holder's journal.
 *
 * Every attempt is non-blocking (`timeout: 0`, never SQLite's busy handler,
 * which would block the event loop): it either holds the lock or reports
 * `Busy`, and the caller decides when to try again. Inside the transaction the
 * holder writes its owner row (pid, host, token, acquired at); the row is
 * committed on release, so readers see the last holder that released, never
 * an uncommitted current holder.
 *
 * Pitfall handled here: closing any descriptor of a file drops every fcntl
 * lock the process holds on it. SQLite shares descriptors between its own
 * connections, so only code outside SQLite must never open and close a lock
 * file that may be locked: the file is created in one synchronous step, when
 * it did not exist yet, and never opened otherwise.
 */
import * as Fs from "node:fs"
import type * as NodeSqlite from "node:sqlite"
import { Data, DateTime, Effect, Option, Schema } from "effect"

/** The `node:sqlite` module, loaded on first use (its load prints an ExperimentalWarning). */
export type Sqlite = typeof NodeSqlite

/** The lock database could not be used; retrying will not help until someone fixes it. */
export class Failure extends Data.TaggedError("SqliteLockFailure")<{ readonly detail: string }> {}

/** Another connection (this process or another) holds the lock. */
export class Busy extends Data.TaggedError("SqliteLockBusy")<{}> {}

/** Who takes a lock: written inside the lock transaction. */
export interface Owner {
  readonly pid: number
  readonly hostname: string
  /** Random per acquisition: tells two holdings by one process apart. */
  readonly token: string
  readonly acquiredAt: DateTime.Utc
}

/** The last committed owner of a lock file. */
export interface LastOwner extends Owner {
  /** When the owner released it (always set for a committed row). */
  readonly releasedAt: Option.Option<DateTime.Utc>
}

/** What a probe of a lock file found. */
export interface Probe {
  /** Some connection, in any process, holds the lock right now. */
  readonly held: boolean
  readonly lastOwner: Option.Option<LastOwner>
}

/** A held lock. Release it with `commit` (retried while `Busy`), then always `close`. */
export interface Held {
  /**
   * Records the release time and commits the owner row. `Busy` while another
   * connection is reading the file for an instant (COMMIT needs them gone);
   * the transaction then stays open and `commit` can be tried again.
   */
  readonly commit: (releasedAt: DateTime.Utc) => Effect.Effect<void, Busy | Failure>
  /** Closes the connection: rolls back anything uncommitted and unlocks. Never fails. */
  readonly close: Effect.Effect<void>
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

const messageOf = (e: unknown): string => e instanceof Error ? e.message : String(e)

// node:sqlite reports the SQLite result code as `errcode`; the low byte is the primary code.
const isBusy = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "errcode" in e && typeof e.errcode === "number" &&
  (e.errcode & 0xff) === SQLITE_BUSY

const schema = `CREATE TABLE IF NOT EXISTS owner (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  pid INTEGER NOT NULL,
  hostname TEXT NOT NULL,
  token TEXT NOT NULL,
  acquired_at INTEGER NOT NULL,
  released_at INTEGER
)`

const OwnerRow = Schema.Struct({
  pid: Schema.Number,
  hostname: Schema.String,
  token: Schema.String,
  acquired_at: Schema.Number,
  released_at: Schema.NullOr(Schema.Number)
})
const decodeOwnerRow = Schema.decodeUnknownOption(OwnerRow)

const closeQuietly = (db: NodeSqlite.DatabaseSync) => {
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
const ensureFile = (file: string): void => {
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
 * One non-blocking attempt to take the lock of `file`, creating the file
 * (0600) when missing. `Busy` when anyone else holds it.
 */
export const tryAcquire = (sqlite: Sqlite, file: string, owner: Owner): Effect.Effect<Held, Busy | Failure> =>
  Effect.suspend((): Effect.Effect<Held, Busy | Failure> => {
    let db: NodeSqlite.DatabaseSync
    try {
      ensureFile(file)
      db = new sqlite.DatabaseSync(file, { timeout: 0 })
    } catch (e) {
      return Effect.fail(new Failure({ detail: `cannot open lock file ${file}: ${messageOf(e)}` }))
    }
    try {
      db.exec("BEGIN IMMEDIATE")
    } catch (e) {
      closeQuietly(db)
      return isBusy(e)
        ? Effect.fail(new Busy())
        : Effect.fail(new Failure({ detail: `cannot lock ${file}: ${messageOf(e)}` }))
    }
    try {
      db.exec(schema)
      db.prepare(
        "INSERT OR REPLACE INTO owner (id, pid, hostname, token, acquired_at, released_at) VALUES (1, ?, ?, ?, ?, NULL)"
      ).run(owner.pid, owner.hostname, owner.token, DateTime.toEpochMillis(owner.acquiredAt))
    } catch (e) {
      closeQuietly(db)
      // Busy cannot happen under RESERVED, but costs nothing to treat as such. Any other failure means
      // a broken lock database (read-only, corrupted): refuse it rather than lock without an owner.
      return isBusy(e)
        ? Effect.fail(new Busy())
        : Effect.fail(new Failure({ detail: `cannot record the owner of ${file}: ${messageOf(e)}` }))
    }
    const held = db
    return Effect.succeed<Held>({
      commit: (releasedAt) =>
        Effect.suspend((): Effect.Effect<void, Busy | Failure> => {
          try {
            held.prepare("UPDATE owner SET released_at = ? WHERE id = 1").run(DateTime.toEpochMillis(releasedAt))
            held.exec("COMMIT")
            return Effect.void
          } catch (e) {
            return isBusy(e)
              ? Effect.fail(new Busy())
              : Effect.fail(new Failure({ detail: `cannot commit the owner of ${file}: ${messageOf(e)}` }))
          }
        }),
      close: Effect.sync(() => closeQuietly(held))
    })
  })

const readOwner = (db: NodeSqlite.DatabaseSync): Option.Option<LastOwner> => {
  let row: unknown
  try {
    row = db.prepare("SELECT pid, hostname, token, acquired_at, released_at FROM owner WHERE id = 1").get()
  } catch {
    // No table yet, or a holder is mid-commit: no committed owner to show.
    return Option.none()
  }
  return Option.map(decodeOwnerRow(row), (r) => ({
    pid: r.pid,
    hostname: r.hostname,
    token: r.token,
    acquiredAt: DateTime.makeUnsafe(r.acquired_at),
    releasedAt: r.released_at === null ? Option.none() : Option.some(DateTime.makeUnsafe(r.released_at))
  }))
}

/**
 * Whether `file` is locked now, and its last committed owner. Probing takes
 * the lock for an instant when it is free (a contender then sees `Busy` once
 * and retries). The caller checks that the file exists: probing creates it.
 */
export const probe = (sqlite: Sqlite, file: string): Effect.Effect<Probe, Failure> =>
  Effect.suspend((): Effect.Effect<Probe, Failure> => {
    let db: NodeSqlite.DatabaseSync
    try {
      db = new sqlite.DatabaseSync(file, { timeout: 0 })
    } catch (e) {
      return Effect.fail(new Failure({ detail: `cannot open lock file ${file}: ${messageOf(e)}` }))
    }
    try {
      let held: boolean
      try {
        db.exec("BEGIN IMMEDIATE")
        held = false
      } catch (e) {
        if (!isBusy(e)) return Effect.fail(new Failure({ detail: `cannot probe ${file}: ${messageOf(e)}` }))
        held = true
      }
      const lastOwner = readOwner(db)
      return Effect.succeed({ held, lastOwner })
    } finally {
      closeQuietly(db)
    }
  })
