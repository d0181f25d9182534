/**
 * Benchmark 3: startup recovery of 1,000, 3,000 and 10,000 stored sessions on the
 * encrypted file store. The sessions are written once per size, with the real
 * store, into a temporary directory (10 providers of 100, 300 or 1000 resource-bound sessions each,
 * with real token sizes); every access token is valid for an hour, so
 * recovery classifies them all `recovered` and no server is needed. The
 * directory is on tmpfs (`/dev/shm`) where there is one: the store fsyncs
 * every write, and seeding on a shared disk would take half a minute.
 *
 * Ours: `Recovery.run()` on the real stack (its real path: `store.list`,
 * which reads the index directory's names and has the store's worker thread
 * read every record in one message; then each session classified from that
 * verified listing, per provider, 4 providers and 8 sessions at a time),
 * repeated on the same store; and the first `Recovery.run()` of a store just
 * opened over the same directory (as at a process start: it starts the
 * worker). Also `store.list` alone, the part every listing pays.
 *
 * Baselines (`RawRecords.ts`): a plain loop over the same files with
 * `node:fs` and `node:crypto`: read each record, open the AES-256-GCM
 * envelope with the same key and the same additional data as
 * `src/internal/Envelope.ts`, `JSON.parse`, and count the sessions whose
 * expiry is ahead. Twice: with `readFileSync` (the floor, which blocks the
 * event loop for the whole scan), and with the callback `fs.readFile` 16 at
 * a time (the primitive the Effect `FileSystem` uses: what a library that
 * must not block pays for the same work). Reads come from memory in all of
 * them (the files were just written).
 *
 * Memory: peak heap and RSS above the start of a run (after a GC),
 * sampled every 2 ms (every 100 files in the synchronous baseline), in runs
 * of their own: the GC before a sampled run and the sampling timer slow
 * the run down (by about 70 ms at 1,000 sessions), so timed runs are never
 * sampled. RSS says little here: pages the warm-up runs grew are reused by
 * later runs.
 *
 * Then the parts of reading one session, each beside its plain counterpart
 * (`RecordParts.ts`): reading the file, opening the envelope, decoding.
 */
import * as Fs from "node:fs"
import { Effect, Layer } from "effect"
import * as Recovery from "../src/Recovery.js"
import * as TokenStore from "../src/TokenStore.js"
import { UserContext } from "../src/UserContext.js"
import * as Fixtures from "./Fixtures.js"
import { median, memorySampler, type MemoryCost, now, progress, type Row } from "./Measure.js"
import { rawScan, rawScanAsync, recordSuffix } from "./RawRecords.js"
import * as RecordParts from "./RecordParts.js"

const providers = 10
/** The store sizes measured, smallest first; the parts are measured at the largest. */
export const sizes = [1000, 3000, 10_000] as const
/** Timed runs of each; the median is reported. */
const runs = 3
/** Records written at once while seeding (each put fsyncs the record and its directory). */
const seedConcurrency = 32

/** One store size: medians in ms of ours and of both raw loops, for the chart. */
export interface Point {
  readonly sessions: number
  readonly oursMs: number
  /** The first recovery of a store just opened. */
  readonly openedMs: number
  readonly rawMs: number
  readonly rawAsyncMs: number
}

/** The points of the last run, for the chart. */
export let lastPoints: ReadonlyArray<Point> = []

/** Runs the benchmark at every size: its rows, or an error when the sessions did not all recover. */
export const run = async (): Promise<ReadonlyArray<Row>> => {
  const rows: Array<Row> = []
  const points: Array<Point> = []
  for (const size of sizes) {
    const measured = await runAt(size, size === sizes[sizes.length - 1])
    rows.push(...measured.rows)
    points.push(measured.point)
  }
  lastPoints = points
  return rows
}

