/**
 * One instance of a fleet, in its own process, for test/integration/Fleet.test.ts.
 * It composes Sessions as a real instance would (the YAML named by
 * `MAGICTUNNEL_CONFIG_PATH`: the Redis store and lock; the data key from
 * `MAGICTUNNEL_TOKEN_ENCRYPTION_KEY`) and answers commands, one per stdin line:
 *
 *   token <provider> <n>   n concurrent getAccessToken calls: {"tokens": [...]} or {"error", "message"}
 *   hold <session id>      takes the session's refresh lock and never lets go: prints {"holding": true}
 *   health                 the store's health probe: {"available": bool}
 *
 * It prints "ready" when its services are up.
 */
import { Effect, Redacted } from "effect"
import * as RefreshLock from "../../src/RefreshLock.js"
import * as Sessions from "../../src/Sessions.js"
import * as TokenStore from "../../src/TokenStore.js"
import { processConfig, stack } from "./FleetStack.js"

const say = (value: unknown) => Effect.sync(() => process.stdout.write(`${typeof value === "string" ? value : JSON.stringify(value)}\n`))

const program = Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  const lock = yield* RefreshLock.RefreshLock
  const store = yield* TokenStore.TokenStore
  const pending: Array<string> = []
  let wake: (() => void) | undefined
  let buffered = ""
  process.stdin.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    let i: number
    while ((i = buffered.indexOf("\n")) >= 0) {
      pending.push(buffered.slice(0, i).trim())
      buffered = buffered.slice(i + 1)
    }
    wake?.()
  })
  const nextLine = Effect.callback<string>((resume) => {
    const check = () => {
      const line = pending.shift()
      if (line !== undefined) {
        wake = undefined
        resume(Effect.succeed(line))
      }
    }
    wake = check
    check()
  })
  yield* say("ready")
  while (true) {
    const [command, arg, count] = (yield* nextLine).split(" ")
    if (command === "token") {
      const answer = yield* Effect.forEach(
        Array.from({ length: Number(count ?? "1") }),
        () => Effect.map(sessions.getAccessToken(arg ?? ""), Redacted.value),
        { concurrency: "unbounded" }
      ).pipe(
        Effect.map((tokens) => ({ tokens })),
        Effect.catch((e) => Effect.succeed({ error: e._tag, message: e.message }))
      )
      yield* say(answer)
    } else if (command === "hold") {
      yield* Effect.forkDetach(lock.withLock(arg ?? "", Effect.andThen(say({ holding: true }), Effect.never)))
    } else if (command === "health") {
      yield* say({ available: (yield* store.health).available })
    }
  }
})

Effect.runPromise(program.pipe(Effect.provide(stack(processConfig)))).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`fleet-worker failed: ${String(e)}\n`)
    process.exit(1)
  }
)
