/**
 * Worker processes for the hardening tests: an esbuild bundle per worker
 * script (a child then starts in about 0.15 s instead of about 1 s through
 * tsx, which matters for hundreds of kills on two cores), and a handle on a
 * running worker whose stdout lines can be awaited and which can be killed.
 */
import { type ChildProcessWithoutNullStreams, spawn, type SpawnOptions } from "node:child_process"
import { Data, Effect } from "effect"
import * as WorkerBundle from "../WorkerBundle.js"

export const repoRoot = WorkerBundle.repoRoot

/** Bundles `test/support/hardening/<name>.ts` into a temp directory; returns the bundle's path. */
export const bundle = (name: string): Promise<string> => WorkerBundle.bundle(`test/support/hardening/${name}.ts`)

export class WorkerError extends Data.TaggedError("WorkerError")<{ readonly message: string }> {}

/** A running worker. */
export interface Worker {
  readonly child: ChildProcessWithoutNullStreams
  readonly lines: () => ReadonlyArray<string>
  readonly output: () => string
  readonly exited: Promise<void>
}

/** Starts `node <bundle> ...args` with `env` added to this process's environment. */
export const start = (
  bundlePath: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {},
  options: Pick<SpawnOptions, "uid" | "gid"> = {}
): Worker => {
  const child = spawn(process.execPath, [bundlePath, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
    ...options
  }) as ChildProcessWithoutNullStreams
  child.stdin.on("error", () => {}) // EPIPE from a worker that was killed: expected
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d) => (stdout += d))
  child.stderr.on("data", (d) => (stderr += d))
  // "close": after the exit and after stdout is drained, so no line printed before a kill is missed.
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()))
  return {
    child,
    lines: () => stdout.split("\n").filter((l) => l.length > 0),
    output: () => `${stdout}\n${stderr}`,
    exited
  }
}

/** Waits (bounded) until the worker printed a line satisfying `predicate`; fails if it exits first. */
export const waitForLine = (w: Worker, predicate: (line: string) => boolean, what: string, timeoutMs = 30_000) =>
  Effect.callback<string, WorkerError>((resume) => {
    const check = () => {
      const line = w.lines().find(predicate)
      if (line !== undefined) resume(Effect.succeed(line))
      else if (w.child.exitCode !== null || w.child.signalCode !== null) {
        resume(Effect.fail(new WorkerError({ message: `worker exited before ${what}: ${w.output()}` })))
      }
    }
    w.child.stdout.on("data", check)
    w.child.on("exit", check)
    check()
    return Effect.sync(() => {
      w.child.stdout.off("data", check)
      w.child.off("exit", check)
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () => Effect.fail(new WorkerError({ message: `no ${what} from worker within ${timeoutMs} ms: ${w.output()}` }))
    })
  )

/** SIGKILLs the worker and waits until it is gone. */
export const kill = (w: Worker) =>
  Effect.promise(() => {
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL")
    return w.exited
  })

/** Waits for the worker to exit by itself (bounded). */
export const exit = (w: Worker, timeoutMs: number) =>
  Effect.promise(() => w.exited).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () => Effect.fail(new WorkerError({ message: `worker did not exit within ${timeoutMs} ms: ${w.output()}` }))
    }),
    Effect.as(w.child.exitCode)
  )
