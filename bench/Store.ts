/**
 * Benchmark: one store `put` and one store `get`, on each backend this
 * machine has, against the raw operation underneath.
 *
 * - memory (`TokenStore.layerMemory`): against `Map.set` / `Map.get` of the
 *   same record in a plain JS loop.
 * - encrypted file (the real stack of `Fixtures.environment`, session
 *   directory on disk in the OS temp dir, where fsync costs what it costs
 *   users): `put` against one atomic write done by hand with `node:fs` and
 *   `node:crypto`: AES-256-GCM seal of the record's JSON, write to a temp
 *   file, fsync, close, rename over the target, fsync of the directory.
 *   (Our `put` writes the record that way in the store's worker thread,
 *   `src/internal/FileWorker.ts`, which a busy store uses, then checks that
 *   its index entry is current, plus encoding with `Schema`; the note says
 *   so.) `get` against
 *   `readFileSync` + the same AES-256-GCM open + `JSON.parse` of the file
 *   the store wrote (`RawRecords.rawOpen`), and again against the same with
 *   the callback `fs.readFile` (the floor for a read that does not block).
 * - Secret Service (`SecretServiceStore.ts`): the keyring store on a private
 *   gnome-keyring started for the run, against the `@napi-rs/keyring` call
 *   underneath; skipped with a note where gnome-keyring is not installed.
 *
 * Each figure is a median of runs, ours and the baseline alternating.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { Effect, ManagedRuntime } from "effect"
import * as TokenStore from "../src/TokenStore.js"
import { UserContext } from "../src/UserContext.js"
import * as Fixtures from "./Fixtures.js"
import { median, now, progress, type Row } from "./Measure.js"
import { rawOpen, recordFiles, recordSuffix } from "./RawRecords.js"
import * as SecretServiceStore from "./SecretServiceStore.js"

const runs = 7
const memoryOps = 20_000
const filePuts = 30
const fileGets = 1000
const provider = "bench"

/** Microseconds per op of `ours` and `baseline`, each doing `ops` ops: medians of {@link runs}, alternating order. */
const pair = async (ops: number, ours: () => unknown, baseline: () => unknown) => {
  const time = async (f: () => unknown) => {
    const start = now()
    await f()
    return ((now() - start) * 1000) / ops
  }
  await ours()
  await baseline()
  const a: Array<number> = []
  const b: Array<number> = []
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      a.push(await time(ours))
      b.push(await time(baseline))
    } else {
      b.push(await time(baseline))
      a.push(await time(ours))
    }
  }
  return { ours: median(a), baseline: median(b), oursSamples: a, baselineSamples: b }
}

const memoryRows = async (): Promise<ReadonlyArray<Row>> => {
  progress("store: memory")
  const runtime = ManagedRuntime.make(TokenStore.layerMemory)
  try {
    const { store, record } = await runtime.runPromise(
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const record = yield* Fixtures.record({ provider, expiresInSeconds: 3600 })
        yield* store.put(record)
        return { store, record }
      })
    )
    const map = new Map<string, TokenStore.SessionRecord>([[record.id, record]])
    let found = 0
    const put = await pair(
      memoryOps,
      () =>
        runtime.runPromise(Effect.gen(function*() {
          for (let i = 0; i < memoryOps; i++) yield* store.put(record)
        })),
      () => {
        for (let i = 0; i < memoryOps; i++) map.set(record.id, record)
      }
    )
    const get = await pair(
      memoryOps,
      () =>
        runtime.runPromise(Effect.gen(function*() {
          for (let i = 0; i < memoryOps; i++) if ((yield* store.get(record.id)) === record) found++
        })),
      () => {
        for (let i = 0; i < memoryOps; i++) if (map.get(record.id) === record) found++
      }
    )
    if (found === 0) throw new Error("memory store: no record found")
    const baselineName = "Map.set / Map.get of the same record (plain JS loop)"
    return [
      {
        name: "store.put, memory",
        ours: { value: put.ours, unit: "us/op" },
        baseline: { value: put.baseline, unit: "us/op" },
        baselineName,
        note: `${memoryOps} puts in one Effect; copy-on-write Map in a Ref`,
        extra: { oursUs: put.oursSamples, baselineUs: put.baselineSamples }
      },
      {
        name: "store.get, memory",
        ours: { value: get.ours, unit: "us/op" },
        baseline: { value: get.baseline, unit: "us/op" },
        baselineName,
        note: `${memoryOps} gets in one Effect`,
        extra: { oursUs: get.oursSamples, baselineUs: get.baselineSamples }
      }
    ]
  } finally {
    await runtime.dispose()
  }
}

