/**
 * The plain baselines of the recovery benchmark: what reading every stored
 * session costs without the store. Each record file is read with `node:fs`,
 * its AES-256-GCM envelope opened with `node:crypto` using the same key and
 * the same additional data as `src/internal/Envelope.ts` (header +
 * `magictunnel-session/v1\0<namespace>\0<fileKey>`, the file key being the
 * file's name), and its JSON parsed with `JSON.parse`.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as NodePath from "node:path"

/** The suffix of record files (`src/TokenStore/EncryptedFile.ts`). */
export const recordSuffix = ".session"
const aadLabel = "magictunnel-session/v1\0"
const headerBytes = 3 + 1 + 8
const nonceBytes = 12
const tagBytes = 16

/** The decrypted bytes of a record file, as the baseline opens it. */
export const rawOpen = (data: Buffer, key: Uint8Array, namespace: string, fileKey: string) => {
  const decipher = Crypto.createDecipheriv("aes-256-gcm", key, data.subarray(headerBytes, headerBytes + nonceBytes), {
    authTagLength: tagBytes
  })
  decipher.setAAD(Buffer.concat([data.subarray(0, headerBytes), Buffer.from(`${aadLabel}${namespace}\0${fileKey}`, "utf8")]))
  decipher.setAuthTag(data.subarray(data.length - tagBytes))
  return Buffer.concat([decipher.update(data.subarray(headerBytes + nonceBytes, data.length - tagBytes)), decipher.final()])
}

export interface RawRecord {
  readonly id: string
  readonly expiresAt: number
}

export const recordFiles = (directory: string) =>
  Fs.readdirSync(directory).filter((n) => n.endsWith(recordSuffix) && !n.startsWith("."))

/** The floor: read, decrypt and parse every record file of `directory` synchronously. */
export const rawScan = (directory: string, key: Uint8Array, namespace: string, sample: () => void) => {
  const nowMs = Date.now()
  const records: Array<RawRecord> = []
  let valid = 0
  const names = recordFiles(directory)
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!
    const data = Fs.readFileSync(NodePath.join(directory, name))
    const record = JSON.parse(rawOpen(data, key, namespace, name.slice(0, -recordSuffix.length)).toString("utf8")) as RawRecord
    records.push(record)
    if (record.expiresAt > nowMs) valid++
    if (i % 100 === 0) sample()
  }
  return { records, valid }
}

/** The same with the callback `fs.readFile`, 16 files in flight. */
export const rawScanAsync = async (directory: string, key: Uint8Array, namespace: string) => {
  const nowMs = Date.now()
  const records: Array<RawRecord> = []
  let valid = 0
  const names = recordFiles(directory)
  const read = (file: string) =>
    new Promise<Buffer>((resolve, reject) => Fs.readFile(file, (e, data) => (e === null ? resolve(data) : reject(e))))
  let next = 0
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++]!
      const data = await read(NodePath.join(directory, name))
      const record = JSON.parse(rawOpen(data, key, namespace, name.slice(0, -recordSuffix.length)).toString("utf8")) as RawRecord
      records.push(record)
      if (record.expiresAt > nowMs) valid++
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
  return { records, valid }
}

