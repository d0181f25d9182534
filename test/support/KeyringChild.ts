/**
 * A child process for the Secret Service tests: runs keyring store steps on
 * whatever D-Bus session its environment names (libdbus reads the address once
 * per process, so another bus needs another process) and prints one JSON line
 * per step: `{ step, ok, tag?, detail? }`.
 *
 * Input (env MTS_KEYRING_CHILD, JSON): `{ directory, namespace, timeoutMs, steps }`.
 * Steps: put, get, list, remove, health, lock (locks the default collection).
 */
import { execFileSync } from "node:child_process"
import { DateTime, Effect, Exit, Redacted } from "effect"
import * as Keyring from "../../src/Keyring.js"
import * as TokenStore from "../../src/TokenStore.js"
import { openStore } from "./KeyringFixtures.js"

interface Input {
  readonly directory: string
  readonly namespace: string
  readonly timeoutMs: number
  readonly steps: ReadonlyArray<string>
}

const input: Input = JSON.parse(process.env["MTS_KEYRING_CHILD"] ?? "{}")

const record = new TokenStore.SessionRecord({
  version: 1,
  id: "github",
  provider: "github",
  clientId: "client-123",
  scopes: ["openid"],
  tokenType: "Bearer",
  accessToken: Redacted.make("AT-child-secret"),
  state: "active",
  generation: 0,
  createdAt: DateTime.makeUnsafe(1_800_000_000_000),
  updatedAt: DateTime.makeUnsafe(1_800_000_000_000)
})

const lock = () => {
  const send = (...args: Array<string>) =>
    execFileSync("dbus-send", ["--session", "--print-reply", "--dest=org.freedesktop.secrets", ...args], {
      encoding: "utf8",
      timeout: 5000
    })
  const alias = /object path "([^"]+)"/.exec(
    send("/org/freedesktop/secrets", "org.freedesktop.Secret.Service.ReadAlias", "string:default")
  )?.[1]
  send("/org/freedesktop/secrets", "org.freedesktop.Secret.Service.Lock", `array:objpath:${alias}`)
}

const program = Effect.gen(function*() {
  const store = yield* openStore(
    Keyring.layerNative({ timeoutMs: input.timeoutMs }),
    input.directory,
    input.namespace
  )
  for (const step of input.steps) {
    const outcome = yield* Effect.exit<unknown, unknown, never>(
      step === "put"
        ? store.put(record)
        : step === "get"
        ? Effect.map(store.get("github"), (r) => r.id)
        : step === "list"
        ? Effect.map(store.list, (l) => l.map((m) => `${m.id}:${m.state}`).join(","))
        : step === "remove"
        ? store.remove("github")
        : step === "health"
        ? Effect.flatMap(store.health, (h) => h.available ? Effect.succeed(h.detail) : Effect.fail(h.detail))
        : step === "lock"
        ? Effect.sync(lock)
        : Effect.die(`unknown step ${step}`)
    )
    const line = Exit.isSuccess(outcome)
      ? { step, ok: true, detail: typeof outcome.value === "string" ? outcome.value : undefined }
      : (() => {
        const f = outcome.cause.reasons.find((r) => r._tag === "Fail")
        const e = f?._tag === "Fail" ? f.error : undefined
        return e instanceof TokenStore.TokenStoreError
          ? { step, ok: false, tag: e.reason._tag, detail: e.message }
          : { step, ok: false, tag: "Other", detail: String(e ?? outcome.cause) }
      })()
    process.stdout.write(JSON.stringify(line) + "\n")
  }
})

Effect.runPromise(Effect.exit(program)).then((exit) => {
  if (Exit.isFailure(exit)) process.stdout.write(JSON.stringify({ step: "open", ok: false, detail: String(exit.cause) }) + "\n")
  // A native call abandoned on timeout may still hold a pool thread: do not wait for it.
  process.exit(0)
})
