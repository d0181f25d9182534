#!/usr/bin/env node
// mtsession launcher: the package's `bin` (copied to dist/mtsession.cjs by
// scripts/build.mjs). It runs the bundle (dist/cli.cjs) with a V8 code cache
// that is written after a command has run, so it holds the bytecode of every
// function that command used.
//
// Why not Node's compile cache: it is written when a module is compiled,
// before it runs, so it holds the top-level code only; every function a
// command calls was then parsed and compiled again at every start (about 60
// ms of `mtsession token`'s 125). With this cache, a start compiles nothing
// the same command compiled before.
//
// The cache is one file per command (`token`, `status`...) and per bundle
// file, named after the bundle's path, size, modification time and inode, so
// another build (even one of the same length, which V8's own check would not
// notice) never runs with bytecode made for other source, and installs side
// by side keep a cache each; writing one removes that install's older ones. It lives in a
// directory only this user can write (checked before every read: executable
// bytecode from someone else's file would be their code), written by an
// atomic rename, and holds no runtime data: never a token. Any problem with
// it (missing, rejected by V8, unreadable, not private) means a start without
// it; it never changes what a command does.
//
// Where: $NODE_COMPILE_CACHE/mtsession when set; else the user's cache
// directory (~/.cache, $XDG_CACHE_HOME, ~/Library/Caches, %LOCALAPPDATA%).
// NODE_DISABLE_COMPILE_CACHE=1 turns it off, as it does Node's.
"use strict"
const Fs = require("node:fs")
const Path = require("node:path")
const Vm = require("node:vm")
const { createRequire, wrap } = require("node:module")

const bundle = Path.join(__dirname, "cli.cjs")

/** The user's cache directory for mtsession, if the platform names one. */
const userCacheDirectory = (env, Os) => {
  if (process.platform === "win32") {
    return env.LOCALAPPDATA ? Path.join(env.LOCALAPPDATA, "magictunnel-session", "code-cache") : undefined
  }
  const home = Os.homedir()
  if (!home) return undefined
  if (process.platform === "darwin") return Path.join(home, "Library", "Caches", "magictunnel-session", "code-cache")
  const xdg = env.XDG_CACHE_HOME && Path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : Path.join(home, ".cache")
  return Path.join(xdg, "magictunnel-session", "code-cache")
}

/**
 * Where the cache may be, in order of preference; none when caching is off. After the user's cache
 * directory, one of this user's own in the system's temporary directory, for a home that cannot
 * be written (a read-only container): a directory someone else made there is not private, so
 * it is never used.
 */
const cacheDirectories = () => {
  const env = process.env
  if (env.NODE_DISABLE_COMPILE_CACHE) return []
  if (env.NODE_COMPILE_CACHE) return [Path.resolve(env.NODE_COMPILE_CACHE, "mtsession")]
  const Os = require("node:os")
  const user = userCacheDirectory(env, Os)
  const temp = Path.join(Os.tmpdir(), `magictunnel-session-code-cache-${process.getuid?.() ?? Os.userInfo().username}`)
  return user === undefined ? [temp] : [user, temp]
}

/** Whether `dir` is a real directory (not a link) that only this user can write. */
const isPrivate = (dir) => {
  try {
    const st = Fs.lstatSync(dir)
    if (!st.isDirectory()) return false
    return process.platform === "win32" || (st.uid === process.getuid() && (st.mode & 0o022) === 0)
  } catch {
    return false
  }
}

/** A short hash (FNV-1a) of the bundle's path: installs of mtsession side by side keep their own caches. */
const pathTag = (path) => {
  let h = 0x811c9dc5
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(36)
}

/** The command's name (the first bare word that is not the value of `--config`), for the cache file's name. */
const commandOf = (argv) => {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--config") i++
    else if (!argv[i].startsWith("-")) return /^[a-z][a-z-]{0,15}$/.test(argv[i]) ? argv[i] : "other"
  }
  return "other"
}

const fd = Fs.openSync(bundle, "r")
const identity = Fs.fstatSync(fd)
// The build checks that the bundle is ASCII (esbuild escapes the rest): read as latin1, it is a
// one-byte string without UTF-8 decoding (2 ms less).
const source = Fs.readFileSync(fd, "latin1")
Fs.closeSync(fd)

const directories = cacheDirectories()
// What a newer file of this command replaces: same install, same Node (two Node versions used in
// turn keep a file each instead of evicting each other at every start).
const prefix = `${commandOf(process.argv.slice(2))}-${pathTag(bundle)}-${process.version}-${process.arch}-`
const name = `${prefix}${identity.size}-${Math.trunc(identity.mtimeMs)}-${identity.ino}.v8`
let cachedData
for (const dir of directories) {
  if (!isPrivate(dir)) continue
  try {
    cachedData = Fs.readFileSync(Path.join(dir, name))
    break
  } catch {
    // No cache yet for this command and this bundle here.
  }
}

// No `importModuleDynamically`: the build turns every `import()` into `require()`.
const script = new Vm.Script(wrap(source), { filename: bundle, cachedData })

/**
 * Writes the cache of this command in `dir`: a temporary file renamed over it; earlier bundles'
 * caches of it go. False when `dir` cannot be made or is not private.
 */
const saveIn = (dir) => {
  const temp = Path.join(dir, `.${name}.${process.pid}.tmp`)
  try {
    Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    if (!isPrivate(dir)) return false
    Fs.writeFileSync(temp, script.createCachedData(), { mode: 0o600, flag: "wx" })
    Fs.renameSync(temp, Path.join(dir, name))
    for (const other of Fs.readdirSync(dir)) {
      if (other !== name && other.startsWith(prefix) && other.endsWith(".v8")) Fs.rmSync(Path.join(dir, other), { force: true })
    }
    return true
  } catch {
    try {
      Fs.rmSync(temp, { force: true })
    } catch {
      // Nothing more to do: the next start goes without a cache and tries again.
    }
    return false
  }
}

// Written once a command has succeeded, when there was no cache or V8 turned it down: a failed
// command's cache would lack the path the command takes when it works.
if (directories.length > 0 && (cachedData === undefined || script.cachedDataRejected)) {
  process.once("exit", (code) => {
    if (code === 0) directories.some(saveIn)
  })
}

const module_ = { exports: {} }
script.runInThisContext().call(module_.exports, module_.exports, createRequire(bundle), module_, bundle, __dirname)