/** Recovery of `sessions` stored sessions (10 providers); the parts too when `withParts`. */
const runAt = async (sessions: number, withParts: boolean): Promise<{ readonly rows: ReadonlyArray<Row>; readonly point: Point }> => {
  progress(`recovery: writing ${sessions} sessions with the file store`)
  const env = await Fixtures.environment(
    Array.from({ length: providers }, (_, p) => Fixtures.offlineProvider(`p${p}`)),
    { extend: (base) => Recovery.layer.pipe(Layer.provideMerge(base)), medium: "memory" }
  )
  try {
    const { runtime } = env
    const seedStart = now()
    const { namespace, storageDirectory } = await runtime.runPromise(
      Effect.gen(function*() {
        const store = yield* TokenStore.TokenStore
        const specs = Array.from({ length: sessions }, (_, i) => ({
          provider: `p${i % providers}`,
          resource: `https://api-${Math.floor(i / providers)}.bench.example/`
        }))
        yield* Effect.forEach(
          specs,
          (spec) => Effect.flatMap(Fixtures.record({ ...spec, expiresInSeconds: 3600 }), store.put),
          { concurrency: seedConcurrency, discard: true }
        )
        return yield* UserContext
      })
    )
    const seedSeconds = (now() - seedStart) / 1000
    const files = Fs.readdirSync(storageDirectory).filter((n) => n.endsWith(recordSuffix)).length
    if (files !== sessions) throw new Error(`${files} record files written, ${sessions} expected`)

    progress("recovery: measuring")
    const recover = Effect.gen(function*() {
      return yield* (yield* Recovery.Recovery).run()
    })
    const list = Effect.gen(function*() {
      return yield* (yield* TokenStore.TokenStore).list
    })

    const ours: Array<number> = []
    const listed: Array<number> = []
    const raw: Array<number> = []
    const rawAsync: Array<number> = []
    const ourMemory: Array<MemoryCost> = []
    const rawMemory: Array<MemoryCost> = []
    // Warm-up of both paths (JIT), untimed.
    await runtime.runPromise(recover)
    rawScan(storageDirectory, env.key, namespace, () => {})
    await rawScanAsync(storageDirectory, env.key, namespace)
    for (let i = 0; i < runs; i++) {
      {
        const start = now()
        const result = await rawScanAsync(storageDirectory, env.key, namespace)
        rawAsync.push(now() - start)
        if (result.valid !== sessions) throw new Error(`raw async scan: ${result.valid} valid sessions, ${sessions} expected`)
      }
      {
        const start = now()
        const result = rawScan(storageDirectory, env.key, namespace, () => {})
        raw.push(now() - start)
        if (result.valid !== sessions) throw new Error(`raw scan: ${result.valid} valid sessions, ${sessions} expected`)
      }
      {
        const start = now()
        const report = await runtime.runPromise(recover)
        ours.push(now() - start)
        if (report.recovered !== sessions) throw new Error(`Recovery.run: ${report.recovered} recovered, ${sessions} expected`)
      }
      {
        const start = now()
        const metadata = await runtime.runPromise(list)
        listed.push(now() - start)
        if (metadata.length !== sessions) throw new Error(`store.list: ${metadata.length} sessions, ${sessions} expected`)
      }
    }

    // The figures above are of a store that has recovered before in this process: its worker thread
    // (src/internal/FileWorker.ts) already runs. At a real start it does not: each of these runs opens
    // the store anew over the same directory, as a restarted process would (building the layers is not
    // timed), and its first Recovery.run starts the worker.
    const opened: Array<number> = []
    for (let i = 0; i < runs; i++) {
      const fresh = await Fixtures.environment<Layer.Success<typeof Recovery.layer> | Fixtures.Services>(
        Array.from({ length: providers }, (_, p) => Fixtures.offlineProvider(`p${p}`)),
        { extend: (base) => Recovery.layer.pipe(Layer.provideMerge(base)), over: env }
      )
      try {
        const start = now()
        const report = await fresh.runtime.runPromise(recover)
        opened.push(now() - start)
        if (report.recovered !== sessions) throw new Error(`Recovery.run (store just opened): ${report.recovered} recovered`)
      } finally {
        await fresh.close()
      }
    }

    for (let i = 0; i < runs; i++) {
      const rawSampler = memorySampler()
      rawScan(storageDirectory, env.key, namespace, rawSampler.sample)
      rawMemory.push(rawSampler.finish())
      const ourSampler = memorySampler()
      await runtime.runPromise(recover)
      ourMemory.push(ourSampler.finish())
    }

    if (withParts) progress("recovery: measuring the parts")
    const parts = withParts ? await RecordParts.measure(runtime, storageDirectory, env.key, namespace) : []

    const rawMs = median(raw)
    const baselineName = "readFileSync + AES-256-GCM open + JSON.parse per file (plain JS loop)"
    const count = sessions.toLocaleString("en")
    const point: Point = { sessions, oursMs: median(ours), openedMs: median(opened), rawMs, rawAsyncMs: median(rawAsync) }
    const rows: ReadonlyArray<Row> = [
      {
        name: `Recovery.run, ${count} sessions`,
        ours: { value: median(ours), unit: "ms" },
        baseline: { value: rawMs, unit: "ms" },
        baselineName,
        note: `all recovered; files on ${
          env.medium === "memory" ? "tmpfs" : "disk, page-cached"
        }`,
        extra: { oursMs: ours, rawMs: raw, rawAsyncMs: rawAsync, seedSeconds }
      },
      {
        name: `Recovery.run, ${count} sessions, async baseline`,
        ours: { value: median(ours), unit: "ms" },
        baseline: { value: median(rawAsync), unit: "ms" },
        baselineName: "the same loop with callback fs.readFile, 16 files in flight",
        note: "the I/O primitive of the Effect FileSystem; does not block the event loop"
      },
      {
        name: `Recovery.run, ${count} sessions, store just opened`,
        ours: { value: median(opened), unit: "ms" },
        baseline: { value: median(rawAsync), unit: "ms" },
        baselineName: "the same loop with callback fs.readFile, 16 files in flight",
        note: `the first recovery of a store opened anew (as at a process start): starts its worker thread; vs the synchronous loop x${
          (median(opened) / rawMs).toFixed(2)
        }`,
        extra: { openedMs: opened }
      },
      {
        name: `store.list, ${count} sessions`,
        ours: { value: median(listed), unit: "ms" },
        baseline: { value: rawMs, unit: "ms" },
        baselineName,
        note: "opens every record; reads only the names of the index files",
        extra: { listMs: listed }
      },
      {
        name: `Recovery.run, ${count} sessions, peak heap above start`,
        ours: { value: median(ourMemory.map((m) => m.peakHeapMiB)), unit: "MiB" },
        baseline: { value: median(rawMemory.map((m) => m.peakHeapMiB)), unit: "MiB" },
        baselineName: "the same plain JS loop",
        note: `peak RSS +${median(ourMemory.map((m) => m.peakRssMiB)).toFixed(1)} vs +${
          median(rawMemory.map((m) => m.peakRssMiB)).toFixed(1)
        } MiB (pages already grown by earlier runs are reused)`,
        extra: { ours: ourMemory, raw: rawMemory }
      },
      ...parts
    ]
    return { rows, point }
  } finally {
    await env.close()
  }
}
