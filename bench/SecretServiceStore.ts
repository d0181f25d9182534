/**
 * Benchmark 7, Secret Service rows: store `put` and `get` on the keyring
 * backend over a real Secret Service (gnome-keyring), against the raw call
 * underneath: `@napi-rs/keyring`'s `AsyncEntry.setPassword` /
 * `getPassword` of the same JSON, which is what the store's Linux backend
 * calls (its `put` also seals nothing, so the difference is ours: the
 * index entry, Schema encode/decode, the timeout, the span).
 *
 * The Secret Service is a private one (a D-Bus session bus and an unlocked
 * gnome-keyring in a temporary HOME, `test/support/SecretService.ts`),
 * never the developer's own keyring. libdbus reads the bus address once per
 * process, so this runs before anything else in the process touches a
 * keyring; when gnome-keyring is not installed, the rows are skipped with a
 * note (Debian: gnome-keyring dbus libsecret-tools, as `.ci/run` installs).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { Effect, Exit, Schema, Scope } from "effect"
import * as Keyring from "../src/Keyring.js"
import * as TokenStore from "../src/TokenStore.js"
import * as KeyringFixtures from "../test/support/KeyringFixtures.js"
import * as SecretService from "../test/support/SecretService.js"
import * as Fixtures from "./Fixtures.js"
import { median, now, progress, type Row } from "./Measure.js"

const runs = 5
const puts = 40
const gets = 200

/** Runs the rows, or returns none with a printed note when no Secret Service can start here. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  const previous = process.env["DBUS_SESSION_BUS_ADDRESS"]
  const scope = Effect.runSync(Scope.make())
  const started = await Effect.runPromiseExit(Scope.provide(SecretService.start, scope))
  if (Exit.isFailure(started)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    progress("store: Secret Service rows skipped: a private gnome-keyring could not start (install gnome-keyring dbus libsecret-tools)")
    return []
  }
  process.env["DBUS_SESSION_BUS_ADDRESS"] = started.value.address
  const directory = Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "mts-bench-ss-"))
  try {
    // The store as a new process opens it (the tests' opener), on the native keyring.
    const store = await Effect.runPromise(
      KeyringFixtures.openStore(Keyring.layerNative({ timeoutMs: Keyring.defaultTimeoutMs }), directory, `bench@host:${process.getuid?.() ?? 0}`)
    )
    const { AsyncEntry } = await import("@napi-rs/keyring")
    const records = await Effect.runPromise(
      Effect.forEach(Array.from({ length: puts }, (_, i) => i), (i) => Fixtures.record({ provider: `bench-${i}`, expiresInSeconds: 3600 }))
    )
    // The same secret the store writes: the record's JSON.
    const json = JSON.stringify(Schema.encodeSync(Schema.toCodecJson(TokenStore.SessionRecord))(records[0]!))
    const raw = new AsyncEntry("magictunnel-bench-raw", "raw")

    const msPer = async (ops: number, body: () => Promise<void>) => {
      const start = now()
      await body()
      return ((now() - start) * 1000) / ops
    }
    const oursPut = () => msPer(puts, () => Effect.runPromise(Effect.forEach(records, store.put, { discard: true })))
    const rawPut = () =>
      msPer(puts, async () => {
        for (let i = 0; i < puts; i++) await raw.setPassword(json)
      })
    const oursGet = () =>
      msPer(gets, () => Effect.runPromise(Effect.forEach(Array.from({ length: gets }, (_, i) => records[i % puts]!.id), store.get, { discard: true })))
    const rawGet = () =>
      msPer(gets, async () => {
        for (let i = 0; i < gets; i++) if ((await raw.getPassword()) === null) throw new Error("raw entry vanished")
      })

    progress("store: Secret Service (private gnome-keyring): measuring")
    await oursPut()
    await rawPut()
    const putOurs: Array<number> = [], putRaw: Array<number> = [], getOurs: Array<number> = [], getRaw: Array<number> = []
    for (let r = 0; r < runs; r++) {
      if (r % 2 === 0) {
        putOurs.push(await oursPut())
        putRaw.push(await rawPut())
        getOurs.push(await oursGet())
        getRaw.push(await rawGet())
      } else {
        putRaw.push(await rawPut())
        putOurs.push(await oursPut())
        getRaw.push(await rawGet())
        getOurs.push(await oursGet())
      }
    }
    await raw.deletePassword()
    return [
      {
        name: "store.put, keyring (Secret Service)",
        ours: { value: median(putOurs), unit: "us/op" },
        baseline: { value: median(putRaw), unit: "us/op" },
        baselineName: "@napi-rs/keyring AsyncEntry.setPassword of the same JSON (one D-Bus round trip to gnome-keyring)",
        note: `${puts} puts in a row, median of ${runs}; ours also writes the index entry (a file, fsynced: for a keyring it is the only list) and encodes with Schema`,
        extra: { oursUs: putOurs, baselineUs: putRaw }
      },
      {
        name: "store.get, keyring (Secret Service)",
        ours: { value: median(getOurs), unit: "us/op" },
        baseline: { value: median(getRaw), unit: "us/op" },
        baselineName: "@napi-rs/keyring AsyncEntry.getPassword (one D-Bus round trip to gnome-keyring)",
        note: `${gets} gets in a row, median of ${runs}; ours: the same call + Schema decode, under a timeout, one span`,
        extra: { oursUs: getOurs, baselineUs: getRaw }
      }
    ]
  } finally {
    if (previous === undefined) delete process.env["DBUS_SESSION_BUS_ADDRESS"]
    else process.env["DBUS_SESSION_BUS_ADDRESS"] = previous
    Fs.rmSync(directory, { recursive: true, force: true })
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
