/**
 * One of the eight processes of the contention test. Until its deadline it
 * picks operations at random on sessions shared with the other workers and
 * on its own: forced refreshes of the shared grants against the real server
 * (one refresh per grant at a time across processes, or a reuse of another
 * process's), token reads, read-after-write puts and removes of its own
 * session, and puts and removes of one scratch session every worker writes.
 * Every read must give a record that opens (never Corrupted); its own
 * session must always read back what it last wrote (no lost update).
 *
 *   contention-worker <index> <duration ms> <shared id>...
 *
 * Prints "ready", then one JSON line of counts and any failures at the end.
 * Configuration from MAGICTUNNEL_CONFIG_PATH and the key from
 * MAGICTUNNEL_TOKEN_ENCRYPTION_KEY, as a real process.
 */
import { Effect, Exit, Redacted } from "effect"
import * as RefreshLock from "../../../src/RefreshLock.js"
import * as Sessions from "../../../src/Sessions.js"
import * as TokenStore from "../../../src/TokenStore.js"
import { processConfig, stack } from "../SessionsStack.js"

const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: Array<unknown>) =>
  RefreshLock.isSqliteExperimentalWarning(warning, rest[0])
    ? undefined
    : (emitWarning as (...args: Array<unknown>) => void)(warning, ...rest)) as typeof process.emitWarning

const [indexArg, durationArg, ...shared] = process.argv.slice(2)
const index = Number(indexArg)
const duration = Number(durationArg)

const counts = {
  ops: 0,
  refreshed: 0,
  reused: 0,
  fresh: 0,
  tokens: 0,
  ownPuts: 0,
  ownRemoves: 0,
  scratchPuts: 0,
  scratchRemoves: 0,
  lists: 0
}
const failures: Array<string> = []
let ownGeneration = 0
let ownExists = false

const program = Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  const store = yield* TokenStore.TokenStore
  const ownId = `own-${index}`
  const template = (id: string, generation: number, tag: string) =>
    TokenStore.newRecord({
      id,
      provider: "scratch",
      clientId: "c",
      scopes: [],
      tokenType: "Bearer",
      accessToken: Redacted.make(`at-${tag}-${generation}`)
    }).pipe(Effect.map((r) => new TokenStore.SessionRecord({ ...r, generation })))
  const fail = (what: string) => Effect.sync(() => void failures.push(what))
  const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(Math.random() * xs.length)]!

  process.stdout.write("ready\n")
  const deadline = Date.now() + duration
  while (Date.now() < deadline) {
    counts.ops++
    const r = Math.random()
    if (r < 0.3) {
      const exit = yield* Effect.exit(sessions.refresh(pick(shared), { force: true }))
      if (Exit.isFailure(exit)) yield* fail(`refresh: ${String(Exit.isFailure(exit) && exit.cause)}`)
      else if (exit.value._tag === "Refreshed") counts.refreshed++
      else if (exit.value._tag === "Reused") counts.reused++
      else if (exit.value._tag === "Fresh") counts.fresh++
      else yield* fail(`refresh outcome ${exit.value._tag}`)
    } else if (r < 0.5) {
      const exit = yield* Effect.exit(sessions.getAccessToken(pick(shared)))
      if (Exit.isFailure(exit)) yield* fail(`token: ${String(exit.cause)}`)
      else counts.tokens++
    } else if (r < 0.7) {
      ownGeneration++
      yield* store.put(yield* template(ownId, ownGeneration, ownId))
      ownExists = true
      counts.ownPuts++
      const back = yield* store.get(ownId)
      if (back.generation !== ownGeneration || Redacted.value(back.accessToken!) !== `at-${ownId}-${ownGeneration}`) {
        yield* fail(`own session read back generation ${back.generation}, wrote ${ownGeneration}`)
      }
    } else if (r < 0.75) {
      yield* store.remove(ownId)
      ownExists = false
      counts.ownRemoves++
      const back = yield* Effect.exit(store.get(ownId))
      if (Exit.isSuccess(back)) yield* fail("own session still there after remove")
    } else if (r < 0.9) {
      const generation = Math.floor(Math.random() * 1000)
      yield* store.put(yield* template("scratch", generation, `w${index}`))
      counts.scratchPuts++
      const back = yield* Effect.exit(store.get("scratch"))
      if (Exit.isFailure(back)) {
        const e = back.cause.reasons.find((x) => x._tag === "Fail")
        const reason = e?._tag === "Fail" ? (e.error as TokenStore.TokenStoreError).reason._tag : "defect"
        if (reason !== "NotFound") yield* fail(`scratch read: ${reason}`)
      } else if (!/^at-w\d+-\d+$/.test(Redacted.value(back.value.accessToken!))) {
        yield* fail("scratch read a record of no writer")
      }
    } else if (r < 0.97) {
      yield* store.remove("scratch")
      counts.scratchRemoves++
    } else {
      const listed = yield* store.list
      counts.lists++
      for (const m of listed) if (m.state === "corrupted") yield* fail(`listed ${m.id} as corrupted`)
    }
  }
}).pipe(
  Effect.catchCause((cause) => Effect.sync(() => void failures.push(`worker died: ${String(cause)}`))),
  Effect.provide(stack(processConfig))
)

Effect.runPromise(program).then(() => {
  process.stdout.write(`${JSON.stringify({ index, counts, failures: failures.slice(0, 20), ownGeneration, ownExists })}\n`)
  process.exit(0)
})
