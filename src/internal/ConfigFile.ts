/**
 * ConfigFile: which configuration file is read. `--config`, else
 * `MAGICTUNNEL_CONFIG_PATH`, else the first of a documented search path that
 * exists; a path given explicitly that cannot be read is an error naming where
 * it came from, never a silent fall-back to defaults.
 */
import * as NodePath from "node:path"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import { ConfigError } from "../SessionConfig.js"
import { configPathEnv } from "./ConfigKeys.js"

/** What the loader reads: explicit, so tests pass their own environment and directories. */
export interface Options {
  /** The `--config` value, when given. */
  readonly configPath?: string | undefined
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd: string
  readonly home: string
}

/** A located configuration file. `display` is how messages show it. */
export interface Located {
  readonly path: string
  readonly display: string
  /** `--config`, `env:MAGICTUNNEL_CONFIG_PATH` or `search`. */
  readonly via: string
}

/** A value that is set: present and not the empty string (an empty variable counts as unset). */
export const nonEmpty = (s: string | undefined): s is string => s !== undefined && s.length > 0

const expandHome = (p: string, home: string, cwd: string): string =>
  NodePath.resolve(cwd, p === "~" ? home : p.startsWith("~/") ? NodePath.join(home, p.slice(2)) : p)

const displayOf = (abs: string, cwd: string): string => {
  const rel = NodePath.relative(cwd, abs)
  return rel.length > 0 && !rel.startsWith("..") && !NodePath.isAbsolute(rel) ? rel : abs
}

/** The files tried, in order, when neither `--config` nor `MAGICTUNNEL_CONFIG_PATH` names one. */
export const searchPath = (options: Pick<Options, "env" | "cwd" | "home">): ReadonlyArray<string> => {
  const xdg = options.env["XDG_CONFIG_HOME"]
  // The XDG spec ignores a relative XDG_CONFIG_HOME.
  const configHome = nonEmpty(xdg) && NodePath.isAbsolute(xdg) ? xdg : NodePath.join(options.home, ".config")
  return [
    NodePath.join(options.cwd, "magictunnel-config.yaml"),
    NodePath.join(options.cwd, "config.yaml"),
    NodePath.join(configHome, "magictunnel", "config.yaml"),
    NodePath.join(options.home, ".magictunnel", "config.yaml")
  ]
}

const fileProblem = (via: string, path: string, why: string): ConfigError =>
  new ConfigError({
    problems: [{ key: "config file", source: via, expected: `a readable YAML file at ${path} (${why})` }]
  })

/** Finds the file to read: `--config`, else `MAGICTUNNEL_CONFIG_PATH`, else the first of {@link searchPath} that exists. */
export const locate = Effect.fnUntraced(function*(options: Options) {
  const fs = yield* FileSystem.FileSystem
  const envPath = options.env[configPathEnv]
  const explicit = nonEmpty(options.configPath)
    ? { raw: options.configPath, via: "--config" }
    : nonEmpty(envPath)
    ? { raw: envPath, via: `env:${configPathEnv}` }
    : undefined
  if (explicit !== undefined) {
    const path = expandHome(explicit.raw, options.home, options.cwd)
    return Option.some<Located>({ path, display: displayOf(path, options.cwd), via: explicit.via })
  }
  for (const candidate of searchPath(options)) {
    const exists = yield* fs.exists(candidate).pipe(Effect.orElseSucceed(() => false))
    if (exists) return Option.some<Located>({ path: candidate, display: displayOf(candidate, options.cwd), via: "search" })
  }
  return Option.none<Located>()
})

/** Reads a located file; a missing, unreadable or non-regular file is a {@link ConfigError}. */
export const read = Effect.fnUntraced(function*(located: Located) {
  const fs = yield* FileSystem.FileSystem
  const why = (e: { readonly reason: { readonly _tag: string } }) =>
    e.reason._tag === "NotFound"
      ? "it does not exist"
      : e.reason._tag === "PermissionDenied"
      ? "permission denied"
      : `cannot be read: ${e.reason._tag}`
  const info = yield* fs.stat(located.path).pipe(
    Effect.mapError((e) => fileProblem(located.via, located.path, why(e)))
  )
  if (info.type !== "File") {
    return yield* fileProblem(located.via, located.path, `it is a ${info.type.toLowerCase()}, not a file`)
  }
  return yield* fs.readFileString(located.path).pipe(
    Effect.mapError((e) => fileProblem(located.via, located.path, why(e)))
  )
})
