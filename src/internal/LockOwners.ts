/**
 * LockOwners: the book of who holds, or last held, each cross-process lock of
 * a storage directory, for diagnostics (`RefreshLock.inspect`).
 *
 * One SQLite database per lock directory (`owners.db`, 0600), one row per
 * lock key. A holder writes its row right after taking the lock and stamps
 * `released_at` when it lets go, so a reader sees the current holder while
 * the lock is held, and the last one afterwards; a holder that died leaves its
 * row without `released_at`, and the lock itself (`SqliteLock`) says it is free.
 *
 * The book is kept apart from the lock files on purpose: it is written, the
 * locks are not. It runs in WAL mode with `synchronous=NORMAL`, so a commit
 * costs no fsync, a killed writer never damages it, and after a power loss it
 * is consistent (it may miss the last rows). Writing it is best effort: a row
 * that cannot be written within a few quick tries (another process is
 * writing, the file is damaged) is skipped, and a lock is never refused or
 * delayed for its sake. A book that does not open is moved aside
 * (`owners.db.corrupt-<ms>`) and started again: it holds nothing that matters.
 */
import * as Fs from "node:fs"
import type * as NodeSqlite from "node:sqlite"
import { Clock, DateTime, Effect, Option, Schedule, Schema, type Scope } from "effect"
import * as SqliteLock from "./SqliteLock.js"

/** Who takes a lock. */
export interface Owner {
  readonly pid: number
  readonly hostname: string
  /** Random per acquisition: tells two holdings by one process apart. */
  readonly token: string
  readonly acquiredAt: DateTime.Utc
}

/** A row of the book. */
export interface Entry extends Owner {
  /** None while held, or when the holder died holding it. */
  readonly releasedAt: Option.Option<DateTime.Utc>
}

/** The book of one lock directory. */
export interface LockOwners {
  /** Records `owner` as the holder of `key` (best effort). */
  readonly acquired: (key: string, owner: Owner) => Effect.Effect<void>
  /** Stamps the release of the holding `token` of `key` (best effort). */
  readonly released: (key: string, token: string, at: DateTime.Utc) => Effect.Effect<void>
  /** The row of `key`, if any. */
  readonly read: (key: string) => Effect.Effect<Option.Option<Entry>>
}

/** The book's file name in a lock directory. */
export const fileName = "owners.db"

/** Retries of a write that found another process writing the book: a few tries 1 ms apart, then it is skipped. */
export const busyRetrySchedule: Schedule.Schedule<number> = Schedule.spaced("1 millis").pipe(Schedule.upTo({ times: 5 }))

const schema = `CREATE TABLE IF NOT EXISTS owners (
  key TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  hostname TEXT NOT NULL,
  token TEXT NOT NULL,
  acquired_at INTEGER NOT NULL,
  released_at INTEGER
)`

const Row = Schema.Struct({
  pid: Schema.Number,
  hostname: Schema.String,
  token: Schema.String,
  acquired_at: Schema.Number,
  released_at: Schema.NullOr(Schema.Number)
})
const decodeRow = Schema.decodeUnknownOption(Row)

class Busy {
  readonly _tag = "Busy"
}

// SQLITE_CORRUPT and SQLITE_NOTADB: the file is not (or no longer) a usable database.
const isDamaged = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "errcode" in e && typeof e.errcode === "number" &&
  ((e.errcode & 0xff) === 11 || (e.errcode & 0xff) === 26)

/**
 * The book at `file`, opened on first use and closed with the scope. Never
 * fails: a book that cannot be used is logged once and left out.
 */