const fileRows = async (): Promise<ReadonlyArray<Row>> => {
  progress("store: encrypted file (on disk)")
  const env = await Fixtures.environment([Fixtures.offlineProvider(provider)], { medium: "disk" })
  try {
    const { runtime } = env
    const { store, record, namespace, storageDirectory } = await runtime.runPromise(
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const record = yield* Fixtures.record({ provider, expiresInSeconds: 3600 })
        yield* store.put(record)
        const { namespace, storageDirectory } = yield* UserContext
        return { store, record, namespace, storageDirectory }
      })
    )
    const name = recordFiles(storageDirectory)[0]
    if (name === undefined) throw new Error(`no record file in ${storageDirectory}`)
    const file = NodePath.join(storageDirectory, name)
    const fileKey = name.slice(0, -recordSuffix.length)

    // The raw write: the same plaintext size, sealed the same way, written atomically.
    const plaintext = Buffer.from(JSON.stringify(JSON.parse(rawOpen(Fs.readFileSync(file), env.key, namespace, fileKey).toString("utf8"))))
    const rawDirectory = NodePath.join(env.directory, "raw")
    Fs.mkdirSync(rawDirectory, { recursive: true })
    const rawTarget = NodePath.join(rawDirectory, `raw${recordSuffix}`)
    const rawTemp = NodePath.join(rawDirectory, `.raw${recordSuffix}.tmp`)
    const rawPut = () => {
      const nonce = Crypto.randomBytes(12)
      const cipher = Crypto.createCipheriv("aes-256-gcm", env.key, nonce, { authTagLength: 16 })
      cipher.setAAD(Buffer.from(`magictunnel-session/v1\0${namespace}\0raw`, "utf8"))
      const sealed = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
      const fd = Fs.openSync(rawTemp, "w", 0o600)
      Fs.writeSync(fd, sealed)
      Fs.fsyncSync(fd)
      Fs.closeSync(fd)
      Fs.renameSync(rawTemp, rawTarget)
      const dir = Fs.openSync(rawDirectory, "r")
      Fs.fsyncSync(dir)
      Fs.closeSync(dir)
    }

    let found = 0
    const put = await pair(
      filePuts,
      () =>
        runtime.runPromise(Effect.gen(function*() {
          for (let i = 0; i < filePuts; i++) yield* store.put(record)
        })),
      () => {
        for (let i = 0; i < filePuts; i++) rawPut()
      }
    )
    const get = await pair(
      fileGets,
      () =>
        runtime.runPromise(Effect.gen(function*() {
          for (let i = 0; i < fileGets; i++) if ((yield* store.get(record.id)).id === record.id) found++
        })),
      () => {
        for (let i = 0; i < fileGets; i++) {
          const parsed = JSON.parse(rawOpen(Fs.readFileSync(file), env.key, namespace, fileKey).toString("utf8")) as { id: string }
          if (parsed.id === record.id) found++
        }
      }
    )
    // The same read with the callback fs.readFile (what a library that must not block the event loop
    // pays): ours measured again beside it, so each row compares runs made at the same moments.
    const readAsync = () =>
      new Promise<Buffer>((resolve, reject) => Fs.readFile(file, (e, data) => (e === null ? resolve(data) : reject(e))))
    const getAsync = await pair(
      fileGets,
      () =>
        runtime.runPromise(Effect.gen(function*() {
          for (let i = 0; i < fileGets; i++) if ((yield* store.get(record.id)).id === record.id) found++
        })),
      async () => {
        for (let i = 0; i < fileGets; i++) {
          const parsed = JSON.parse(rawOpen(await readAsync(), env.key, namespace, fileKey).toString("utf8")) as { id: string }
          if (parsed.id === record.id) found++
        }
      }
    )
    if (found === 0) throw new Error("file store: no record found")
    return [
      {
        name: "store.put, encrypted file (disk)",
        ours: { value: put.ours, unit: "us/op" },
        baseline: { value: put.baseline, unit: "us/op" },
        baselineName: "AES-256-GCM seal + write temp + fsync + rename + dir fsync (node:fs sync, one file)",
        note: `${filePuts} puts in a row; ours: the record that way by the store's worker thread, then a check that its index entry is current (one stat; an unchanged entry is not rewritten)`,
        extra: { oursUs: put.oursSamples, baselineUs: put.baselineSamples }
      },
      {
        name: "store.get, encrypted file (disk, page-cached)",
        ours: { value: get.ours, unit: "us/op" },
        baseline: { value: get.baseline, unit: "us/op" },
        baselineName: "readFileSync + AES-256-GCM open + JSON.parse (plain JS loop)",
        note: `${fileGets} gets in a row; ours: a read by the store's worker thread (one message) + Envelope.open + Schema decode, one span`,
        extra: { oursUs: get.oursSamples, baselineUs: get.baselineSamples }
      },
      {
        name: "store.get, encrypted file, async baseline",
        ours: { value: getAsync.ours, unit: "us/op" },
        baseline: { value: getAsync.baseline, unit: "us/op" },
        baselineName: "callback fs.readFile + AES-256-GCM open + JSON.parse, one at a time",
        note: "does not block the event loop; fs.readFile makes 4 trips to the thread pool (open, fstat, read, close), ours one message to its worker",
        extra: { oursUs: getAsync.oursSamples, baselineUs: getAsync.baselineSamples }
      }
    ]
  } finally {
    await env.close()
  }
}

/** Runs the benchmark: its rows. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  return [...(await memoryRows()), ...(await fileRows()), ...(await SecretServiceStore.run())]
}
