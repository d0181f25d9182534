/**
 * The parts of reading one stored session, each beside its plain
 * counterpart, per record over every record file of a directory: reading the
 * file (`ReadFile.readFile`, the store's reader, 16 at a time as `list` does,
 * against `readFileSync`), opening the envelope (`Envelope.open` against the
 * plain decipher) and decoding the record (`RecordCodec.decodeResult`, a
 * `Schema` decode, as `get` does, and `RecordCodec.decodeMetadata`, as
 * `list` does, each against `JSON.parse`).
 */
import * as Fs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Result } from "effect"
import * as Envelope from "../src/internal/Envelope.js"
import * as ReadFile from "../src/internal/ReadFile.js"
import * as RecordCodec from "../src/internal/RecordCodec.js"
import type * as Fixtures from "./Fixtures.js"
import { median, now, type Row } from "./Measure.js"
import { rawOpen, recordFiles, recordSuffix } from "./RawRecords.js"

/** Timed runs of each part (they are short). */
const partRuns = 7

/**
 * Microseconds per item of `ours` and of `baseline` over `items` items:
 * medians of {@link partRuns} runs each, after a warm-up, alternating which
 * goes first so that drift (GC, other processes) favours neither.
 */
const pairUsPerItem = async (items: number, ours: () => unknown, baseline: () => unknown) => {
  const time = async (f: () => unknown) => {
    const start = now()
    await f()
    return ((now() - start) * 1000) / items
  }
  await ours()
  await baseline()
  const a: Array<number> = []
  const b: Array<number> = []
  for (let i = 0; i < partRuns; i++) {
    if (i % 2 === 0) {
      a.push(await time(ours))
      b.push(await time(baseline))
    } else {
      b.push(await time(baseline))
      a.push(await time(ours))
    }
  }
  return { ours: median(a), baseline: median(b) }
}

/** Reading, opening and decoding every record of `directory`, each beside its plain counterpart: the breakdown rows. */
export const measure = async (
  runtime: Fixtures.Environment<Fixtures.Services>["runtime"],
  directory: string,
  key: Uint8Array,
  namespace: string
): Promise<ReadonlyArray<Row>> => {
  const names = recordFiles(directory)
  const files = names.map((n) => NodePath.join(directory, n))
  const fileKeys = names.map((n) => n.slice(0, -recordSuffix.length))
  const count = files.length

  const read = await pairUsPerItem(
    count,
    () =>
      runtime.runPromise(Effect.forEach(files, (f) => ReadFile.readFile(f), { concurrency: 16, discard: true })),
    () => {
      for (const f of files) Fs.readFileSync(f)
    }
  )

  const data = files.map((f) => Fs.readFileSync(f))
  const keys = new Map([[Envelope.keyIdOf(key), key]])
  const plains: Array<Uint8Array> = []
  const open = await pairUsPerItem(
    count,
    () => {
      plains.length = 0
      for (let i = 0; i < count; i++) {
        const opened = Envelope.open({ keys, namespace, sessionId: fileKeys[i]!, data: data[i]! })
        if (Result.isFailure(opened)) throw opened.failure
        plains.push(opened.success)
      }
    },
    () => {
      for (let i = 0; i < count; i++) rawOpen(data[i]!, key, namespace, fileKeys[i]!)
    }
  )

  const decode = await pairUsPerItem(
    count,
    () => {
      for (let i = 0; i < count; i++) {
        const decoded = RecordCodec.decodeResult(fileKeys[i]!, plains[i]!)
        if (Result.isFailure(decoded)) throw new Error(decoded.failure.detail)
      }
    },
    () => {
      for (const p of plains) JSON.parse(Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("utf8"))
    }
  )

  const metadata = await pairUsPerItem(
    count,
    () => {
      for (let i = 0; i < count; i++) {
        const decoded = RecordCodec.decodeMetadata(fileKeys[i]!, plains[i]!, "filesystem")
        if (Result.isFailure(decoded)) throw new Error(decoded.failure.detail)
      }
    },
    () => {
      for (const p of plains) JSON.parse(Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("utf8"))
    }
  )

  const perRecord = (value: number) => ({ value, unit: "us/record" })
  return [
    {
      name: "  part: read a record file",
      ours: perRecord(read.ours),
      baseline: perRecord(read.baseline),
      baselineName: "readFileSync",
      note: "ReadFile.readFile, 16 at a time (open + read on libuv's pool, close not waited for)",
      extra: { files: count }
    },
    {
      name: "  part: open the envelope",
      ours: perRecord(open.ours),
      baseline: perRecord(open.baseline),
      baselineName: "createDecipheriv + setAAD + final",
      note: "Envelope.open (AES-256-GCM, same AAD)"
    },
    {
      name: "  part: decode the record",
      ours: perRecord(decode.ours),
      baseline: perRecord(decode.baseline),
      baselineName: "JSON.parse",
      note: "get: RecordCodec.decodeResult: UTF-8 + Schema SessionRecord (3 Redacted, 3 DateTime) + file key check"
    },
    {
      name: "  part: decode the metadata",
      ours: perRecord(metadata.ours),
      baseline: perRecord(metadata.baseline),
      baselineName: "JSON.parse",
      note: "list: RecordCodec.decodeMetadata: the same checks, secrets checked as strings, no class built"
    }
  ]
}

