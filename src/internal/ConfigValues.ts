/**
 * ConfigValues: the kinds of value a configuration key can hold (boolean,
 * bounded integer, choice, file mode, path), each read from YAML and from an
 * environment variable. YAML values keep their YAML types (`"yes"` is not a
 * boolean there); environment values are text, so booleans also accept
 * 1/0, yes/no and on/off. A failure is the "expected ..." phrase of the
 * problem the loader reports.
 */
import * as Result from "effect/Result"

/** A value as it appears in YAML: the decoded scalar and, for plain scalars, its source text. */
export interface YamlScalar {
  readonly value: unknown
  readonly text: string | undefined
}

/** One configurable key. `decode*` fail with the "expected ..." phrase. */
export interface Leaf<A> {
  readonly _tag: "Leaf"
  /** Dotted, relative to `auth.session_persistence`. */
  readonly key: string
  readonly env: string
  readonly default: A
  /** What the key accepts, for documentation and `config show`. */
  readonly accepts: () => string
  readonly fromYaml: (value: YamlScalar) => Result.Result<A, string>
  readonly fromEnv: (value: string) => Result.Result<A, string>
  /** The value as the YAML file would hold it (modes as `"0600"`). */
  readonly render: (value: A) => string | number | boolean
}

const leaf = <A>(fields: Omit<Leaf<A>, "_tag">): Leaf<A> => ({ _tag: "Leaf", ...fields })

const envTrue = new Set(["true", "1", "yes", "on"])
const envFalse = new Set(["false", "0", "no", "off"])

export const bool = (key: string, env: string, defaultValue: boolean): Leaf<boolean> =>
  leaf({
    key,
    env,
    default: defaultValue,
    accepts: () => "true or false",
    fromYaml: ({ value }) => typeof value === "boolean" ? Result.succeed(value) : Result.fail("true or false"),
    fromEnv: (raw) => {
      const s = raw.trim().toLowerCase()
      return envTrue.has(s)
        ? Result.succeed(true)
        : envFalse.has(s)
        ? Result.succeed(false)
        : Result.fail("one of true, false, 1, 0, yes, no, on, off")
    },
    render: (value) => value
  })

export const int = (key: string, env: string, defaultValue: number, min: number, max: number): Leaf<number> => {
  const expected = `an integer between ${min} and ${max}`
  const check = (n: number) => Number.isSafeInteger(n) && n >= min && n <= max ? Result.succeed(n) : Result.fail(expected)
  return leaf({
    key,
    env,
    default: defaultValue,
    accepts: () => expected,
    fromYaml: ({ value }) => typeof value === "number" ? check(value) : Result.fail(expected),
    fromEnv: (raw) => {
      const s = raw.trim()
      return /^[+-]?\d{1,16}$/.test(s) ? check(Number(s)) : Result.fail(expected)
    },
    render: (value) => value
  })
}

export const choice = <const C extends string>(
  key: string,
  env: string,
  defaultValue: C,
  choices: () => ReadonlyArray<C>
): Leaf<C> => {
  const expected = () => `one of ${choices().join(", ")}`
  const check = (s: unknown): Result.Result<C, string> => {
    const found = choices().find((c) => c === s)
    return found === undefined ? Result.fail(expected()) : Result.succeed(found)
  }
  return leaf({
    key,
    env,
    default: defaultValue,
    accepts: expected,
    fromYaml: ({ value }) => check(value),
    fromEnv: (raw) => check(raw.trim()),
    render: (value) => value
  })
}

const modeExpected = "an octal file mode such as \"0600\" that gives the owner read and write and group and others nothing"

/**
 * Reads `"0600"`, `"600"`, `"0o600"` (and a YAML integer written `600`, whose
 * digits are octal digits). Modes that let group or others in, or that would
 * lock the owner out of their own session files, are refused.
 */
export const parseMode = (text: string): Result.Result<number, string> => {
  const match = /^(?:0o|0)?([0-7]{3})$/i.exec(text.trim())
  if (match === null || match[1] === undefined) return Result.fail(modeExpected)
  const mode = Number.parseInt(match[1], 8)
  if ((mode & 0o077) !== 0) return Result.fail(`${modeExpected} (this mode lets group or others in)`)
  if ((mode & 0o600) !== 0o600) return Result.fail(`${modeExpected} (the owner needs read and write)`)
  return Result.succeed(mode)
}

/** Renders a mode the way the YAML file holds it: `"0600"`. */
export const renderMode = (mode: number): string => `0${mode.toString(8).padStart(3, "0")}`

export const mode = (key: string, env: string, defaultValue: number): Leaf<number> =>
  leaf({
    key,
    env,
    default: defaultValue,
    accepts: () => modeExpected,
    fromYaml: ({ value, text }) =>
      typeof value === "string"
        ? parseMode(value)
        // A plain `600` or `0o600` in YAML is a number; its source text keeps the digits as written.
        : typeof value === "number" && text !== undefined
        ? parseMode(text)
        : Result.fail(modeExpected),
    fromEnv: parseMode,
    render: renderMode
  })

const pathExpected = "a non-empty path (a leading \"~\" or \"~/\" means the home directory)"

const checkPath = (s: unknown): Result.Result<string, string> =>
  typeof s !== "string" || s.length === 0 || s.includes("\0") ||
    // `~user` is a shell feature; the loader and UserContext only expand `~` and `~/`.
    (s.startsWith("~") && s !== "~" && !s.startsWith("~/"))
    ? Result.fail(pathExpected)
    : Result.succeed(s)

export const path = (key: string, env: string, defaultValue: string): Leaf<string> =>
  leaf({
    key,
    env,
    default: defaultValue,
    accepts: () => pathExpected,
    fromYaml: ({ value }) => checkPath(value),
    fromEnv: checkPath,
    render: (value) => value
  })

const optionalPathExpected = `empty (the default location) or ${pathExpected}`

/** A path that may be left empty, meaning "the default location" (which depends on other keys). */
export const optionalPath = (key: string, env: string): Leaf<string> =>
  leaf({
    key,
    env,
    default: "",
    accepts: () => optionalPathExpected,
    fromYaml: ({ value }) => value === "" ? Result.succeed("") : Result.mapError(checkPath(value), () => optionalPathExpected),
    fromEnv: (raw) => raw === "" ? Result.succeed("") : Result.mapError(checkPath(raw), () => optionalPathExpected),
    render: (value) => value
  })

/**
 * A single line of text checked by `check`; `accepts` is the "expected ..."
 * phrase of a refused value and the documentation of the key.
 */
export const text = (
  key: string,
  env: string,
  defaultValue: string,
  accepts: string,
  check: (s: string) => boolean
): Leaf<string> => {
  const decode = (s: unknown): Result.Result<string, string> =>
    typeof s === "string" && !/[\0\r\n]/.test(s) && check(s) ? Result.succeed(s) : Result.fail(accepts)
  return leaf({
    key,
    env,
    default: defaultValue,
    accepts: () => accepts,
    fromYaml: ({ value }) => decode(value),
    fromEnv: (raw) => decode(raw.trim()),
    render: (value) => value
  })
}