export const make = (sqlite: Effect.Effect<SqliteLock.Sqlite, SqliteLock.Failure>, file: string): Effect.Effect<LockOwners, never, Scope.Scope> =>
  Effect.gen(function*() {
    let db: NodeSqlite.DatabaseSync | undefined
    // Closed with the scope: a release that still runs afterwards writes nothing.
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        if (db !== undefined) SqliteLock.closeQuietly(db)
        db = undefined
      })
    )

    const openAt = (module: SqliteLock.Sqlite): NodeSqlite.DatabaseSync => {
      SqliteLock.ensureFile(file)
      const conn = new module.DatabaseSync(file, { timeout: 0 })
      try {
        conn.exec("PRAGMA journal_mode=WAL")
        conn.exec("PRAGMA synchronous=NORMAL")
        conn.exec(schema)
        return conn
      } catch (e) {
        SqliteLock.closeQuietly(conn)
        throw e
      }
    }

    // Opened on first use; `broken` after a failure that moving the file aside did not cure.
    let broken = false
    const connection: Effect.Effect<NodeSqlite.DatabaseSync | undefined> = Effect.suspend(() => {
      if (db !== undefined || broken || closed) return Effect.succeed(db)
      return Effect.gen(function*() {
        const module = yield* sqlite
        const first = yield* Effect.try({ try: () => openAt(module), catch: (e) => e }).pipe(Effect.result)
        if (first._tag === "Success") return first.success
        // Another process is setting the book up: use it next time.
        if (SqliteLock.isBusy(first.failure)) return undefined
        // Only a damaged file is moved aside; anything else (a missing or read-only directory) is reported.
        if (!isDamaged(first.failure)) return yield* Effect.fail(first.failure)
        const aside = `${file}.corrupt-${yield* Clock.currentTimeMillis}`
        yield* Effect.logWarning(
          `lock owner book ${file} is unusable (${SqliteLock.messageOf(first.failure)}); moved to ${aside}`
        )
        return yield* Effect.try(() => {
          Fs.renameSync(file, aside)
          return openAt(module)
        })
      }).pipe(
        Effect.tap((conn) => Effect.sync(() => (db = conn))),
        Effect.catchCause((cause) =>
          Effect.sync(() => (broken = true)).pipe(
            Effect.andThen(Effect.logWarning("lock owners are not recorded: the owner book cannot be opened", cause)),
            Effect.as(undefined)
          )
        )
      )
    })

    /** Runs `f` on the book, retrying while another process writes it; skipped when it keeps failing. */
    const use = <A>(what: string, f: (conn: NodeSqlite.DatabaseSync) => A): Effect.Effect<Option.Option<A>> =>
      Effect.flatMap(connection, (conn) =>
        conn === undefined ? Effect.succeedNone : Effect.try({
          try: () => f(conn),
          catch: (e) => SqliteLock.isBusy(e) ? new Busy() : e
        }).pipe(
          Effect.retry({ schedule: busyRetrySchedule, while: (e) => e instanceof Busy }),
          Effect.map(Option.some),
          Effect.catch((e) =>
            e instanceof Busy
              ? Effect.succeedNone
              : Effect.as(Effect.logWarning(`lock owner book ${file}: ${what} failed: ${SqliteLock.messageOf(e)}`), Option.none<A>())
          )
        ))

    // Statements are prepared once per connection: preparing costs more than running them.
    const statements = new WeakMap<NodeSqlite.DatabaseSync, {
      readonly acquired: NodeSqlite.StatementSync
      readonly released: NodeSqlite.StatementSync
      readonly read: NodeSqlite.StatementSync
    }>()
    const prepared = (conn: NodeSqlite.DatabaseSync) => {
      let found = statements.get(conn)
      if (found === undefined) {
        found = {
          acquired: conn.prepare(
            "INSERT OR REPLACE INTO owners (key, pid, hostname, token, acquired_at, released_at) VALUES (?, ?, ?, ?, ?, NULL)"
          ),
          released: conn.prepare("UPDATE owners SET released_at = ? WHERE key = ? AND token = ?"),
          read: conn.prepare("SELECT pid, hostname, token, acquired_at, released_at FROM owners WHERE key = ?")
        }
        statements.set(conn, found)
      }
      return found
    }

    return {
      acquired: (key, owner) =>
        Effect.asVoid(use("recording a holder", (conn) =>
          prepared(conn).acquired.run(key, owner.pid, owner.hostname, owner.token, DateTime.toEpochMillis(owner.acquiredAt)))),
      released: (key, token, at) =>
        Effect.asVoid(use("recording a release", (conn) =>
          prepared(conn).released.run(DateTime.toEpochMillis(at), key, token))),
      read: (key) =>
        Effect.map(
          use("reading", (conn) => prepared(conn).read.get(key)),
          (row) =>
            Option.flatMap(Option.flatMap(row, decodeRow), (r) =>
              Option.some<Entry>({
                pid: r.pid,
                hostname: r.hostname,
                token: r.token,
                acquiredAt: DateTime.makeUnsafe(r.acquired_at),
                releasedAt: r.released_at === null ? Option.none() : Option.some(DateTime.makeUnsafe(r.released_at))
              }))
        )
    } satisfies LockOwners
  })
