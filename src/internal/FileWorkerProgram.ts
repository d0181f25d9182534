/**
 * The program the file worker thread runs (`FileWorker.ts` starts it with
 * `eval`), and the shape of its answers. Plain CommonJS with Node's built-in
 * modules only: nothing to bundle or resolve, and it runs the same from the
 * TypeScript sources and from the bundle.
 *
 * Requests, one message each, answered with the same `id`:
 * - `read { path }`: the file's bytes (transferred), or `missing`;
 * - `readMany { paths }`: every file in order, synchronously, in one
 *   transferred buffer with each file's length (-1 for a failure, listed in
 *   `failures`);
 * - `replace { target, data, mode, durable, unlessVersion, tempInfix }`: the
 *   atomic replace of `AtomicFile.write` (temp file created exclusively with
 *   the mode, fsynced when durable, mode set exactly, renamed over the target,
 *   directory fsynced when durable; the temp file removed on failure), skipped
 *   when the target's version is `unlessVersion`; answers the version written.
 * A request that throws is answered with `error` (code, syscall, message).
 */

/** Why one file operation failed, as the worker reports it (Node's error fields). */
export interface Failure {
  readonly code: string | undefined
  readonly syscall: string | undefined
  readonly message: string
}

/** The worker's answer to one request (`id`); which fields are set depends on the operation. */
export interface Reply {
  readonly id: number
  readonly data?: ArrayBuffer
  readonly missing?: true
  readonly version?: string
  readonly skipped?: true
  readonly error?: Failure
  /** readMany: per file, its length in `data`, or -1 when it failed (see `failures`). */
  readonly lengths?: Int32Array
  readonly failures?: ReadonlyArray<Failure & { readonly index: number }>
}

// Plain CommonJS run by the worker (`eval`): nothing to bundle or resolve. The version string is
// `AtomicFile.versionOf` of the same (bigint) stat, so either side can check what the other wrote.
export const source = `
const { parentPort } = require("node:worker_threads")
const fs = require("node:fs")
const path = require("node:path")
const crypto = require("node:crypto")
const versionOf = (st) => [st.ino, st.birthtimeMs, st.mtimeMs, st.size].join(":")
const writeAll = (fd, data) => {
  let done = 0
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done)
}
const transferable = (bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
const handle = (m) => {
  if (m.op === "readMany") {
    const lengths = new Int32Array(m.paths.length)
    const failures = []
    const chunks = []
    for (let i = 0; i < m.paths.length; i++) {
      try {
        const bytes = fs.readFileSync(m.paths[i])
        chunks.push(bytes)
        lengths[i] = bytes.length
      } catch (e) {
        lengths[i] = -1
        failures.push({ index: i, code: e.code, syscall: e.syscall, message: String(e.message) })
      }
    }
    const data = transferable(Buffer.concat(chunks))
    return [{ id: m.id, lengths, failures, data }, [data]]
  }
  if (m.op === "read") {
    let bytes
    try {
      bytes = fs.readFileSync(m.path)
    } catch (e) {
      if (e.code === "ENOENT") return { id: m.id, missing: true }
      throw e
    }
    const data = transferable(bytes)
    return [{ id: m.id, data }, [data]]
  }
  if (m.unlessVersion !== undefined) {
    let st
    try { st = fs.statSync(m.target, { bigint: true }) } catch {}
    if (st !== undefined && versionOf(st) === m.unlessVersion) return { id: m.id, skipped: true }
  }
  const dir = path.dirname(m.target)
  const tmp = path.join(dir, "." + path.basename(m.target) + m.tempInfix + crypto.randomBytes(6).toString("hex"))
  const fd = fs.openSync(tmp, "wx", m.mode)
  let version
  try {
    try {
      writeAll(fd, m.data)
      if (m.durable) fs.fsyncSync(fd)
      // open's mode is filtered by the umask; set it exactly before the file becomes visible.
      fs.fchmodSync(fd, m.mode)
      version = versionOf(fs.fstatSync(fd, { bigint: true }))
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, m.target)
  } catch (e) {
    try { fs.unlinkSync(tmp) } catch {}
    throw e
  }
  if (m.durable && process.platform !== "win32") {
    const d = fs.openSync(dir, "r")
    try { fs.fsyncSync(d) } finally { fs.closeSync(d) }
  }
  return { id: m.id, version }
}
parentPort.on("message", (m) => {
  let reply
  try {
    reply = handle(m)
  } catch (e) {
    reply = { id: m.id, error: { code: e.code, syscall: e.syscall, message: String(e.message) } }
  }
  if (Array.isArray(reply)) parentPort.postMessage(reply[0], reply[1])
  else parentPort.postMessage(reply)
})
`
