/**
 * ConfigYaml: the YAML file as a tree of nodes that remember their line, so
 * that every configuration problem can point at `file:line`.
 *
 * Effect's own `encoding/Yaml` returns plain values without positions, hence
 * the `yaml` package (`parseDocument` + `LineCounter`). Aliases are followed;
 * merge keys (`<<`) are not enabled, so they read as ordinary (unknown) keys.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from "yaml"
import type { Document, Node } from "yaml"

/** A syntax error or warning of the YAML parser. */
export interface Diagnostic {
  readonly line: number
  readonly message: string
}

/** A parsed file. */
export interface Parsed {
  readonly root: Node | null
  readonly errors: ReadonlyArray<Diagnostic>
  readonly warnings: ReadonlyArray<Diagnostic>
  /** Follows an alias to its anchored node. */
  readonly resolve: (node: Node | null) => Node | null
  /** 1-based line where `node` starts; `fallback` when it has no position. */
  readonly lineOf: (node: Node | null, fallback: number) => number
}

/** One `key: value` of a mapping. */
export interface Entry {
  readonly name: string
  readonly keyLine: number
  /** The value with aliases followed; `null` for `key:` with nothing after it. */
  readonly value: Node | null
  /** Where the value is written (the alias, not its anchor), else the key's line. */
  readonly line: number
}

// Parser messages end with a position we report separately.
const stripPosition = (message: string): string =>
  (message.split("\n")[0] ?? message).replace(/\s+at line \d+, column \d+:?$/, "").trim()

/** Parses one YAML document, keeping positions. */
export const parse = (text: string): Parsed => {
  const lineCounter = new LineCounter()
  const doc: Document.Parsed = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    merge: false
  })
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line
  const diagnostic = (e: { readonly pos: readonly [number, number]; readonly message: string }): Diagnostic => ({
    line: lineAt(e.pos[0]),
    message: stripPosition(e.message)
  })
  const resolve = (node: Node | null): Node | null => {
    if (node === null || !isAlias(node)) return node
    return node.resolve(doc) ?? null
  }
  const lineOf = (node: Node | null, fallback: number): number => {
    const start = node?.range?.[0]
    return start === undefined ? fallback : lineAt(start)
  }
  const root: unknown = doc.contents
  return {
    root: isNode(root) ? root : null,
    errors: doc.errors.map(diagnostic),
    warnings: doc.warnings.map(diagnostic),
    resolve,
    lineOf
  }
}

const isNode = (value: unknown): value is Node => isScalar(value) || isMap(value) || isSeq(value) || isAlias(value)

/** Whether `node` is a mapping. */
export const isMapping = (node: Node | null): boolean => node !== null && isMap(node)

/** Whether `node` is missing or an explicit null (`key:` with no value). */
export const isEmpty = (node: Node | null): boolean => node === null || (isScalar(node) && node.value === null)

/** The entries of a mapping node; keys that are not scalars are named by their text. */
export const entries = (parsed: Parsed, node: Node | null, parentLine: number): ReadonlyArray<Entry> => {
  if (node === null || !isMap(node)) return []
  const out: Array<Entry> = []
  for (const pair of node.items) {
    if (!isPair(pair)) continue
    const keyNode: unknown = pair.key
    const key = isNode(keyNode) ? keyNode : null
    const keyLine = parsed.lineOf(key, parentLine)
    const name = key !== null && isScalar(key) ? String(key.value) : String(keyNode)
    const written: unknown = pair.value
    const valueNode = isNode(written) ? written : null
    out.push({
      name,
      keyLine,
      value: parsed.resolve(valueNode),
      line: parsed.lineOf(valueNode, keyLine)
    })
  }
  return out
}

/** The scalar in `node`: its value and, for plain scalars, the text as written. */
export const scalar = (node: Node | null): { readonly value: unknown; readonly text: string | undefined } | undefined => {
  if (node === null) return { value: null, text: undefined }
  if (!isScalar(node)) return undefined
  return { value: node.value, text: node.type === "PLAIN" ? node.source : undefined }
}

/** The items of a sequence node, or `undefined` when `node` is not a sequence. */
export const items = (parsed: Parsed, node: Node | null): ReadonlyArray<Node | null> | undefined => {
  if (node === null || !isSeq(node)) return undefined
  return node.items.map((item: unknown) => parsed.resolve(isNode(item) ? item : null))
}

/**
 * A short rendering of a value for "got ..." in messages. Only ever called on
 * values of keys that hold no secret.
 */
export const describe = (node: Node | null): string => {
  if (node === null) return "nothing"
  if (isMap(node)) return "a mapping"
  if (isSeq(node)) return "a list"
  if (isScalar(node)) return describeValue(node.value)
  return "an alias"
}

/** Renders a plain value for "got ...": strings quoted and shortened. */
export const describeValue = (value: unknown): string => {
  if (value === null || value === undefined) return "nothing"
  if (typeof value === "string") {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value
    return JSON.stringify(shown)
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value)
  return "a value of another type"
}
